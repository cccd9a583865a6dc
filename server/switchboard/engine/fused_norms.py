"""RMSNorm as one op for fp32 serving (PyTorch's `F.rms_norm` in place of the model's own eight).

A decode step of Gemma 3 270M runs 109 RMSNorms (six per layer: around attention and MLP, and on q and
k), each written in transformers as float(), pow, mean, add, rsqrt, mul, (1 + weight), mul and type_as:
at one token per row each op is a few microseconds of dispatch for a few hundred values. `F.rms_norm`
does the same arithmetic in the same order, x * rsqrt(mean(x^2) + eps) * w, in one call (plus the
scale's add for Gemma): the outputs are bit-identical in float32 (tests/test_fused_norms.py), about
half the time per norm. Only float32 models are fused (in bf16 the model's own casts between the steps
decide the rounding), and only the norms whose arithmetic is known: Gemma 3's (scale 1 + weight) and
Llama's (scale weight, SmolLM2's).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

# class name -> how its scale follows from its weight
_SCALES = {
    "Gemma3RMSNorm": lambda weight: 1.0 + weight.float(),
    "LlamaRMSNorm": lambda weight: weight.float(),
}


def _fused(module: Any, scale_of: Any, eps: float, x: torch.Tensor) -> torch.Tensor:
    # the scale from the module's weight at each call: a copy of the module (PEFT's modules_to_save) keeps its own
    scale = scale_of(module.weight)
    return F.rms_norm(x, scale.shape, scale, eps)


def fuse_norms(model: Any, dtype: torch.dtype) -> int:
    """Give each known RMSNorm of a float32 `model` the one-op forward; returns how many."""
    if dtype != torch.float32:
        return 0
    fused = 0
    for module in model.modules():
        scale_of = _SCALES.get(type(module).__name__)
        eps = getattr(module, "eps", getattr(module, "variance_epsilon", None))
        weight = getattr(module, "weight", None)
        if scale_of is None or eps is None or not isinstance(weight, torch.Tensor) or weight.dtype != torch.float32:
            continue
        module.__dict__["forward"] = functools.partial(_fused, module, scale_of, float(eps))  # this instance only
        fused += 1
    return fused
