"""Linear weights held in fp16 with fp32 compute (`weights: auto|fp16|dtype`, engine/fp16_weights.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from switchboard.engine.fp16_weights import FP16Linear, fp16_exact, fp16_kernel, hold_fp16
from switchboard.engine.hf import HFEngine
from torch import nn

from .test_quantize import last_logits

pytestmark = pytest.mark.skipif(not fp16_kernel(), reason="no fbgemm fp16 GEMM in this torch build (not x86)")


def exact_linear(rows: int, cols: int, bias: bool = False) -> nn.Linear:
    torch.manual_seed(rows + cols)
    linear = nn.Linear(cols, rows, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(linear.weight.half().float())
    return linear


@pytest.mark.parametrize("shape", [(1, 64), (5, 64), (3, 7, 64)])
def test_fp16_linear_equals_the_fp32_linear_on_fp16_exact_weights(shape: tuple[int, ...]):
    linear = exact_linear(96, 64, bias=True)
    held = FP16Linear(linear)
    x = torch.randn(shape)
    with torch.inference_mode():
        got, want = held(x), linear(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # fp32 math: only the order of additions differs
    assert torch.equal(held.weight, linear.weight) and isinstance(held, nn.Linear)
    assert held.in_features == 64 and held.out_features == 96


def test_auto_swaps_only_exact_weights_and_fp16_rounds_the_rest():
    inexact = nn.Linear(8, 8)
    with torch.no_grad():
        inexact.weight.fill_(0.1)  # 0.1 is not an fp16 value
    assert not fp16_exact(inexact.weight) and fp16_exact(exact_linear(8, 8).weight)
    for mode, swapped in (("auto", 1), ("fp16", 2), ("dtype", 0)):
        model = nn.Sequential(exact_linear(8, 8), nn.Linear(8, 8))
        model[1].load_state_dict(inexact.state_dict())
        model.config = type("Config", (), {"get_text_config": lambda self: self})()
        held, why = hold_fp16(model, mode, torch.float32, torch.device("cpu"))  # type: ignore[arg-type]
        assert sum(isinstance(m, FP16Linear) for m in model) == swapped, why
        assert held == ("float32" if mode == "dtype" else "float16")
        assert ("1 kept in float32" in why) == (mode == "auto"), why
    model = nn.Sequential(exact_linear(8, 8))
    model.config = type("Config", (), {"get_text_config": lambda self: self})()
    assert hold_fp16(model, "auto", torch.bfloat16, torch.device("cpu"))[0] == "bfloat16"  # bf16: its own kernels
    assert not isinstance(model[0], FP16Linear)


@pytest.fixture(scope="module")
def engines(tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> dict[str, HFEngine]:
    """The tiny model (fp16-exact weights) served with fp16-held weights and as plain fp32, same adapters; the full
    lm_head product in both (the shortlisted one is tests/test_lm_head.py's)."""
    out = {}
    for mode in ("auto", "dtype"):
        eng = HFEngine(
            tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, weights=mode, lm_head="full"
        )
        eng.load_model()
        for name in ("alpha", "beta", "gamma"):
            eng.add_adapter_sync(name, tiny_adapters[name])
        out[mode] = eng
    return out


def test_engine_holds_every_linear_in_fp16_and_says_so(engines: dict[str, HFEngine]):
    held, plain = engines["auto"], engines["dtype"]
    causal_lm = held.stacks._causal_lm()
    assert isinstance(causal_lm.lm_head, FP16Linear)
    assert all(isinstance(layer.base_layer, FP16Linear) for layer in held.stacks._layers.values())
    assert held.describe()["weights"] == "float16" and plain.describe()["weights"] == "float32"
    assert held.describe()["weights_reason"] == "29 Linear weights held in fp16, fp32 compute"
    assert not any(isinstance(m, FP16Linear) for m in plain.stacks._causal_lm().modules())


@pytest.mark.parametrize("names", [["__base__"] * 4, ["alpha"] * 4, ["__base__", "alpha", "beta", "gamma"]])
def test_fp16_held_weights_give_the_fp32_logits(engines: dict[str, HFEngine], names: list[str]):
    from .test_engine import PROMPTS

    prompts = [PROMPTS[i % 4][: 5 + 3 * i] for i in range(len(names))]
    got = last_logits(engines["auto"], prompts, names)
    want = last_logits(engines["dtype"], prompts, names)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.equal(got.argmax(dim=1), want.argmax(dim=1))
