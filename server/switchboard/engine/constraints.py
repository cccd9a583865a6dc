"""Structured outputs on the hf engine: `response_format` JSON schemas enforced by constrained decoding.

llguidance (docs/benchmarks.md, "Grammar library for structured outputs") compiles a schema in about a
millisecond, so each request compiles its own, twice: once in the API layer to refuse an invalid schema with
a 400 (`grammar`), once in a worker thread when the engine accepts it (`Grammars.compile`). Its tokenizer,
the vocabulary as byte strings, takes ~10 s to build for Gemma's 262k tokens: one per engine, built in a
worker thread on the first constrained request, never on the event loop or the engine thread.

Per decode step only the constrained rows pay: each fills its row of an int32 bitmask (token t allowed iff
bit t % 32 of word t // 32 is set) and its logits outside the mask become -inf before sampling; the sampled
token then advances its matcher. End-of-sequence is in the mask only once the document is complete, and a
row whose matcher has finished (the top-level value closed) ends at once with finish_reason "stop".
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from ..errors import InvalidRequest

logger = logging.getLogger(__name__)

JSON_OBJECT = '{"type": "object"}'  # response_format json_object: any JSON object
# compact output: no free whitespace between tokens, so a model cannot pad a document with blanks forever
_OPTIONS = {"whitespace_flexible": False}


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:  # pragma: no cover - a server installed without it
        raise InvalidRequest(
            "structured outputs need the llguidance package on the server; send response_format {'type': 'text'}",
            param="response_format",
        ) from exc
    return llguidance


def grammar(schema: str) -> str:
    """The llguidance grammar for a JSON schema (serialized JSON); InvalidRequest naming what is wrong."""
    llg = _llguidance()
    try:
        text = llg.LLMatcher.grammar_from_json_schema(schema, defaults=_OPTIONS)
        error = llg.LLMatcher.validate_grammar(text, None)
    except (ValueError, TypeError, RuntimeError) as exc:
        error = str(exc)
    if error:
        raise InvalidRequest(f"response_format: the JSON schema cannot be used: {error}", param="response_format")
    return str(text)


def schema_text(response_format: Any) -> str | None:
    """The JSON schema (serialized) that a validated `response_format` asks for; None for text."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return JSON_OBJECT
    if kind == "json_schema":
        return json.dumps(response_format["json_schema"]["schema"], ensure_ascii=False)
    return None


class Constraint:
    """One row's matcher: what it may emit next, and whether its document is complete."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def ends(self, token: int) -> bool:
        """Advance past `token` (emitted by the row); True when the row must stop: the document is complete
        or the matcher refused the token (only possible when another rule, e.g. min_tokens, masked all of it)."""
        if not self.matcher.consume_token(token):
            logger.warning("constrained row: matcher refused token %d (%s)", token, self.matcher.get_error())
            return True
        return bool(self.matcher.is_stopped())


class Grammars:
    """One engine's llguidance tokenizer, built once in a worker thread, and the matchers made with it."""

    def __init__(self, tokenizer: Any, n_vocab: int) -> None:
        self.hf_tokenizer = tokenizer
        self.n_vocab = n_vocab  # the width of the model's logits (may exceed len(tokenizer))
        self._future: Future[Any] | None = None
        self._lock = threading.Lock()

    def _build(self, future: Future[Any]) -> None:
        started = time.perf_counter()
        try:
            import llguidance.hf

            future.set_result(llguidance.hf.from_tokenizer(self.hf_tokenizer, n_vocab=self.n_vocab))
            logger.info("built the llguidance tokenizer in %.1fs", time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - delivered to every waiting request
            future.set_exception(exc)

    def start(self) -> Future[Any]:
        """Start building the tokenizer (once); the future holds it."""
        with self._lock:
            if self._future is None:
                self._future = Future()
                threading.Thread(
                    target=self._build, args=(self._future,), name="switchboard-llguidance", daemon=True
                ).start()
            return self._future

    async def compile(self, schema: str | None) -> Constraint | None:
        """A matcher for `schema` (None: free text), made in a worker thread at submission, so the engine thread
        never waits: the first one waits for the tokenizer."""
        return None if schema is None else await asyncio.to_thread(self.constraint, schema)

    def constraint(self, schema: str) -> Constraint:
        """A fresh matcher for `schema` (blocking: waits for the tokenizer)."""
        llg = _llguidance()
        matcher = llg.LLMatcher(self.start().result(), grammar(schema))
        if matcher.is_error():
            raise InvalidRequest(f"response_format: {matcher.get_error()}", param="response_format")
        return Constraint(matcher)


def constrain(logits: torch.Tensor, constraints: list[Constraint | None]) -> None:
    """Set to -inf, in place, each constrained row's logits [rows, vocab] outside what its matcher allows."""
    rows = [i for i, c in enumerate(constraints) if c is not None]
    if not rows:
        return
    from llguidance.torch import fill_next_token_bitmask

    vocab = logits.shape[-1]
    bitmask = torch.from_numpy(np.zeros((len(rows), (vocab + 31) // 32), dtype=np.int32))  # not torch's parallel fill
    for j, i in enumerate(rows):
        fill_next_token_bitmask(constraints[i].matcher, bitmask, j)  # type: ignore[union-attr]
    for j, i in enumerate(rows):
        mask_row(logits[i], bitmask[j].numpy())


def mask_row(row: torch.Tensor, words: np.ndarray) -> None:
    """-inf, in place, on the tokens of `row` [vocab] that the int32 bitmask `words` leaves out.

    On the CPU one single-threaded numpy pass: the cleared bits unpacked into a [vocab] bool, -inf written where
    they are set (0.2-0.5 ms for Gemma's 262k tokens, whatever the mask holds). torch's masked_fill is parallel,
    and on a busy 2-core machine waiting for its second thread took ~12 ms per row; indexing only the few allowed
    (or banned) tokens was as fast for the sparsest masks but took up to ~7 ms for masks that are neither (docs/
    benchmarks.md, "Structured outputs under load")."""
    banned = np.unpackbits((~words).view(np.uint8), count=row.shape[0], bitorder="little").view(np.bool_)
    if row.device.type != "cpu" or not row.is_contiguous():
        row.masked_fill_(torch.from_numpy(banned).to(row.device, non_blocking=True), -float("inf"))
        return
    as_int = _SAME_SIZE_INT[row.element_size()]  # numpy has no bf16: write -inf's bit pattern in the row's dtype
    np.copyto(row.view(as_int).numpy(), _neg_inf_bits(row.dtype), where=banned)


_SAME_SIZE_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@functools.cache
def _neg_inf_bits(dtype: torch.dtype) -> int:
    """-inf in `dtype`, read as the signed integer of the same size."""
    return int(torch.tensor(-float("inf"), dtype=dtype).view(_SAME_SIZE_INT[dtype.itemsize]).item())
