"""bf16 Linear weights packed once for oneDNN (`weights: auto` in bf16 on the CPU, engine/bf16_packed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from switchboard.engine import bf16_packed
from switchboard.engine.bf16_packed import PackedBF16Linear, hold_packed_bf16, packed_kernel
from switchboard.engine.hf import HFEngine
from torch import nn

from .test_quantize import last_logits

needs_packed = pytest.mark.skipif(
    not packed_kernel(),
    reason="oneDNN has no native bf16 path on this CPU (it needs AVX-512 bw/vl/dq or AMX, unrestricted): "
    "bf16 weights stay plain here, tested below",
)
CPU = torch.device("cpu")


def bf16_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 8, bias=False), nn.Linear(8, 50, bias=False))
    model.to(torch.bfloat16)
    model.get_output_embeddings = lambda: model[2]  # type: ignore[assignment]  # the "lm_head" stays plain
    return model


@needs_packed
@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (3, 7, 64), (0, 64)])
def test_packed_linear_gives_f_linear_s_values_bit_for_bit(shape: tuple[int, ...]):
    torch.manual_seed(1)
    linear = nn.Linear(64, 96).to(torch.bfloat16)
    packed = PackedBF16Linear(linear)
    x = torch.randn(shape, dtype=torch.bfloat16)
    with torch.inference_mode():
        got, want = packed(x), linear(x)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    assert torch.equal(got, want)
    assert torch.equal(packed.weight, linear.weight) and packed.weight.layout == torch.strided
    assert isinstance(packed, nn.Linear) and (packed.in_features, packed.out_features) == (64, 96)
    assert torch.equal(packed(x.float()), want.float()) and packed(x.float()).dtype == torch.float32


@needs_packed
def test_auto_packs_every_linear_but_the_lm_head_and_dtype_none():
    model = bf16_model()
    x = torch.randn(4, 16, dtype=torch.bfloat16)
    with torch.inference_mode():
        want = model(x)
    held, why = hold_packed_bf16(model, "auto", CPU)
    assert held == "bfloat16-packed" and why == "2 Linear weights packed for oneDNN (bf16), the lm_head plain"
    assert [type(m) for m in model] == [PackedBF16Linear, PackedBF16Linear, nn.Linear]
    with torch.inference_mode():
        assert torch.equal(model(x), want)
    plain = bf16_model()
    assert hold_packed_bf16(plain, "dtype", CPU) == ("bfloat16", "weights in bfloat16, as configured (--weights dtype)")
    assert all(type(m) is nn.Linear for m in plain)


def test_without_a_native_bf16_path_nothing_is_packed_and_the_reason_says_so(monkeypatch):
    monkeypatch.setattr(bf16_packed, "packed_kernel", lambda: False)
    model = bf16_model()
    held, why = hold_packed_bf16(model, "auto", CPU)
    assert held == "bfloat16" and "no native bf16 path" in why
    assert all(type(m) is nn.Linear for m in model)


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> dict[str, HFEngine]:
    """The tiny model in bf16, packed and plain, same adapters, the full lm_head product in both."""
    if not packed_kernel():
        pytest.skip("oneDNN has no native bf16 path on this CPU: nothing to compare")
    out = {}
    for mode in ("auto", "dtype"):
        eng = HFEngine(
            tiny_model_dir, model_id="tiny", dtype="bfloat16", max_model_len=256, weights=mode, lm_head="full"
        )
        eng.load_model()
        for name in ("alpha", "beta", "gamma"):
            eng.add_adapter_sync(name, tiny_adapters[name])  # PEFT wraps the packed layers after packing
        out[mode] = eng
    return out


@needs_packed
def test_engine_packs_its_layers_and_says_so(engines: dict[str, HFEngine]):
    packed, plain = engines["auto"], engines["dtype"]
    assert all(isinstance(layer.base_layer, PackedBF16Linear) for layer in packed.stacks._layers.values())
    assert type(packed.stacks._causal_lm().lm_head) is nn.Linear
    assert packed.describe()["weights"] == "bfloat16-packed" and plain.describe()["weights"] == "bfloat16"
    assert packed.describe()["weights_reason"] == "28 Linear weights packed for oneDNN (bf16), the lm_head plain"
    assert not any(isinstance(m, PackedBF16Linear) for m in plain.stacks._causal_lm().modules())


@needs_packed
@pytest.mark.parametrize("names", [["__base__"] * 4, ["alpha"] * 4, ["__base__", "alpha", "beta", "gamma"]])
def test_packed_weights_give_the_plain_bf16_logits(engines: dict[str, HFEngine], names: list[str]):
    from .test_engine import PROMPTS

    prompts = [PROMPTS[i % 4][: 5 + 3 * i] for i in range(len(names))]
    got = last_logits(engines["auto"], prompts, names)
    want = last_logits(engines["dtype"], prompts, names)
    assert torch.equal(got, want)


@needs_packed
async def test_packed_engine_generates_what_the_plain_one_does(engines: dict[str, HFEngine]):
    """Whole greedy generations through the running engine (prefill, decode steps, the KV cache), base and adapter."""
    from .test_engine import PROMPTS, greedy, run

    outputs = {}
    for mode, eng in engines.items():
        await eng.start()
        try:
            outputs[mode] = [
                (await run(eng, f"{mode}-{name}", PROMPTS[0], name, greedy(12)))[:3] for name in (None, "beta")
            ]
        finally:
            await eng.shutdown()
    assert outputs["auto"] == outputs["dtype"]
    assert all(len(tokens) == 12 for tokens, _, _ in outputs["auto"])


def test_weights_are_packed_wherever_bf16_is_native():
    """`dtype: auto` serves bf16 on native-bf16 CPUs: there the packed path must be available (and under
    `make test-avx2`'s ONEDNN_MAX_CPU_ISA=AVX2 hold, where oneDNN refuses it, it must not be taken)."""
    from switchboard.hardware import cpu_info

    assert packed_kernel() is cpu_info().native_bf16, cpu_info().summary()
