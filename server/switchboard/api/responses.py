"""Responses of the completion endpoints: one JSON body (chat.completion / text_completion) or an SSE
stream of chunks, both carrying which adapter version served them (`X-Adapter`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..engine.base import GenerationRequest
from ..registry import AdapterRef, served_by
from ..routing import Route
from ..services import Services
from .access import exchange_of, sane_request_id
from .logprobs import TokenTexts
from .observe import observed
from .schemas import SamplingFields
from .streaming import Choice, collect, sse_chunks
from .tenancy import Meter
from .tools import ToolPlan


@dataclass(frozen=True)
class Prepared:
    """A validated request bound to one route and turned into engine input: one engine request per choice."""

    route: Route
    gens: tuple[GenerationRequest, ...]
    request_id: str  # the response's id (choice i's engine request is `request_id` or `request_id-i` for n > 1)
    model: str  # the `model` the client asked for, echoed in the response
    started: float  # perf_counter at arrival
    tools: ToolPlan | None = None  # the tools the model may call (chat)

    @property
    def ref(self) -> AdapterRef | None:
        return self.route.ref


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def echoed_request_id(request: Request, own: str) -> str:
    """The caller's X-Request-Id when it sent a sane one (a proxy's or a tracer's id), else our own; engine ids
    stay ours, so two callers sending the same id cannot collide."""
    return sane_request_id(request.headers.get("x-request-id")) or own


async def respond(
    request: Request, services: Services, prepared: Prepared, body: SamplingFields, kind: str, meter: Meter | None
) -> Response:
    """The whole response (JSON) or the SSE stream of `prepared`, with the X-Adapter / X-Request-Id headers (and
    the key's x-ratelimit-* when it has limits); `meter` (a keyed request) is released when the request ends."""
    try:
        response = await _respond(request, services, prepared, body, kind, meter)
    except BaseException:
        if meter is not None:
            meter.close()
        raise
    if meter is not None and not body.stream:
        meter.close()  # a stream's meter is released when the stream ends (Meter.wrap)
    return response


async def _respond(
    request: Request, services: Services, prepared: Prepared, body: SamplingFields, kind: str, meter: Meter | None
) -> Response:
    headers = {"X-Adapter": served_by(prepared.ref), "X-Request-Id": echoed_request_id(request, prepared.request_id)}
    if prepared.route.experiment:
        headers["X-Experiment"] = f"{prepared.route.experiment}/{prepared.route.variant}"
    created = int(time.time())
    n = len(prepared.gens)
    texts = TokenTexts(services.engine.tokenizer) if body.logprob_count() is not None else None
    exchange = exchange_of(request)
    if exchange is not None:
        exchange.operation = "chat" if kind == "chat" else "text_completion"
        exchange.model, exchange.response_id = prepared.model, prepared.request_id
    stream = observed(services, prepared.route, prepared.gens, prepared.started, exchange)
    if meter is not None:
        headers.update(meter.headers)
        stream = meter.wrap(stream)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = sse_chunks(
            stream, prepared.request_id, prepared.model, created, kind, include_usage, n, texts, prepared.tools
        )
        first = await anext(chunks)  # surfaces queue-full and engine errors as a status code
        return StreamingResponse(
            _prepend(first, chunks),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    choices, usage = await collect(request, stream, n)
    payload = {
        "id": prepared.request_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created,
        "model": prepared.model,
        "choices": [_choice(i, choice, kind, texts, prepared.tools) for i, choice in enumerate(choices)],
        "usage": usage,
        "system_fingerprint": None,
    }
    return JSONResponse(payload, headers=headers)


def _choice(index: int, choice: Choice, kind: str, texts: TokenTexts | None, tools: ToolPlan | None) -> dict[str, Any]:
    logprobs = None
    if texts is not None and choice.logprobs is not None:
        logprobs = texts.chat(choice.logprobs) if kind == "chat" else texts.completion(choice.logprobs)[0]
    if kind == "chat":
        content, calls, reason = tools.parse(choice.text, choice.finish_reason) if tools else (choice.text, [], "")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"} for call in calls]
        finish = reason or choice.finish_reason
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs}
    return {"index": index, "text": choice.text, "finish_reason": choice.finish_reason, "logprobs": logprobs}


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for item in rest:
        yield item
