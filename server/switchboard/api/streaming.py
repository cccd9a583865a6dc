"""Turning an engine's output stream into SSE chunks or one response, and cancelling on disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request

from ..engine.base import GenerationOutput
from ..errors import EngineFailure, SwitchboardError

logger = logging.getLogger(__name__)


def _usage(out: GenerationOutput) -> dict[str, int]:
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
    }


def _finish_reason(reason: str | None) -> str:
    if reason == "abort":
        raise EngineFailure("generation was aborted by the engine")
    return reason or "stop"


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def sse_chunks(
    stream: AsyncGenerator[GenerationOutput, None],
    request_id: str,
    model: str,
    created: int,
    kind: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """OpenAI streaming chunks; the first chunk is produced only after the engine accepted the request."""
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(delta: str | None, reason: str | None, role: bool = False) -> str:
        if kind == "chat":
            d: dict[str, Any] = {}
            if role:
                d["role"] = "assistant"
            if delta is not None:
                d["content"] = delta
            choice: dict[str, Any] = {"index": 0, "delta": d, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": reason, "logprobs": None}
        body: dict[str, Any] = {
            "id": request_id,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
        }
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
        yield chunk("", None, role=True)
    try:
        out = first
        while True:
            if out.finish_reason is not None:
                reason = _finish_reason(out.finish_reason)
                if out.text:
                    yield chunk(out.text, None)
                yield chunk(None if kind == "chat" else "", reason)
                if include_usage:
                    yield _sse(
                        {
                            "id": request_id,
                            "object": obj,
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": _usage(out),
                        }
                    )
                break
            if out.text:
                yield chunk(out.text, None)
            out = await iterator.__anext__()
    except SwitchboardError as exc:
        yield _sse(exc.to_dict())
    except StopAsyncIteration:
        pass
    finally:
        await iterator.aclose()  # aborts the engine row when the client went away
    yield "data: [DONE]\n\n"


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(request: Request, stream: AsyncIterator[GenerationOutput]) -> tuple[str, str, dict[str, int]]:
    """Run a request to its end; a client that disconnects meanwhile aborts it."""

    async def run() -> tuple[str, str, dict[str, int]]:
        parts: list[str] = []
        async for out in stream:
            parts.append(out.text)
            if out.finish_reason is not None:
                return "".join(parts), _finish_reason(out.finish_reason), _usage(out)
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
