"""Token selection for a batch of rows, each with its own temperature, top_p and seeded generator."""

from __future__ import annotations

import random

import torch

from .base import SamplingParams


class RowSampler:
    """Per-request sampling state; a seed makes the request's samples repeatable."""

    def __init__(self, params: SamplingParams) -> None:
        self.greedy = params.temperature <= 0.0
        self.temperature = max(params.temperature, 1e-5)
        self.top_p = params.top_p
        self.generator: torch.Generator | None = None
        if not self.greedy:
            self.generator = torch.Generator()
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            self.generator.manual_seed(seed)


def sample(logits: torch.Tensor, samplers: list[RowSampler]) -> list[int]:
    """Pick one token per row of `logits` [rows, vocab]."""
    logits = logits.float()  # argmax over a bf16 vocab row is ~5x slower on CPU than over fp32
    tokens = logits.argmax(dim=-1).tolist()
    for i, sampler in enumerate(samplers):
        if sampler.greedy:
            continue
        row = logits[i] / sampler.temperature
        probs = torch.softmax(row, dim=-1)
        if sampler.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            drop = cumulative - sorted_probs >= sampler.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=sampler.generator)
            tokens[i] = int(order[choice])
        else:
            tokens[i] = int(torch.multinomial(probs, 1, generator=sampler.generator))
    return tokens
