"""bf16 serving on the CPU with every Linear weight packed once for oneDNN (`weights: auto`).

`F.linear` on a bf16 weight lets oneDNN reorder that weight into its blocked layout on every call: at one
row, where a decode step is a string of small GEMVs, the reorder costs as much as the product (a 640 x 2048
MLP projection: ~100 µs against ~50 µs packed, on an AVX-512-bf16 EPYC). Reordered once at load
(`torch.ops.mkldnn._reorder_linear_weight`, then `_linear_pointwise`: what inductor's CPU freezing does),
the same weights give the same values bit for bit, 1.6-2.1x faster at one row and 1.3-2x at 4-16 rows
(`loadtests/bench_linear.py`, docs/benchmarks.md).

`PackedBF16Linear` is still an `nn.Linear`, so PEFT wraps it with LoRA layers as before; its `weight` is read
back from the packed form on demand (`to_dense`, exactly the values held), so no second copy is kept. The
lm_head is left as it is: it is the input embedding's table (tied), which the shortlisted head
(engine/lm_head.py) reads by rows and the lookup needs in its plain layout.

Applies where oneDNN has a native bf16 path: a CPU with AVX-512 (bw, vl, dq) or AMX and no restriction
below it (`ONEDNN_MAX_CPU_ISA=AVX2` refuses it).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn

from ..hardware import cpu_info
from .fp16_weights import WeightsMode, release_freed_memory

logger = logging.getLogger(__name__)


class PackedBF16Linear(nn.Linear):
    """An nn.Linear whose bf16 weight lives in oneDNN's blocked layout, reordered once; computes in bf16."""

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)  # not nn.Linear's: `weight` is the property below, not a parameter
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach().to(torch.bfloat16).contiguous()
        self._packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        )
        self.register_parameter("bias", bias)

    @property  # nn.Linear's is a Parameter; this one is read back on demand
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The bf16 weight [out, in] in the plain layout (exactly the values held)."""
        dense: torch.Tensor = self._packed.to_dense()
        return dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x.to(torch.bfloat16), self._packed, self.bias, "none", [], ""
        )
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bf16 weight packed for oneDNN"


@functools.cache
def packed_kernel() -> bool:
    """Whether oneDNN can run packed bf16 linears here: native bf16 on this CPU (not restricted) and the op
    computing a known product exactly."""
    if not cpu_info().native_bf16:
        return False
    try:
        weight = torch.tensor([[1.0, -2.0], [0.5, 4.0]], dtype=torch.bfloat16)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        x = torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        return bool(torch.equal(out.float(), torch.tensor([[-1.0, 4.5]])))
    except (RuntimeError, NotImplementedError, AttributeError) as exc:
        logger.info("no packed bf16 linear in this torch build or CPU: %s", exc)
        return False


def hold_packed_bf16(model: Any, mode: WeightsMode, device: torch.device) -> tuple[str, str]:
    """Swap a bf16 model's Linear layers (the lm_head aside) for PackedBF16Linear where `mode` is auto:
    (how they are held, why), e.g. ("bfloat16-packed", "126 Linear weights packed for oneDNN (bf16), the lm_head
    plain")."""
    if mode == "dtype":
        return "bfloat16", "weights in bfloat16, as configured (--weights dtype)"
    if mode == "fp16":
        return "bfloat16", "weights in bfloat16 (fp16-held weights apply to float32 on the CPU)"
    if device.type != "cpu":
        return "bfloat16", "weights in bfloat16"
    if not packed_kernel():
        return "bfloat16", "weights in bfloat16, not packed: oneDNN has no native bf16 path on this CPU"
    head = model.get_output_embeddings()
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child is not head and child.weight.dtype == torch.bfloat16:
                setattr(parent, name, PackedBF16Linear(child))
                swapped += 1
    release_freed_memory()  # the plain copies just dropped
    return "bfloat16-packed", f"{swapped} Linear weights packed for oneDNN (bf16), the lm_head plain"
