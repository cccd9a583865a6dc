"""One access-log line per request, and the same facts on the request's trace span.

`AccessLog` (outermost of our middlewares) opens an `Exchange` per HTTP request in `request.state.exchange`; the
completion handlers fill in what they learn (the model asked for, the adapter version and experiment variant that
served it, tokens, queue time, TTFT). When the response's last byte is sent it writes the line on the
`switchboard.access` logger and, when tracing is on, sets the span's attributes. Every response carries
`X-Request-Id`: the caller's when it sent a sane one, else ours. Keys and prompts are never logged: the line names
the key by `request.state.key_name`, never its secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..registry import served_by
from ..routing import Route
from ..tracing import Tracing

logger = logging.getLogger("switchboard.access")


def sane_request_id(value: str | None) -> str | None:
    """A caller's X-Request-Id worth keeping (a proxy's or a tracer's id): 1-128 printable ASCII characters."""
    return value if value and len(value) <= 128 and value.isascii() and value.isprintable() else None


@dataclass
class Exchange:
    """One HTTP request as the access log and the trace tell it, filled in as the handlers learn it."""

    method: str
    path: str
    started: float  # perf_counter
    request_id: str | None = None  # the response's X-Request-Id
    status: int | None = None  # the HTTP status sent
    outcome: int | None = None  # a generation's own status when it differs: 499 client gone, 503 engine failed
    operation: str | None = None  # chat | text_completion
    model: str | None = None  # the `model` asked for
    response_id: str | None = None  # the completion's id
    route: Route | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_s: float | None = None
    ttft_s: float | None = None
    latency_s: float | None = None

    @property
    def final_status(self) -> int:
        return self.outcome if self.outcome is not None and self.outcome != 200 else self.status or 0

    def fields(self, key: str | None, trace_id: str | None) -> dict[str, Any]:
        """The access line's fields, in order (None: not applicable to this request)."""
        route = self.route
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.final_status,
            "latency_s": round(self.latency_s or 0.0, 6),
            "key": key,
            "adapter": served_by(route.ref) if route is not None else None,
            "experiment": (route.experiment or None) if route is not None else None,
            "variant": (route.variant or None) if route is not None else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "queue_s": _rounded(self.queue_s),
            "ttft_s": _rounded(self.ttft_s),
            "trace_id": trace_id,
        }

    def attributes(self) -> dict[str, Any]:
        """The span's attributes: OpenTelemetry's gen_ai names where they exist, ours for the rest."""
        ref = self.route.ref if self.route is not None else None
        experiment = self.route.experiment if self.route is not None else ""
        return {
            "gen_ai.operation.name": self.operation,
            "gen_ai.request.model": self.model,
            "gen_ai.response.id": self.response_id,
            "gen_ai.usage.input_tokens": self.prompt_tokens,
            "gen_ai.usage.output_tokens": self.completion_tokens,
            "switchboard.request_id": self.request_id,
            "switchboard.adapter": (ref.name if ref is not None else "base") if self.route is not None else None,
            "switchboard.adapter_version": ref.version if ref is not None else None,
            "switchboard.experiment": experiment or None,
            "switchboard.variant": (self.route.variant or None) if self.route is not None and experiment else None,
            "switchboard.queue_time_s": self.queue_s,
            "switchboard.ttft_s": self.ttft_s,
            "switchboard.status": self.final_status if self.outcome is not None else None,
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None


def exchange_of(request: Request) -> Exchange | None:
    """The request's Exchange (None where AccessLog is not installed)."""
    found: Exchange | None = getattr(request.state, "exchange", None)
    return found


class AccessLog:
    """ASGI middleware: the Exchange of each HTTP request, its X-Request-Id, its access line and span attributes."""

    def __init__(self, app: ASGIApp, tracing: Tracing | None = None) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope["method"], scope["path"], time.perf_counter())
        state = scope.setdefault("state", {})
        state["exchange"] = exchange
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                exchange.latency_s = time.perf_counter() - exchange.started
                self._record(exchange, state.get("key_name"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    theirs = sane_request_id(dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1"))
                    headers["X-Request-Id"] = theirs or f"req-{uuid.uuid4().hex}"
                exchange.request_id = headers["x-request-id"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()  # before the last bytes go: the request's span ends with them
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            exchange.status = exchange.status or 499  # the client went away before a response
            raise
        except Exception:
            exchange.status = exchange.status or 503  # what the catch-all error handler answers
            raise
        finally:
            record()  # a response that never finished

    def _record(self, exchange: Exchange, key: str | None) -> None:
        trace_id = self.tracing.annotate(exchange.attributes()) if self.tracing is not None else None
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = exchange.fields(key, trace_id)
        extra = "".join(f" {k}={v}" for k, v in list(fields.items())[5:] if v is not None)
        logger.info(
            "%s %s %s %.3fs %s%s",
            exchange.method,
            exchange.path,
            fields["status"],
            fields["latency_s"],
            exchange.request_id,
            extra,
            extra={"fields": fields},
        )
