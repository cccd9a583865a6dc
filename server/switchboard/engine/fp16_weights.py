"""Float32 serving on the CPU with every Linear weight held in fp16 (`weights: auto|fp16|dtype`).

Decoding on a CPU reads every weight once per step, so its speed is set by bytes read and by the
kernel that reads them. fbgemm's FP16 GEMM (the kernel behind PyTorch's `linear_dynamic_fp16`) keeps
the weight packed in fp16 and computes in fp32: fp32 inputs, fp32 accumulation, fp32 outputs, half
the bytes of an fp32 weight. Where a weight's values are all exactly representable in fp16 - the
embedded Gemma 3 270M's are, as it is dequantized from a GGUF whose blocks are scaled in fp16 - the
product is the fp32 product up to the order of the additions: the swap is lossless. On a 2-core
AVX2 AMD EPYC it also ran 1.2-10x faster than the fp32 GEMM torch takes by default (MKL), most on
the 262k-row lm_head (docs/benchmarks.md).

`auto` swaps the weights that are fp16-exact and keeps the others in fp32; `fp16` swaps every one,
rounding those that are not (about 5e-4 relative error per weight, a quarter of bf16's); `dtype`
leaves every Linear as it is. Only a float32 model on the CPU is swapped: bf16 and GPU serving keep
their own kernels.

`FP16Linear` is still an `nn.Linear`, so PEFT wraps it with LoRA layers as before, and its `weight`
is read back from the packed form on demand (exactly the values it holds): PEFT's loader and DoRA
see the real weight without a second copy being kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from typing import Any, Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

WeightsMode = Literal["auto", "fp16", "dtype"]
_CHUNK_ROWS = 16384  # rows checked at a time: never a second full copy of the lm_head


class FP16Linear(nn.Linear):
    """An nn.Linear whose weight lives in fbgemm's packed fp16 form; computes in fp32."""

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: `weight` is the property below, not a parameter
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self._packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), None)
        bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.register_parameter("bias", bias)

    @property  # nn.Linear's is a Parameter; this one is read back on demand
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The fp32 weight [out, in], unpacked (exactly the fp16 values held)."""
        unpacked: torch.Tensor = torch.ops.quantized.linear_unpack_fp16(self._packed)[0]
        return unpacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed)
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight held in fp16 (fbgemm), fp32 compute"


@functools.cache
def fp16_kernel() -> bool:
    """Whether this torch build has fbgemm's FP16 GEMM (x86 builds do; others fall back to fp32)."""
    try:
        weight = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        out = torch.ops.quantized.linear_dynamic_fp16(torch.tensor([[1.0, 1.0]]), packed)
        return bool(torch.equal(out, torch.tensor([[-1.0, 4.5]])))
    except (RuntimeError, NotImplementedError, AttributeError) as exc:
        logger.info("no fp16 GEMM in this torch build: %s", exc)
        return False


def fp16_exact(weight: torch.Tensor) -> bool:
    """Whether every value of `weight` survives a round trip through fp16 unchanged."""
    for start in range(0, weight.shape[0], _CHUNK_ROWS):
        rows = weight[start : start + _CHUNK_ROWS]
        if not torch.equal(rows.to(torch.float16).to(rows.dtype), rows):
            return False
    return True


def hold_fp16(model: Any, mode: WeightsMode, dtype: torch.dtype, device: torch.device) -> tuple[str, str]:
    """Swap the model's Linear layers for FP16Linear as `mode` says: (how they are held, why), e.g.
    ("float16", "29 Linear weights held in fp16, fp32 compute"); ("float32", why not) where none is swapped.

    Applies to a float32 model on the CPU with the fp16 kernel; the lm_head stops being tied to the
    input embedding (which keeps its fp32 table for the lookup).
    """
    held = str(dtype).removeprefix("torch.")
    if mode == "dtype":
        return held, f"weights in {held}, as configured (--weights dtype)"
    if device.type != "cpu" or dtype != torch.float32:
        return held, f"weights in {held} (fp16-held weights apply to float32 on the CPU)"
    if not fp16_kernel():
        return held, "weights in float32: this torch build has no fp16 GEMM (fbgemm)"
    swapped = kept = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            if mode == "auto" and not fp16_exact(child.weight.detach()):
                kept += 1
                continue
            setattr(parent, name, FP16Linear(child))
            swapped += 1
    if not swapped:
        return held, f"weights in float32: none of the {kept} Linear weights is exact in fp16 (--weights fp16 rounds)"
    for config in (model.config, model.config.get_text_config()):  # the same object for a text-only model
        config.tie_word_embeddings = False  # the lm_head holds its own (packed) weight now
    release_freed_memory()  # the fp32 weights just dropped: ~0.5 GB on Gemma 3 270M
    rounded = " (rounded where not exact)" if mode == "fp16" else ""
    why = f"{swapped} Linear weights held in fp16{rounded}, fp32 compute"
    return "float16", why + (f"; {kept} kept in float32, not exact in fp16" if kept else "")


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS: glibc keeps what the swapped-out weights held (tensors of a few MB
    come from its heap once large frees raised its mmap threshold), and the process's RSS would keep it."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim, or no way to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def fp16_holds_all(model: Any) -> bool:
    """Whether every Linear weight of `model` is exact in fp16, i.e. `weights: auto` would hold them all."""
    return all(fp16_exact(m.weight.detach()) for m in model.modules() if type(m) is nn.Linear)
