"""Incremental detokenization with stop strings: emit text as soon as it is final, never a broken
UTF-8 character (common with Chinese byte-fallback tokens) and never the start of a stop string."""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns generated token ids into text deltas (the prefix/read offset scheme of TGI and vLLM)."""

    def __init__(
        self, tokenizer: Any, stop: tuple[str, ...] = (), skip_special_tokens: bool = True, min_tokens: int = 0
    ) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""  # all final text so far
        self.emitted = 0  # chars of self.text already handed out
        self.stop = tuple(s for s in stop if s)
        self.max_stop = max((len(s) for s in self.stop), default=0)
        self.stopped = False
        self.skip_special_tokens = skip_special_tokens
        self.min_tokens = min_tokens  # stop strings are looked for only in the text after this many tokens (vLLM)
        self.stop_from = 0  # chars of self.text that came before

    def _decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(
            ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )
        return text

    def add(self, token_id: int) -> None:
        """Append a token; sets `stopped` when the text now contains a stop string."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            if len(self.ids) <= self.min_tokens:
                self.stop_from = len(self.text)
            else:
                self._check_stop()

    def _check_stop(self) -> None:
        if not self.stop:
            return
        start = max(self.stop_from, self.emitted - self.max_stop)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def flush(self, final: bool = False) -> str:
        """Return the text that is safe to emit now (all of it when `final`)."""
        end = len(self.text)
        if not final and self.stop and not self.stopped:
            end = self._safe_end()
        delta = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return delta

    def _safe_end(self) -> int:
        """Hold back a tail that could be the beginning of a stop string."""
        text = self.text
        for k in range(min(self.max_stop - 1, len(text) - self.emitted), 0, -1):
            tail = text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return len(text) - k
        return len(text)
