"""A bf16 model on the CPU: decode attention in fp32 (engine/attention.py) and LoRA in fp32 (engine/lora_stacks.py),
where torch's bf16 kernels are the slow ones; the results stay bf16's, with fewer roundings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from switchboard.engine.attention import NAME, sdpa_fp32_decode
from switchboard.engine.hf import HFEngine
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from .test_quantize import last_logits

GEMMA = SimpleNamespace(num_key_value_groups=4, is_causal=True, training=False)  # 4 query heads on one KV head


def qkv(rows: int, queries: int, keys: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(rows * 100 + queries)
    q = torch.randn(rows, 4, queries, 64, dtype=torch.float64)
    k = torch.randn(rows, 1, keys, 64, dtype=torch.float64)
    v = torch.randn(rows, 1, keys, 64, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("rows", [1, 5])
def test_decode_attention_is_fp32_math_rounded_once(rows: int):
    q, k, v = qkv(rows, 1, 37, torch.bfloat16)
    mask = torch.ones(rows, 1, 1, 37, dtype=torch.bool)
    mask[0, ..., :3] = False  # a left-padded row
    got, _ = sdpa_fp32_decode(GEMMA, q, k, v, mask, scaling=0.125)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, 1, 4, 64)
    reference, _ = sdpa_attention_forward(GEMMA, q.double(), k.double(), v.double(), mask, scaling=0.125)
    bf16, _ = sdpa_attention_forward(GEMMA, q, k, v, mask, scaling=0.125)  # torch's bf16 kernel, as before
    error, before = (got.double() - reference).abs(), (bf16.double() - reference).abs()
    assert error.mean() < 0.8 * before.mean(), (error.mean(), before.mean())  # one rounding at the end, none inside
    assert error.max() <= before.max() and error.max() <= reference.abs().max() * 2**-8  # bf16's rounding at most
    assert torch.equal(
        got, sdpa_attention_forward(GEMMA, q.float(), k.float(), v.float(), mask, scaling=0.125)[0].bfloat16()
    )


def test_prefill_and_fp32_attention_are_transformers_sdpa_unchanged():
    q, k, v = qkv(2, 6, 6, torch.bfloat16)
    got, _ = sdpa_fp32_decode(GEMMA, q, k, v, None, scaling=0.125)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, sdpa_attention_forward(GEMMA, q, k, v, None, scaling=0.125)[0])
    q, k, v = qkv(3, 1, 9, torch.float32)
    assert torch.equal(sdpa_fp32_decode(GEMMA, q, k, v, None)[0], sdpa_attention_forward(GEMMA, q, k, v, None)[0])


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path, tiny_adapters: dict[str, Path], tmp_path_factory) -> dict[str, HFEngine]:
    """The tiny model in bf16 and in fp32, the same adapters, plus one that only PEFT's forward serves (an
    alpha_pattern); the full lm_head product (the shortlist is tests/test_lm_head.py's)."""
    patterned = tmp_path_factory.mktemp("patterned") / "patterned"
    shutil.copytree(tiny_adapters["alpha"], patterned)
    config = json.loads((patterned / "adapter_config.json").read_text())
    config["alpha_pattern"] = {"q_proj": 64}
    (patterned / "adapter_config.json").write_text(json.dumps(config))
    out = {}
    for dtype in ("bfloat16", "float32"):
        eng = HFEngine(tiny_model_dir, model_id="tiny", dtype=dtype, max_model_len=256, lm_head="full", device="cpu")
        eng.load_model()
        for name in ("alpha", "beta", "gamma"):
            eng.add_adapter_sync(name, tiny_adapters[name])
        eng.add_adapter_sync("patterned", patterned)
        out[dtype] = eng
    return out


def test_a_bf16_cpu_engine_says_how_it_attends_and_keeps_lora_in_fp32(engines: dict[str, HFEngine]):
    bf16, fp32 = engines["bfloat16"], engines["float32"]
    assert bf16.describe()["attention"] == "sdpa, fp32 at decode" and fp32.describe()["attention"] == "sdpa"
    assert bf16.stacks._causal_lm().config._attn_implementation == NAME
    assert bf16.stacks.lora_dtype == torch.float32 and fp32.stacks.lora_dtype == torch.float32
    stack = next(iter(bf16.stacks._stacks.values()))
    assert stack.a.dtype == stack.b.dtype == torch.float32
    layer = next(iter(bf16.stacks._layers.values()))
    assert layer.lora_A["alpha"].weight.dtype == torch.float32  # PEFT's modules are views of the stacks
    assert layer.base_layer(torch.zeros(1, layer.in_features, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "names",
    [["alpha"] * 3, ["__base__", "alpha", "beta", "gamma"], ["patterned", "beta", "__base__"]],
    ids=["one-adapter", "mixed", "with-peft-only"],
)
def test_bf16_rows_track_fp32_and_the_stacks_track_peft(engines: dict[str, HFEngine], names: list[str]):
    """The batch's logits in bf16 stay near fp32's (same argmax), and the stacks' fast path gives what PEFT's own
    mixed-batch forward gives on the same bf16 model."""
    from .test_engine import PROMPTS

    prompts = [PROMPTS[i % 4][: 6 + 3 * i] for i in range(len(names))]
    bf16 = last_logits(engines["bfloat16"], prompts, names)
    fp32 = last_logits(engines["float32"], prompts, names)
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05 * float(fp32.abs().max()))
    assert torch.equal(bf16.argmax(dim=1), fp32.argmax(dim=1))
    stacks = engines["bfloat16"].stacks
    stacks.use_stacks = False
    try:
        peft = last_logits(engines["bfloat16"], prompts, names)
    finally:
        stacks.use_stacks = True
    torch.testing.assert_close(bf16, peft, rtol=0.02, atol=0.02 * float(peft.abs().max()))


async def test_bf16_engine_generates_through_decode_steps(engines: dict[str, HFEngine]):
    """Greedy generations through the running bf16 engine (prefill in bf16, decode attention in fp32) match fp32's
    for their first tokens on the base and on adapters."""
    from .test_engine import PROMPTS, greedy, run

    firsts = {}
    for dtype, eng in engines.items():
        await eng.start()
        try:
            firsts[dtype] = [
                (await run(eng, f"{dtype}-{name}", PROMPTS[2], name, greedy(6, ignore_eos=True)))[0]
                for name in (None, "beta", "patterned")
            ]
        finally:
            await eng.shutdown()
    assert all(len(tokens) == 6 for tokens in firsts["bfloat16"])
    assert [t[:2] for t in firsts["bfloat16"]] == [t[:2] for t in firsts["float32"]]
