"""Token logprobs in OpenAI's shapes: chat's `{"content": [...], "refusal": null}` and the completions
endpoint's `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`, whole or as a stream's increments."""

from __future__ import annotations

import re
from typing import Any

from ..engine.base import TokenLogprob

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte fallback: one raw byte


class TokenTexts:
    """Each token id's text (as the tokenizer decodes it alone) and its UTF-8 bytes: a byte-fallback token,
    which decodes to U+FFFD alone, gives its one raw byte, so a client can join a character's bytes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def get(self, token_id: int) -> tuple[str, list[int]]:
        known = self._cache.get(token_id)
        if known is None:
            text: str = self.tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            piece = self.tokenizer.convert_ids_to_tokens(token_id)
            match = _BYTE_TOKEN.fullmatch(piece) if isinstance(piece, str) else None
            raw = [int(match.group(1), 16)] if match else list(text.encode("utf-8"))
            known = self._cache[token_id] = (text, raw)
        return known

    def chat(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        """Chat's `choices[i].logprobs` (or a chunk's increment of it)."""

        def item(token_id: int, logprob: float) -> dict[str, Any]:
            text, raw = self.get(token_id)
            return {"token": text, "logprob": logprob, "bytes": raw}

        content = [{**item(e.token_id, e.logprob), "top_logprobs": [item(t, lp) for t, lp in e.top]} for e in entries]
        return {"content": content, "refusal": None}

    def completion(self, entries: list[TokenLogprob], offset: int = 0) -> tuple[dict[str, Any], int]:
        """The completions endpoint's `choices[i].logprobs` and the text offset after it; `offset`: the chars of
        the completion before these tokens (for a stream's increments). `top_logprobs` holds the `logprobs` most
        likely tokens and the sampled one, as OpenAI's legacy API (up to logprobs + 1 entries)."""
        tokens, offsets = [], []
        for e in entries:
            tokens.append(self.get(e.token_id)[0])
            offsets.append(offset)
            offset += len(tokens[-1])
        top = [{**{self.get(t)[0]: lp for t, lp in e.top}, tokens[i]: e.logprob} for i, e in enumerate(entries)]
        payload = {
            "tokens": tokens,
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": top,
            "text_offset": offsets,
        }
        return payload, offset
