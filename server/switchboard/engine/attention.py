"""Decode attention in fp32 for bf16 models on the CPU (`switchboard_sdpa`, transformers' SDPA otherwise).

PyTorch's CPU flash-attention kernel is slow in bf16 at decode: for 16 rows of one query against ~100 cached
keys (Gemma 3 270M: 4 query heads on one 256-wide KV head) it takes ~1.4 ms a layer on a 2-core AVX-512-bf16
EPYC, where the same call in fp32 takes ~0.2 ms casts included: 18 layers made it a third of a bf16 decode
step (docs/benchmarks.md). So a bf16 model on the CPU computes decode attention (one new token per row) in
fp32: query, keys and values upcast, torch's own SDPA, the output rounded back to bf16 once. That is the
bf16 kernel's math (fp32 accumulation) with fewer roundings; prefill (many queries a row) stays in bf16,
where the bf16 kernel is not the slower one.

Registered with transformers' AttentionInterface (and its mask interface, so masks are built as for `sdpa`);
`use_fp32_decode_attention` switches a loaded model to it.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "switchboard_sdpa"


def sdpa_fp32_decode(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, in fp32 where the query is one bf16 token per row on the CPU."""
    if query.dtype == torch.bfloat16 and query.device.type == "cpu" and query.shape[2] == 1:
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
        return out.to(torch.bfloat16), weights
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(NAME, sdpa_fp32_decode)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_fp32_decode_attention(model: Any, dtype: torch.dtype, device: torch.device) -> bool:
    """Switch a bf16 model on the CPU that uses transformers' SDPA to `switchboard_sdpa`; whether it did."""
    if dtype != torch.bfloat16 or device.type != "cpu" or model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(NAME)
    return bool(model.config._attn_implementation == NAME)
