"""Log probabilities of generated tokens for the rows of a batch that ask for them (hf engine).

The distribution is the model's raw one: log_softmax of the logits in fp32, taken before logit_bias, the
penalties, temperature and the filters change them (vLLM v1's default `logprobs_mode`, 'raw_logprobs'), so a
token's logprob does not depend on how it was sampled. One log_softmax and one topk over the rows that ask,
with k the largest any of them asks; rows that do not ask cost nothing, a batch where none asks skips it all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import TokenLogprob
from .detokenize import IncrementalDetokenizer

MAX_LOGPROBS = 20  # most alternatives a row may ask for (OpenAI's top_logprobs limit)


@dataclass
class StepLogprobs:
    """The raw logprobs of one step for the rows that asked (`rows`), before the tokens are known."""

    rows: list[int]
    ks: list[int]
    logprobs: torch.Tensor  # [len(rows), vocab] fp32
    top_values: list[list[float]]
    top_ids: list[list[int]]

    def entries(self, tokens: list[int]) -> dict[int, TokenLogprob]:
        """Each asking row's entry for the token it got (row index in the batch -> entry)."""
        picked = torch.tensor([tokens[i] for i in self.rows], dtype=torch.long, device=self.logprobs.device)
        chosen = self.logprobs.gather(1, picked[:, None])[:, 0].tolist()
        out = {}
        for j, (row, k) in enumerate(zip(self.rows, self.ks, strict=True)):
            top = tuple(zip(self.top_ids[j][:k], self.top_values[j][:k], strict=True))
            out[row] = TokenLogprob(tokens[row], chosen[j], top)
        return out


def step_logprobs(logits: torch.Tensor, asked: list[int | None]) -> StepLogprobs | None:
    """Raw logprobs of the rows of `logits` [rows, vocab] whose `asked` is not None (call before sampling, which
    changes fp32 logits in place); None when no row asks."""
    rows = [i for i, k in enumerate(asked) if k is not None]
    if not rows:
        return None
    ks = [min(int(asked[i] or 0), MAX_LOGPROBS) for i in rows]
    idx = torch.tensor(rows, dtype=torch.long, device=logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, idx).float(), dim=-1)
    top_values: list[list[float]] = [[] for _ in rows]
    top_ids: list[list[int]] = [[] for _ in rows]
    if max(ks) > 0:
        values, ids = logprobs.topk(max(ks), dim=-1)
        top_values, top_ids = values.tolist(), ids.tolist()
    return StepLogprobs(rows, ks, logprobs, top_values, top_ids)


@dataclass
class HeldLogprobs:
    """A row's entries, each handed out with its token's text: the detokenizer may hold text back (a broken
    UTF-8 character, the start of a possible stop string), and an entry waits until its text is emitted."""

    entries: list[TokenLogprob] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # chars of the detokenizer's text once token i was decoded
    sent: int = 0

    def add(self, entry: TokenLogprob, detok: IncrementalDetokenizer) -> None:
        """Record the entry of the token just added to `detok`."""
        self.entries.append(entry)
        while len(self.ends) < detok.read_offset:
            self.ends.append(len(detok.text))

    def release(self, detok: IncrementalDetokenizer, final: bool = False) -> list[TokenLogprob]:
        """The entries whose text `detok` has emitted (all that are left when `final`)."""
        end = len(self.entries)
        if not final:
            end = self.sent
            while end < len(self.ends) and self.ends[end] <= detok.emitted:
                end += 1
        out, self.sent = self.entries[self.sent : end], max(self.sent, end)
        return out
