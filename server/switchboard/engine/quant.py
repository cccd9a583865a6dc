"""An int8 base model on the CPU (`--quantize int8`): y = W_int8·x + B·A·x, each batch row with its adapter.

`quantize_int8` wraps every decoder projection (q/k/v/o/gate/up/down of every layer) in a PEFT LoRA
layer up front, so every runtime adapter attaches through the fast path
(lora_rows.MultiLoraModel.prepare/attach) and rows keep choosing their adapter per request; then it
replaces each LoRA layer's `base_layer`, and the lm_head, by an `Int8Linear`. The LoRA A/B matmuls
run beside the int8 matmul, unquantized, in the compute dtype (fp32: fbgemm's int8 kernels take fp32
inputs, and on this CPU fp32 norms/attention around them are faster than bf16 plus casts).

`Int8Linear`: int8 weights with one scale per output channel; inputs quantized per row (per token)
on the fly. Each row is divided by its own max |x|, so fbgemm's kernel, whose input quantization is
per tensor, sees the same fixed range [-1, 1] for every row: a row's result does not depend on the
other rows of the batch (a mixed batch equals each request alone, as in fp32), and one row with
large activations does not cost the others their resolution. The int8 products accumulate in int32
exactly on CPUs with AVX-512 VNNI or AVX-VNNI; older x86 kernels sum byte pairs in 16 bits, which may
saturate, so the engine warns there.
"""

from __future__ import annotations

import logging
import warnings
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
_ROW_LEVELS = 127.0  # a row scaled to [-127, 127] quantizes to round(x) + 128, in [1, 255]
_ROW_ZERO_POINT = 128
_CHUNK_ROWS = 16384


class Int8Linear(nn.Module):
    """A Linear with int8 weights (per output channel) whose inputs are quantized per row.

    `passes=2` also quantizes what the first int8 pass rounded away (the rounding residual, in
    [-0.5, 0.5] of a step, times 254) and runs both through one kernel call as 2x the rows: ~15-bit
    inputs, so the error is the weights' alone, for one more pass over the same packed weights.
    Computes in fp32 and returns the input's dtype. The bias, if any, is added in fp32 afterwards.
    """

    def __init__(self, linear: nn.Linear, passes: int = 1) -> None:
        super().__init__()
        if passes not in (1, 2):
            raise ValueError(f"passes must be 1 or 2, got {passes}")
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.passes = passes
        weight = linear.weight.detach()
        ints = torch.empty(weight.shape, dtype=torch.int8)
        scales = torch.empty(self.out_features, dtype=torch.float64)
        for start in range(0, self.out_features, _CHUNK_ROWS):  # no fp32 copy of a whole lm_head at once
            rows = weight[start : start + _CHUNK_ROWS].to(device="cpu", dtype=torch.float32)
            step = (rows.abs().amax(dim=1) / 127.0).clamp_(min=1e-12)
            ints[start : start + _CHUNK_ROWS] = rows.div(step[:, None]).round_().to(torch.int8)
            scales[start : start + _CHUNK_ROWS] = step
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated, but fbgemm's packing takes one
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(ints, scales, zero_points, 0)
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        # each row scaled to [-127, 127]: the kernel's fixed input quantization (scale 1, zero point 128)
        # then rounds it to the nearest integer, whatever the other rows hold
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-30).div_(_ROW_LEVELS)
        scaled = rows / scale
        if self.passes == 1:
            out = _int8_matmul(scaled, self._packed)
        else:
            residual = scaled.sub(scaled.round()).mul_(2 * _ROW_LEVELS)
            both = _int8_matmul(torch.cat([scaled, residual]), self._packed)
            n = rows.shape[0]
            out = both[:n].add_(both[n:], alpha=1.0 / (2 * _ROW_LEVELS))
        out.mul_(scale)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int8 weights per channel, inputs per row in {self.passes} pass(es)"
        )


def _int8_matmul(rows: torch.Tensor, packed: Any) -> torch.Tensor:
    """fp32 rows already scaled to [-127, 127] -> fp32 (round(rows) @ W_int8.T) * weight scales."""
    return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(rows, 1.0, _ROW_ZERO_POINT, packed)


def _cast_output(dtype: torch.dtype):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
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
    # quantize straight from the checkpoint's weights, then cast what is left: never a whole fp32 model
    embed = model.get_input_embeddings()
    model.set_output_embeddings(Int8Linear(model.get_output_embeddings(), passes=PASSES))
    model.config.tie_word_embeddings = False  # the lm_head is int8 now; the embedding keeps its own table
    config = LoraConfig(r=1, lora_alpha=1, target_modules=list(TARGETS), lora_dropout=0.0)
    peft_model = get_peft_model(model, config, adapter_name=PLACEHOLDER)
    count = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and isinstance(module.base_layer, nn.Linear):
            module.base_layer = Int8Linear(module.base_layer, passes=PASSES)
            count += 1
    for param in peft_model.parameters():  # parameters only: rotary frequencies stay fp32 buffers
        if param is not embed.weight:
            param.data = param.data.to(dtype)
    if embed.weight.dtype != dtype:  # a bf16 table stays bf16; its rows are cast as they are looked up
        embed.register_forward_hook(_cast_output(dtype))
    peft_model.eval()
    peft_model.requires_grad_(False)
    if not _has_vnni():
        logger.warning("this CPU lacks AVX-512 VNNI / AVX-VNNI: int8 matmuls may saturate; consider --quantize none")
    logger.info("int8 base: %d projections and the lm_head quantized per channel, the rest in %s", count, dtype)
    return peft_model


def refusal(key: str, path: Path) -> str:
    """Why an adapter that needs PEFT's own loader is not served on the int8 base, and the way out."""
    return (
        f"adapter '{key}' at {path} cannot be served on the int8 base (--quantize int8): only plain LoRA "
        f"adapters on the decoder projections ({', '.join(TARGETS)}) attach to it, and this one needs PEFT's "
        "own loader (DoRA, rank or alpha patterns, LoRA biases, modules_to_save, other target modules or "
        "another PEFT type); serve it on an unquantized base (--quantize none)"
    )


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return True  # can't tell; don't cry wolf
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags
