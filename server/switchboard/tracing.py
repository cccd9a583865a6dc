"""OpenTelemetry tracing: off unless an OTLP endpoint is configured, and then imported (the `otel` extra).

Each HTTP request gets one server span from OpenTelemetry's FastAPI instrumentation, which continues a W3C
`traceparent` sent by the caller. When the request ends (a stream: when its last byte is sent) the access log's
facts go onto that span: the gen_ai semantic-convention names where they exist (`gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...) and `switchboard.*` for the rest (api/access.py `Exchange.attributes`).

The hf engine reports its batch steps (`StepTracer`); a prefill, and one decode step in `trace_engine_steps`,
becomes a span when the batch holds a traced request: a child of the first such request's span, linked to the
others'. With tracing off the engine's only cost is `tracer is None`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import SpanContext

OTLP_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
NOT_TRACED = r"/(health|ready|metrics)$"  # probes and scrapes: every few seconds, nothing to learn


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector given by its base URL (kept as is when it names the path)."""
    return endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"


class Tracing:
    """The tracer provider of one app (never the process-global one), its request spans and engine step spans."""

    def __init__(self, provider: TracerProvider, engine_steps: int) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("switchboard", __version__)
        self.engine_steps = engine_steps
        self._contexts: dict[str, SpanContext] = {}  # engine request id -> its request's span, while traced
        self._decodes = 0

    @classmethod
    def configure(cls, settings: Settings, exporter: SpanExporter | None = None) -> Tracing | None:
        """Tracing as `settings` and the OTEL_* environment ask, or None when off; `exporter` (tests) receives
        each span as it ends instead of an OTLP collector."""
        endpoint = settings.otlp_endpoint
        if exporter is None and not endpoint and not any(os.environ.get(name) for name in OTLP_ENV):
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        except ImportError as exc:
            raise RuntimeError(
                f"tracing is configured (an OTLP endpoint) but OpenTelemetry is missing ({exc}): "
                "pip install 'switchboard[otel]'"
            ) from exc
        name = os.environ.get("OTEL_SERVICE_NAME", "switchboard")
        resource = Resource.create({"service.name": name, "service.version": __version__})
        sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
        provider = TracerProvider(resource=resource, sampler=sampler)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            otlp = OTLPSpanExporter(endpoint=traces_url(endpoint) if endpoint else None)  # None: the OTEL_* env
            provider.add_span_processor(BatchSpanProcessor(otlp))
        return cls(provider, settings.trace_engine_steps)

    def instrument(self, app: FastAPI) -> None:
        """A server span per request, continuing the caller's traceparent; no spans per ASGI message."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls=NOT_TRACED, exclude_spans=["receive", "send"]
        )

    def annotate(self, attributes: dict[str, Any]) -> str | None:
        """Put `attributes` (None values left out) on the current request's span; returns its trace id (hex)
        when the request is traced."""
        from opentelemetry import trace

        span = trace.get_current_span()
        if not span.is_recording():
            return None
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        return format(span.get_span_context().trace_id, "032x")

    def follow(self, request_ids: Iterable[str]) -> None:
        """The engine requests of the current (traced) request: their batch steps may become spans in its trace."""
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.trace_flags.sampled:
            for request_id in request_ids:
                self._contexts[request_id] = context

    def forget(self, request_ids: Iterable[str]) -> None:
        for request_id in request_ids:
            self._contexts.pop(request_id, None)

    def step(self, kind: str, request_ids: Sequence[str], tokens: int, started_ns: int) -> None:
        """The engine thread's report of one batch step ("prefill" or "decode") that began at `started_ns`
        (time.time_ns()) and just ended: `tokens` went through the model for `request_ids`."""
        if self.engine_steps == 0:
            return
        if kind == "decode":
            self._decodes += 1
            if self._decodes % self.engine_steps:
                return
        contexts = [c for request_id in request_ids if (c := self._contexts.get(request_id)) is not None]
        if not contexts:
            return
        from opentelemetry import trace

        parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[0]))
        span = self.tracer.start_span(
            f"switchboard.engine.{kind}",
            context=parent,
            links=[trace.Link(c) for c in contexts[1:]],
            start_time=started_ns,
            attributes={"switchboard.batch.rows": len(request_ids), "switchboard.batch.tokens": tokens},
        )
        span.end()

    def shutdown(self) -> None:
        """Send the spans still buffered (blocking: call it from a worker thread)."""
        self.provider.shutdown()
