"""An int8 base model on the CPU (`--quantize int8`): y = W_int8·x + B·A·x, each batch row with its adapter.

`quantize_int8` wraps every decoder projection (q/k/v/o/gate/up/down of every layer) in a PEFT LoRA
layer up front, so every runtime adapter attaches through the fast path
(lora_stacks.LoraStacks.prepare/attach) and rows keep choosing their adapter per request; then it
replaces each LoRA layer's `base_layer`, and the lm_head, by an `Int8Linear`. The LoRA A/B matmuls
run beside the int8 matmul, unquantized, in the compute dtype (fp32: fbgemm's int8 kernels take fp32
inputs, and on this CPU fp32 norms/attention around them are faster than bf16 plus casts).

`Int8Linear`: int8 weights with one scale per output channel; inputs quantized per row (per token)
on the fly. Each row is divided by its own max |x|, so fbgemm's kernel, whose input quantization is
per tensor, sees the same fixed range [-1, 1] for every row: a row's result does not depend on the
other rows of the batch (a mixed batch equals each request alone, as in fp32), and one row with
large activations does not cost the others their resolution.

Inputs are 8-bit where fbgemm's kernel accumulates u8 x s8 products exactly (AVX-512 VNNI), and
7-bit elsewhere: fbgemm's AVX2 and plain AVX-512 kernels (vpmaddubsw) add each pair of byte products
in a saturating 16-bit sum, and 2 x 255 x 127 = 64,770 does not fit where 2 x 127 x 127 = 32,258 does
(PyTorch's own fbgemm qconfig uses `reduce_range` for the same reason). Which one the kernel at hand
needs is tried once per process on its worst case (`kernel_input_bits`), so restricting the kernels
(FBGEMM_ENABLE_INSTRUCTIONS=AVX2) is honoured too. With the residual pass below both are as close to
the unquantized layer as the int8 weights allow.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# PEFT needs one adapter to wrap the layers; this one (r=1, B=0) stays but no row ever names it.
PLACEHOLDER = "__int8_base__"
# Two passes per input (see Int8Linear): on Gemma 3 270M one pass moved held-out loss by +0.05 nats and
# agreed with bf16 on 92% of next tokens; two passes leave the loss unchanged and agree on 96%.
PASSES = 2
# Input bits -> the row's range: a row scaled to [-L, L] quantizes to round(x) + zero point, in [1, 2L + 1].
INPUT_LEVELS = {8: 127.0, 7: 63.0}
_ZERO_POINTS = {8: 128, 7: 64}
_CHUNK_ROWS = 16384


class Int8Linear(nn.Module):
    """A Linear with int8 weights (per output channel) whose inputs are quantized per row.

    `passes=2` also quantizes what the first int8 pass rounded away (the rounding residual, in
    [-0.5, 0.5] of a step, times 2L) and runs both through one kernel call as 2x the rows: ~15-bit
    inputs (~13 with 7-bit ones), so the error is the weights' alone, for one more pass over the same
    packed weights. `bits` is the inputs' width per pass (default: what this CPU's kernel sums exactly).
    Computes in fp32 and returns the input's dtype. The bias, if any, is added in fp32 afterwards.
    """

    def __init__(self, linear: nn.Linear, passes: int = 1, bits: int | None = None) -> None:
        super().__init__()
        if passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {passes}")
        bits = require_kernel() if bits is None else bits
        if bits not in INPUT_LEVELS:
            raise ValueError(f"bits must be one of {sorted(INPUT_LEVELS)}, got {bits}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.passes = passes
        self.bits = bits
        weight = linear.weight.detach()
        ints = torch.empty(weight.shape, dtype=torch.int8)
        scales = torch.empty(self.out_features, dtype=torch.float64)
        for start in range(0, self.out_features, _CHUNK_ROWS):  # no fp32 copy of a whole lm_head at once
            rows = weight[start : start + _CHUNK_ROWS].to(device="cpu", dtype=torch.float32)
            step = (rows.abs().amax(dim=1) / 127.0).clamp_(min=1e-12)
            ints[start : start + _CHUNK_ROWS] = rows.div(step[:, None]).round_().to(torch.int8)
            scales[start : start + _CHUNK_ROWS] = step
        self._packed = pack_int8(ints, scales)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        levels = INPUT_LEVELS[self.bits]
        # each row scaled to [-L, L]: the kernel's fixed input quantization (scale 1, its zero point)
        # then rounds it to the nearest integer, whatever the other rows hold
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30).div_(levels)
        scaled = rows / scale
        if self.passes == 1:
            out = int8_matmul(scaled, self._packed, self.bits)
        else:
            residual = scaled.sub(scaled.round()).mul_(2 * levels)
            both = int8_matmul(torch.cat([scaled, residual]), self._packed, self.bits)
            n = rows.shape[0]
            out = both[:n].add_(both[n:], alpha=1.0 / (2 * levels))
        out.mul_(scale)
        if isinstance(self.bias, torch.Tensor):
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int8 weights per channel, {self.bits}-bit inputs per row in {self.passes} pass(es)"
        )


def pack_int8(ints: torch.Tensor, scales: torch.Tensor) -> Any:
    """fbgemm's packed form of int8 weights [out, in] with one fp64 scale per output channel."""
    zero_points = torch.zeros(ints.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensors are deprecated, but fbgemm's packing takes one
        warnings.simplefilter("ignore")
        qweight = torch._make_per_channel_quantized_tensor(ints, scales, zero_points, 0)
        return torch.ops.quantized.linear_prepack(qweight, None)


def int8_matmul(rows: torch.Tensor, packed: Any, bits: int) -> torch.Tensor:
    """fp32 rows already scaled to [-L, L] (L = INPUT_LEVELS[bits]) -> fp32 (round(rows) @ W_int8.T) * scales."""
    out: torch.Tensor = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        rows, 1.0, _ZERO_POINTS[bits], packed
    )
    return out


