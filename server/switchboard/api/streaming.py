"""Turning an engine's output stream into SSE chunks or one response, and cancelling on disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ..engine.base import GenerationOutput, TokenLogprob
from ..errors import EngineFailure, SwitchboardError
from .logprobs import TokenTexts
from .tools import ToolPlan, ToolStream

logger = logging.getLogger(__name__)


def _usage(finals: dict[int, GenerationOutput]) -> dict[str, int]:
    """The prompt once, the completions of every choice summed (OpenAI's usage for n > 1)."""
    prompt = next(iter(finals.values())).prompt_tokens if finals else 0
    completion = sum(out.completion_tokens for out in finals.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(reason: str | None) -> str:
    if reason == "abort":
        raise EngineFailure("generation was aborted by the engine")
    return reason or "stop"


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


Choices = AsyncGenerator[tuple[int, GenerationOutput], None]


async def sse_chunks(
    stream: Choices,
    request_id: str,
    model: str,
    created: int,
    kind: str,
    include_usage: bool,
    n: int = 1,
    texts: TokenTexts | None = None,
    tools: ToolPlan | None = None,
) -> AsyncIterator[str]:
    """OpenAI streaming chunks, each for one choice (`index`), interleaved as the engine produces them; the
    first chunk is produced only after the engine accepted the request. With `texts` (the request asked for
    logprobs) a chunk carries the logprobs of the tokens whose text it carries. With `tools` each choice's text
    goes through a ToolStream: calls are sent as `tool_calls` deltas, and text that may begin one is held back."""
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    offsets = [0] * n  # completions' text_offset, per choice
    calls = [ToolStream(tools) for _ in range(n)] if tools is not None else None

    def chunk(
        index: int, delta: str | None, reason: str | None, out: GenerationOutput | None = None, tool_delta: Any = None
    ) -> str:
        logprobs = None
        if texts is not None and out is not None and out.logprobs is not None:
            if kind == "chat":
                logprobs = texts.chat(out.logprobs)
            else:
                logprobs, offsets[index] = texts.completion(out.logprobs, offsets[index])
        if kind == "chat":
            d: dict[str, Any] = {"role": "assistant", "content": ""} if out is None and reason is None else {}
            if tool_delta is not None or (calls is not None and out is not None):
                d = tool_delta or {}  # what the choice's ToolStream releases
            elif delta is not None and out is not None:
                d["content"] = delta
            choice: dict[str, Any] = {"index": index, "delta": d, "finish_reason": reason, "logprobs": logprobs}
        else:
            choice = {"index": index, "text": delta or "", "finish_reason": reason, "logprobs": logprobs}
        body: dict[str, Any] = {"id": request_id, "object": obj, "created": created, "model": model}
        body["choices"] = [choice]
        if include_usage:
            body["usage"] = None
        return _sse(body)

    iterator = stream  # an async generator is its own iterator; aclose() aborts it
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return
    # The engine accepted the request (errors above propagate before any byte is sent).
    if kind == "chat":
        for index in range(n):
            yield chunk(index, None, None)  # the role
    finals: dict[int, GenerationOutput] = {}
    try:
        index, out = first
        while True:
            if calls is not None:
                delta = calls[index].feed(out.text)
                if delta or out.logprobs:
                    yield chunk(index, out.text, None, out, delta)
            elif out.text or out.logprobs:
                yield chunk(index, out.text, None, out)
            if out.finish_reason is not None:
                reason = _finish_reason(out.finish_reason)
                if calls is not None:
                    last, reason = calls[index].finish(reason)
                    if last:
                        yield chunk(index, None, None, None, last)
                yield chunk(index, None if kind == "chat" else "", reason)
                finals[index] = out
                if len(finals) == n:
                    break
            index, out = await iterator.__anext__()
        if include_usage:
            usage = {"id": request_id, "object": obj, "created": created, "model": model, "choices": []}
            yield _sse({**usage, "usage": _usage(finals)})
    except SwitchboardError as exc:
        yield _sse(exc.to_dict())
    except StopAsyncIteration:
        pass
    finally:
        await iterator.aclose()  # aborts the engine rows when the client went away
    yield "data: [DONE]\n\n"


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@dataclass
class Choice:
    """One choice of a finished request: its text, why it ended and, when asked, its tokens' logprobs."""

    text: str
    finish_reason: str
    logprobs: list[TokenLogprob] | None


async def collect(request: Request, stream: Choices, n: int = 1) -> tuple[list[Choice], dict[str, int]]:
    """Run a request's `n` choices to their end; a client that disconnects meanwhile aborts them."""

    async def run() -> tuple[list[Choice], dict[str, int]]:
        parts: list[list[str]] = [[] for _ in range(n)]
        entries: list[list[TokenLogprob] | None] = [None] * n
        finals: dict[int, GenerationOutput] = {}
        try:
            async for index, out in stream:
                parts[index].append(out.text)
                if out.logprobs is not None:
                    entries[index] = (entries[index] or []) + out.logprobs
                if out.finish_reason is not None:
                    _finish_reason(out.finish_reason)
                    finals[index] = out
                    if len(finals) == n:
                        choices = [
                            Choice("".join(parts[i]), _finish_reason(finals[i].finish_reason), entries[i])
                            for i in range(n)
                        ]
                        return choices, _usage(finals)
        finally:
            await stream.aclose()  # now, not when collected: the request's metrics and access line need its end
        raise EngineFailure("the engine ended the request without a result")

    work = asyncio.ensure_future(run())
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        work.cancel()  # closes the engine stream, which aborts the row
        raise EngineFailure("client disconnected")
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()
