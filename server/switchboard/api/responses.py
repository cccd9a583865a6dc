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
from .observe import observed
from .schemas import SamplingFields
from .streaming import collect, sse_chunks


@dataclass(frozen=True)
class Prepared:
    """A validated request bound to one route and turned into engine input."""

    route: Route
    gen: GenerationRequest
    model: str  # the `model` the client asked for, echoed in the response
    started: float  # perf_counter at arrival

    @property
    def ref(self) -> AdapterRef | None:
        return self.route.ref


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


async def respond(
    request: Request, services: Services, prepared: Prepared, body: SamplingFields, kind: str
) -> Response:
    """The whole response (JSON) or the SSE stream of `prepared`, with the X-Adapter / X-Request-Id headers."""
    headers = {"X-Adapter": served_by(prepared.ref), "X-Request-Id": prepared.gen.request_id}
    if prepared.route.experiment:
        headers["X-Experiment"] = f"{prepared.route.experiment}/{prepared.route.variant}"
    created = int(time.time())
    stream = observed(services, prepared.route, prepared.gen, prepared.started)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = sse_chunks(stream, prepared.gen.request_id, prepared.model, created, kind, include_usage)
        first = await anext(chunks)  # surfaces queue-full and engine errors as a status code
        return StreamingResponse(
            _prepend(first, chunks),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    text, reason, usage = await collect(request, stream)
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        obj = "text_completion"
    payload = {
        "id": prepared.gen.request_id,
        "object": obj,
        "created": created,
        "model": prepared.model,
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": None,
    }
    return JSONResponse(payload, headers=headers)


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for item in rest:
        yield item
