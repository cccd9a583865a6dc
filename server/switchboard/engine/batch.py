"""The running batch of the hf engine: rows, their left-padded KV cache, attention mask and positions.

Rows join by merging a freshly prefilled batch into the running one (caches left-padded to a common
length, as TGI's CausalLMBatch.concatenate does) and leave by index selection; padding columns no row
needs any more are trimmed. The cache is transformers' own DynamicCache with full layers, so sliding-
window models (Gemma 3) keep every key: the sliding window is applied by the attention mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from .base import GenerationRequest
from .constraints import Constraint
from .detokenize import IncrementalDetokenizer
from .logprobs import HeldLogprobs
from .lora_stacks import BASE_ROW
from .sampling import RowSampler

# what generate() hands the engine thread: the request, its sink, its response_format's matcher (None: free text)
Submission = tuple[GenerationRequest, Any, Constraint | None]


@dataclass
class Row:
    """One request in the batch."""

    request: GenerationRequest
    sink: Any  # callable(GenerationOutput) that delivers to the request's collector
    detok: IncrementalDetokenizer
    sampler: RowSampler
    max_new: int  # completion tokens allowed (max_tokens capped by the context window)
    generated: int = 0
    finish_reason: str | None = None
    queue_s: float | None = None  # reported once, with the first output
    stop_ids: frozenset[int] = field(default_factory=frozenset)
    held: HeldLogprobs | None = None  # when the request asked for logprobs
    constraint: Constraint | None = None  # when the request has a response_format (engine/constraints.py)

    @classmethod
    def start(
        cls,
        request: GenerationRequest,
        sink: Any,
        tokenizer: Any,
        stop_ids: frozenset[int],
        room: int,
        constraint: Constraint | None = None,
    ) -> Row:
        """A new row for `request`: `stop_ids` are the model's end-of-sequence ids, `room` the tokens left in the
        context window after the prompt, `constraint` the response_format's matcher (engine/constraints.py)."""
        p = request.params
        stop_ids = (frozenset() if p.ignore_eos else stop_ids) | frozenset(p.stop_token_ids)
        return cls(
            request=request,
            sink=sink,
            detok=IncrementalDetokenizer(tokenizer, p.stop, p.skip_special_tokens, p.min_tokens),
            sampler=RowSampler(p, request.prompt_ids, stop_ids),
            max_new=max(0, min(p.max_tokens, room)),
            stop_ids=stop_ids,
            held=HeldLogprobs() if p.logprobs is not None else None,
            constraint=constraint,
        )

    @property
    def adapter_name(self) -> str:
        return self.request.adapter or BASE_ROW


def _left_pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded batch: token ids, attention mask and positions, each [rows, longest]."""
    length = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), length), dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, length - len(prompt) :] = 1
    return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)


# Prefill: a prompt joins the group before it unless that adds more pad tokens than one more forward costs (its
# fixed work, ~30 ms for Gemma 3 270M on 2 cores, is the work of about this many prompt tokens).
PAD_TOKENS_PER_FORWARD = 32


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of the prompts, shortest first, cut into groups to prefill apart: a batch left-padded to its
    longest prompt computes every pad, so a 20-token prompt beside a 128-token one costs 128. Greedy: the next
    (longer) prompt pads each member of the current group by its excess over the group's longest."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else None
        if group is None or (lengths[i] - lengths[group[-1]]) * len(group) > PAD_TOKENS_PER_FORWARD:
            groups.append([i])
        else:
            group.append(i)
    return groups


class Batch:
    """Rows decoded together; row i owns cache row i, mask row i, position i and next token i."""

    def __init__(
        self,
        rows: list[Row],
        cache: DynamicCache,
        mask: torch.Tensor,
        positions: torch.Tensor,
        tokens: torch.Tensor,
    ) -> None:
        self.rows = rows
        self.cache = cache
        self.mask = mask  # [B, L] 1 = real token
        self.positions = positions  # [B] position id of the next token to feed
        self.tokens = tokens  # [B] next token to feed

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def adapter_names(self) -> list[str]:
        return [r.adapter_name for r in self.rows]

    def _layers(self) -> list[Any]:
        return list(self.cache.layers)

    def merge(self, other: Batch) -> None:
        """Append `other`'s rows, left-padding both caches to a common length."""
        length = max(self.length, other.length)
        for mine, theirs in zip(self._layers(), other._layers(), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, length, 2), _left_pad(theirs.keys, length, 2)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, length, 2), _left_pad(theirs.values, length, 2)], dim=0)
        self.mask = torch.cat([_left_pad(self.mask, length, 1), _left_pad(other.mask, length, 1)], dim=0)
        self.positions = torch.cat([self.positions, other.positions])
        self.tokens = torch.cat([self.tokens, other.tokens])
        self.rows.extend(other.rows)

    def keep(self, indices: list[int]) -> None:
        """Keep only the rows at `indices`, then drop left columns that no remaining row uses."""
        if len(indices) == len(self.rows):
            return
        idx = torch.tensor(indices, dtype=torch.long)
        self.rows = [self.rows[i] for i in indices]
        self.mask = self.mask.index_select(0, idx)
        self.positions = self.positions.index_select(0, idx)
        self.tokens = self.tokens.index_select(0, idx)
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.length
        for layer in self._layers():
            layer.keys = layer.keys.index_select(0, idx)[:, :, start:]
            layer.values = layer.values.index_select(0, idx)[:, :, start:]
        self.mask = self.mask[:, start:]

    def advance(self, new_tokens: list[int]) -> None:
        """Record the tokens sampled this step: they are fed at the next step."""
        self.tokens = torch.tensor(new_tokens, dtype=torch.long)
        self.positions = self.positions + 1
