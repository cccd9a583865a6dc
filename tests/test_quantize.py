"""The int8 base (`--quantize int8`) on the tiny model: rows stay independent, adapters attach, close to fp32."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import openai
import pytest
import torch
from switchboard.engine.hf import HFEngine
from switchboard.engine.quant import INPUT_LEVELS, Int8Linear, int8_matmul, kernel_input_bits, pack_int8
from switchboard.errors import AdapterIncompatible
from transformers import DynamicCache

from .conftest import ServerFactory, make_adapter
from .test_engine import PROMPTS, greedy, run


@pytest.fixture(scope="module")
def int8_engine_model(tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> HFEngine:
    """One quantized engine, loaded once; each test starts and stops its thread."""
    eng = HFEngine(tiny_model_dir, model_id="tiny", quantize="int8", max_model_len=256, max_batch_size=16)
    eng.load_model()
    for name, path in tiny_adapters.items():
        eng.add_adapter_sync(name, path)
    return eng


@pytest.fixture
async def engine(int8_engine_model: HFEngine):
    await int8_engine_model.start()
    yield int8_engine_model
    await int8_engine_model.shutdown()


def last_logits(engine: HFEngine, prompts: list[list[int]], names: list[str]) -> torch.Tensor:
    """Next-token logits for left-padded prompts, one adapter name per row, as the engine's prefill computes them."""
    length = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), length), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, length - len(p) :] = torch.tensor(p)
        mask[i, length - len(p) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.inference_mode():
        return engine.stacks.logits(ids, mask, positions, DynamicCache(), names).float()


pytestmark = pytest.mark.skipif(kernel_input_bits() is None, reason="no int8 kernel in this torch build (not x86)")


def needs_kernel(bits: int) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        kernel_input_bits() is None or kernel_input_bits() < bits,
        reason=f"this CPU's int8 kernel (fbgemm without VNNI) saturates {bits}-bit inputs; "
        f"it takes {kernel_input_bits()}-bit ones, tested beside",
    )


# 7-bit inputs are exact on every x86 kernel; 8-bit ones only where the kernel sums in 32 bits (VNNI)
BITS = [pytest.param(7, id="7-bit"), pytest.param(8, id="8-bit", marks=needs_kernel(8))]


def test_int8_linear_takes_the_inputs_this_cpus_kernel_sums_exactly():
    assert Int8Linear(torch.nn.Linear(8, 4)).bits == kernel_input_bits()


@pytest.mark.parametrize("bits", BITS)
def test_int8_kernel_sums_full_range_inputs_exactly(bits: int):
    """The kernel equals the exact integer product on random inputs over the whole range, weights of +-127."""
    torch.manual_seed(bits)
    weight = torch.randint(-127, 128, (96, 640), dtype=torch.int8)
    weight[:, ::2] = 127  # many pairs of large products, where a 16-bit pair sum would saturate
    levels = INPUT_LEVELS[bits]
    rows = torch.randint(int(-levels), int(levels) + 1, (16, 640)).float()
    rows[:, ::2] = levels
    got = int8_matmul(rows, pack_int8(weight, torch.ones(96, dtype=torch.float64)), bits)
    assert torch.equal(got, rows @ weight.float().T)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize(("passes", "tolerance"), [(1, 0.02), (2, 0.005)])