@functools.cache
def kernel_input_bits() -> int | None:
    """The widest inputs this process's int8 kernel sums exactly (8 or 7), None if there is no such kernel.

    Tried on the worst case, every input at the top of its range against weights of +127 and -127:
    a saturating 16-bit pair sum shows at once. The kernel is the one fbgemm picks for this CPU under
    this environment (FBGEMM_ENABLE_INSTRUCTIONS), which the CPU's flags alone can't tell.
    """
    weight = torch.full((2, 64), 127, dtype=torch.int8)
    weight[1] = -127
    try:
        packed = pack_int8(weight, torch.ones(2, dtype=torch.float64))
        for bits in sorted(INPUT_LEVELS, reverse=True):
            for sign in (1.0, -1.0):
                rows = torch.full((1, 64), sign * INPUT_LEVELS[bits])
                if not torch.equal(int8_matmul(rows, packed, bits), rows @ weight.float().T):
                    break
            else:
                return bits
    except (RuntimeError, NotImplementedError) as exc:  # a torch without fbgemm (e.g. on ARM)
        logger.info("no int8 kernel in this torch build: %s", exc)
    return None


def require_kernel() -> int:
    """kernel_input_bits(), or a clear refusal where no int8 kernel here is exact."""
    bits = kernel_input_bits()
    if bits is None:
        raise ValueError(
            "--quantize int8 needs fbgemm's int8 kernel (x86 CPUs), and this torch build has none that "
            "sums exactly on this CPU; serve unquantized (--quantize none)"
        )
    return bits


def _cast_output(dtype: torch.dtype) -> Callable[[nn.Module, tuple[Any, ...], torch.Tensor], torch.Tensor]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    return hook


def quantize_int8(model: Any, dtype: torch.dtype = torch.float32) -> Any:
    """The causal LM with an int8 base, as a PeftModel whose projections all carry (empty) LoRA layers.

    `dtype` is what the rest runs in (norms, attention, residual stream, LoRA); the input embedding
    table is only looked up, so a bf16 one stays bf16 (half the memory of fp32) and its rows are cast.
    """
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    if model.device.type != "cpu":
        raise ValueError(f"--quantize int8 runs on the CPU; the model is on {model.device}")
    bits = require_kernel()
    # quantize straight from the checkpoint's weights, then cast what is left: never a whole fp32 model
    embed = model.get_input_embeddings()
    model.set_output_embeddings(Int8Linear(model.get_output_embeddings(), PASSES, bits))
    model.config.tie_word_embeddings = False  # the lm_head is int8 now; the embedding keeps its own table
    config = LoraConfig(r=1, lora_alpha=1, target_modules=list(TARGETS), lora_dropout=0.0)
    peft_model = get_peft_model(model, config, adapter_name=PLACEHOLDER)
    count = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and isinstance(module.base_layer, nn.Linear):
            module.base_layer = Int8Linear(module.base_layer, PASSES, bits)
            count += 1
    for param in peft_model.parameters():  # parameters only: rotary frequencies stay fp32 buffers
        if param is not embed.weight:
            param.data = param.data.to(dtype)
    if embed.weight.dtype != dtype:  # a bf16 table stays bf16; its rows are cast as they are looked up
        embed.register_forward_hook(_cast_output(dtype))
    peft_model.eval()
    peft_model.requires_grad_(False)
    logger.info(
        "int8 base: %d projections and the lm_head quantized per channel (%d-bit inputs), the rest in %s",
        count,
        bits,
        dtype,
    )
    return peft_model


def refusal(key: str, path: Path) -> str:
    """Why an adapter that needs PEFT's own loader is not served on the int8 base, and the way out."""
    return (
        f"adapter '{key}' at {path} cannot be served on the int8 base (--quantize int8): only plain LoRA "
        f"adapters on the decoder projections ({', '.join(TARGETS)}) attach to it, and this one needs PEFT's "
        "own loader (DoRA, rank or alpha patterns, LoRA biases, modules_to_save, other target modules or "
        "another PEFT type); serve it on an unquantized base (--quantize none)"
    )
