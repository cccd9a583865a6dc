"""A shortlisted lm_head for fp32 and bf16 serving on the CPU (`lm_head: auto|shortlist|full`).

Gemma 3's output layer is a [262144 x 640] matrix: 60 % of a decode step's FLOPs, and at 16 rows the
largest single cost of the step (fbgemm's fp16 GEMM is compute-bound there). Only the top of each
row's logits decides the next token, so `ShortlistHead` scores the whole vocabulary once with
fbgemm's int8 kernel (weights per output channel, inputs per row: engine/quant.py's `Int8Linear`,
about half the time of the fp16 GEMM), takes each row's `keep` (64) highest of those approximate
logits, and computes those again exactly in fp32 from the fp32 rows of the tied input embedding (the
lm_head's own weights). The logits it returns are exact on the shortlist and int8-approximate (about
1 % of the row's range) elsewhere: the greedy token is fp32's unless the int8 error pushes fp32's
best below 64 others, and the top-20 logprobs are exact; what the approximation touches is the tail
of the distribution, which sampling reaches with tiny probability and logprobs only through the
normalising sum. So only rows the shortlist decides exactly use it (`shortlist_decides`: greedy, no
logprobs, bias, penalties or grammar); the others, and every row under `full`, get the full product
(docs/engine.md). The model's own lm_head is untouched: losses and training read exact logits.
`auto` shortlists where it pays: a float32 model on the CPU whose lm_head is held in fp16
(engine/fp16_weights.py) and tied to the input embedding, a vocabulary of at least 32k tokens, and an
int8 kernel on this CPU.

A bf16 model (`dtype: bfloat16`, or `auto` on an AMX CPU) is shortlisted the same way: the shortlist is
scored in fp32 from the bf16 table's values and rounded to bf16 once, as the full bf16 product (fp32
accumulation, one rounding) does. On an AMX CPU the full bf16 product hardly grows with the rows, so
there a call with more than `AMX_MAX_ROWS` shortlisted rows takes the full product for every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware import cpu_info
from .base import SamplingParams
from .fp16_weights import FP16Linear, release_freed_memory
from .quant import Int8Linear, kernel_input_bits

HeadMode = Literal["auto", "shortlist", "full"]
KEEP = 64  # rows of the shortlist: exact logits for each row's 64 best int8 guesses
CHUNK = 64  # top_indices: the vocabulary in runs of 64 logits, the best runs first
# bf16 on an AMX CPU: oneDNN's full bf16 product takes about as long for 32 rows as for one (31-38 ms on
# Gemma 3 270M's lm_head) while the shortlist grows with the rows (9/13/24/57 ms at 1/4/16/32): beyond 16
# rows a step, the full product is the faster one (docs/engine.md)
AMX_MAX_ROWS = 16
MIN_VOCAB = 32768  # below it the full product is cheap and the shortlist saves nothing


class ShortlistHead(nn.Module):
    """logits [rows, vocab] of `hidden` [rows, hidden]: int8 over the vocabulary, exact on each row's top `keep`;
    the rows that `shortlisted` leaves out (a bool per row) get the `full` head's product instead."""

    def __init__(  # fmt: skip
        self,
        weight: torch.Tensor,
        full: nn.Module,
        keep: int = KEEP,
        bits: int | None = None,
        max_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.weight = weight  # [vocab, hidden] fp32 or bf16, shared with the input embedding (no copy)
        self.full = full  # the model's own lm_head
        self.keep = min(keep, weight.shape[0])
        self.max_rows = max_rows  # more shortlisted rows than this in one call: the full product for all
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")  # no table allocated
        linear.weight = nn.Parameter(weight, requires_grad=False)
        self.int8 = Int8Linear(linear, passes=1, bits=bits)

    def forward(self, hidden: torch.Tensor, shortlisted: torch.Tensor | None = None) -> torch.Tensor:
        if self.max_rows is not None:
            count = hidden.numel() // hidden.shape[-1] if shortlisted is None else int(shortlisted.sum())
            if count > self.max_rows:
                whole: torch.Tensor = self.full(hidden)
                return whole
        if shortlisted is not None and not bool(shortlisted.all()):
            if not bool(shortlisted.any()):
                full: torch.Tensor = self.full(hidden)
                return full
            out = torch.empty(hidden.shape[0], self.weight.shape[0], dtype=hidden.dtype, device=hidden.device)
            out[shortlisted] = self.forward(hidden[shortlisted])
            out[~shortlisted] = self.full(hidden[~shortlisted])
            return out
        rows = hidden.reshape(-1, hidden.shape[-1]).float()
        logits = self.int8(rows)
        best = top_indices(logits, self.keep)  # [rows, keep]
        exact = torch.bmm(self.weight[best].float(), rows.unsqueeze(-1)).squeeze(-1)
        logits.scatter_(1, best, exact)
        shortlist: torch.Tensor = logits.reshape(*hidden.shape[:-1], -1).to(hidden.dtype)
        return shortlist


def top_indices(logits: torch.Tensor, k: int, chunk: int = CHUNK) -> torch.Tensor:
    """The indices of each row's k largest values of `logits` [rows, n], in no order: the same set as
    `topk(k).indices` (up to ties), about 5x faster on a 262k vocabulary. torch's topk selects over every
    value on one thread per row; here each run of `chunk` values is reduced to its max (vectorised), the k
    runs with the largest maxima are kept, and topk picks from their k*chunk values. No value outside those
    runs can be among the k largest: its run's max is beaten by k other runs' maxima, i.e. by k values."""
    rows, n = logits.shape
    runs = -(-n // chunk)
    if runs <= k:
        return logits.topk(k, dim=-1, sorted=False).indices
    padded = logits if n % chunk == 0 else F.pad(logits, (0, runs * chunk - n), value=-float("inf"))
    best_runs = padded.view(rows, runs, chunk).amax(dim=-1).topk(k, dim=-1, sorted=False).indices  # [rows, k]
    candidates = (best_runs.unsqueeze(-1) * chunk + torch.arange(chunk, device=logits.device)).reshape(rows, -1)
    picked = padded.gather(1, candidates).topk(k, dim=-1, sorted=False).indices
    best = candidates.gather(1, picked)
    return best if padded is logits else best.clamp_(max=n - 1)  # a pad is only picked where k values are -inf


def shortlist_head(model: Any, mode: HeadMode, tied: torch.Tensor | None) -> tuple[ShortlistHead | None, str]:
    """The head that serving uses in place of the model's lm_head (None: the lm_head itself), and why.
    `tied` is the input embedding's weight where the lm_head shared it before its weights were swapped."""
    if mode == "full":
        return None, "lm_head: full product for every token, as configured (--lm-head full)"
    head = model.get_output_embeddings()
    vocab = getattr(head, "out_features", 0)
    why_not = None
    if (
        tied is None
        or tied.dtype not in (torch.float32, torch.bfloat16)
        or tied.device.type != "cpu"
        or tied.shape != (vocab, getattr(head, "in_features", -1))
    ):
        why_not = "its weights are not an fp32 or bf16 table on the CPU tied to the input embedding"
    elif mode == "auto" and tied.dtype == torch.float32 and not isinstance(head, FP16Linear):
        why_not = "it is not held in fp16 with fp32 compute (--weights, float32 on the CPU)"
    elif mode == "auto" and vocab < MIN_VOCAB:
        why_not = f"a vocabulary of {vocab} is small enough for the full product"
    elif (bits := kernel_input_bits()) is None:
        why_not = "this CPU has no exact int8 kernel (fbgemm)"
    if why_not is not None:
        if mode == "shortlist":
            raise ValueError(f"--lm-head shortlist cannot apply to this model: {why_not}")
        return None, f"lm_head: full product ({why_not})"
    assert tied is not None
    cpu = cpu_info()
    amx = tied.dtype == torch.bfloat16 and cpu.native_bf16 and "amx_bf16" in cpu.flags
    shortlist = ShortlistHead(tied, head, bits=bits, max_rows=AMX_MAX_ROWS if amx else None)
    release_freed_memory()  # the int8 table's staging copies (~0.2 GB on Gemma 3 270M)
    why = f"lm_head: int8 over {vocab} tokens, the best {KEEP} per row exact"
    return shortlist, why + (f"; over {AMX_MAX_ROWS} rows a step the full bf16 product (AMX)" if amx else "")


def shortlisted(head: nn.Module | None, rows: Sequence[Any]) -> torch.Tensor | None:
    """Which of the engine's rows (each with `.request.params`) `head` decides exactly when it is a shortlist
    (None: no shortlisted head, every row gets the full product)."""
    if head is None:
        return None
    return torch.tensor([shortlist_decides(row.request.params) for row in rows])


def shortlist_decides(params: SamplingParams) -> bool:
    """Whether a row's next token is fp32's when only the shortlist is exact: a greedy pick with nothing that
    reorders or reads the tail (no logprobs, logit_bias, penalties or JSON grammar). Other rows get the full
    product: sampling at a temperature reaches the tail, and their logprobs normalise over it."""
    return (
        params.temperature == 0.0
        and params.logprobs is None
        and not params.logit_bias
        and params.presence_penalty == 0.0
        and params.frequency_penalty == 0.0
        and params.repetition_penalty == 1.0
        and params.json_schema is None
    )