def test_int8_linear_is_per_channel_row_independent_and_close(passes: int, tolerance: float, bits: int):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=True)
    with torch.no_grad():
        linear.weight[0] *= 100  # an output channel far larger than the rest: per-tensor scales would flatten it
    x = torch.randn(6, 64)
    x[2] *= 1000  # a row with huge activations must not cost the other rows their resolution
    q = Int8Linear(linear, passes=passes, bits=bits)
    out = q(x)
    ref = linear(x).detach()
    assert torch.equal(out, torch.cat([q(x[i : i + 1]) for i in range(6)]))  # rows are independent
    # channel 0's scale (100x) leaves the other channels' resolution alone, and so does row 2's
    rel = (out[:, 1:] - ref[:, 1:]).norm(dim=1) / ref[:, 1:].norm(dim=1)
    assert rel.max() < tolerance, rel
    assert q(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.parametrize("bits", BITS)
def test_two_passes_leave_only_the_weights_error(bits: int):
    """With the residual pass, a layer is as close to fp32 as its int8 weights alone would make it."""
    torch.manual_seed(1)
    linear = torch.nn.Linear(640, 2048)
    x = torch.randn(32, 640)
    ref = linear(x).detach()
    weight = linear.weight.detach()
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    weights_only = x @ ((weight / step).round() * step).T + linear.bias.detach()
    floor = ((weights_only - ref).norm(dim=1) / ref.norm(dim=1)).max()
    rel = ((Int8Linear(linear, passes=2, bits=bits)(x) - ref).norm(dim=1) / ref.norm(dim=1)).max()
    assert rel < floor * 1.05, (rel, floor)


async def test_mixed_batch_equals_each_adapter_alone(engine: HFEngine):
    adapters = [None, "alpha", "beta", "gamma"]
    alone = [(await run(engine, f"solo-{i}", PROMPTS[i], a, greedy(20)))[0] for i, a in enumerate(adapters)]
    base_on_all = [(await run(engine, f"base-{i}", PROMPTS[i], None, greedy(20)))[0] for i in range(4)]
    assert all(alone[i] != base_on_all[i] for i in (1, 2, 3))  # the adapters change the output
    together = await asyncio.gather(
        *[run(engine, f"mixed-{i}", PROMPTS[i], a, greedy(20)) for i, a in enumerate(adapters)]
    )
    assert [t[0] for t in together] == alone
    cases = [(p, a) for p in range(4) for a in adapters]
    solo = [(await run(engine, f"s{i}", PROMPTS[p], a, greedy(8)))[0] for i, (p, a) in enumerate(cases)]
    mixed = await asyncio.gather(*[run(engine, f"m{i}", PROMPTS[p], a, greedy(8)) for i, (p, a) in enumerate(cases)])
    assert [m[0] for m in mixed] == solo


async def test_runtime_adapter_attaches_and_equals_the_static_one(engine: HFEngine, tiny_adapters: dict[str, Path]):
    background = asyncio.create_task(run(engine, "busy", PROMPTS[0], "alpha", greedy(30)))
    await engine.add_adapter("gamma2", tiny_adapters["gamma"])
    static, runtime, base = await asyncio.gather(
        run(engine, "static", PROMPTS[3], "gamma", greedy(16)),
        run(engine, "runtime", PROMPTS[3], "gamma2", greedy(16)),
        run(engine, "base", PROMPTS[3], None, greedy(16)),
    )
    assert runtime[0] == static[0] != base[0]
    await background
    await engine.remove_adapter("gamma2")
    assert "gamma2" not in engine.resident_adapters()
    assert not any("gamma2" in layer.lora_A for layer in engine.stacks._layers.values())


def test_close_to_the_unquantized_model(int8_engine_model: HFEngine, tiny_model_dir: Path, tiny_adapters):
    reference = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256)
    reference.load_model()
    for name in ("alpha", "beta", "gamma"):
        reference.add_adapter_sync(name, tiny_adapters[name])
    prompts = [PROMPTS[i % 4][: 6 + i] for i in range(16)]
    for name in ("__base__", "alpha", "beta", "gamma"):
        got = last_logits(int8_engine_model, prompts, [name] * len(prompts))
        want = last_logits(reference, prompts, [name] * len(prompts))
        cosine = torch.nn.functional.cosine_similarity(got, want, dim=1)
        assert cosine.min() > 0.997, (name, cosine)
        agree = (got.argmax(dim=1) == want.argmax(dim=1)).float().mean()
        assert agree >= 0.9, (name, agree)


async def test_adapter_needing_peft_loader_is_refused(engine: HFEngine, tiny_adapters: dict[str, Path], tmp_path):
    patterned = tmp_path / "patterned"
    shutil.copytree(tiny_adapters["alpha"], patterned)
    config = json.loads((patterned / "adapter_config.json").read_text())
    config["alpha_pattern"] = {"q_proj": 64}
    (patterned / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterIncompatible, match="--quantize none"):
        await engine.add_adapter("patterned", patterned)
    head = make_adapter(engine.model_dir, tmp_path / "head", 2, ["q_proj", "lm_head"], seed=5)
    with pytest.raises(AdapterIncompatible, match="int8 base"):
        await engine.add_adapter("head", head)
    assert "patterned" not in engine.resident_adapters() and "head" not in engine.resident_adapters()
    assert (await run(engine, "ok", PROMPTS[1], "beta", greedy(4)))[0]


def test_int8_engine_is_cpu_only(tiny_model_dir: Path):
    with pytest.raises(ValueError, match="CPU"):
        HFEngine(tiny_model_dir, model_id="tiny", quantize="int8", device="cuda")


def test_server_serves_an_int8_base(serve: ServerFactory, tiny_model_dir: Path, tiny_adapters: dict[str, Path]):
    server = serve("--quantize", "int8", dtype=None, adapters={"beta": tiny_adapters["beta"]}, max_model_len=256)
    client = openai.OpenAI(base_url=server.v1, api_key="none")
    msg = [{"role": "user", "content": "Where is my parcel?"}]
    texts = {
        model: client.chat.completions.create(model=model, messages=msg, max_tokens=8, temperature=0)
        .choices[0]
        .message.content
        for model in (tiny_model_dir.name, "beta")
    }
    assert texts["beta"] != texts[tiny_model_dir.name]
    assert f"({kernel_input_bits()}-bit inputs)" in server.output()
    health = httpx.get(f"{server.url}/health").json()
    assert health["engine"]["quantize"] == "int8" and health["engine"]["dtype"] == "float32"
    assert health["cpu"]["int8_input_bits"] == kernel_input_bits()
