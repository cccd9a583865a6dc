"""Per-request metrics and experiment statistics, recorded around the engine stream (never inside it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from ..engine.base import GenerationOutput, GenerationRequest
from ..errors import SwitchboardError
from ..experiments import Outcome
from ..routing import Route
from ..services import Services


async def observed(
    services: Services, route: Route, gen: GenerationRequest, started: float
) -> AsyncGenerator[GenerationOutput, None]:
    """The engine stream for `gen`, recording TTFT, inter-token gaps, latency, tokens and status."""
    metrics, experiments = services.metrics, services.experiments
    labels = metrics.route_labels(route)
    experiments.remember(gen.request_id, route)
    metrics.in_flight.labels(*labels).inc()
    status, first, last, out = "200", None, None, None
    try:
        async for out in services.generate(route.ref, gen):
            now = time.perf_counter()
            if out.queue_s is not None:
                metrics.queue.labels(*labels).observe(out.queue_s)
            if out.token_ids:
                if first is None:
                    first = now
                    metrics.ttft.labels(*labels).observe(now - started)
                elif last is not None:
                    metrics.itl.labels(*labels).observe(now - last)
                last = now
            yield out
    except SwitchboardError as exc:
        status = str(exc.status)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        if out is None or out.finish_reason is None:
            status = "499"  # the client went away
        raise
    finally:
        metrics.in_flight.labels(*labels).dec()
        if status == "200" and (out is None or out.finish_reason not in ("stop", "length")):
            status = "499" if out is None or out.finish_reason is None else "503"
        metrics.requests.labels(*labels, status).inc()
        latency = time.perf_counter() - started
        if out is not None:
            metrics.prompt_tokens.labels(*labels).inc(out.prompt_tokens)
            metrics.completion_tokens.labels(*labels).inc(out.completion_tokens)
        if status == "200":
            metrics.latency.labels(*labels).observe(latency)
        if route.experiment:
            outcome = Outcome(
                ok=status == "200",
                prompt_tokens=out.prompt_tokens if out else 0,
                completion_tokens=out.completion_tokens if out else 0,
                ttft=(first - started) if first is not None else None,
                latency=latency if status == "200" else None,
            )
            experiments.record(route.experiment, route.variant, outcome)
