"""Per-request metrics and experiment statistics, recorded around the engine streams (never inside them).

A request with `n` choices is `n` engine requests decoded side by side; it is counted once: one request,
one status (200 only when every choice finished), its prompt tokens once and the sum of the completion tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from ..engine.base import GenerationOutput, GenerationRequest
from ..errors import SwitchboardError
from ..experiments import FALLBACK, Outcome
from ..registry import AdapterRef
from ..routing import Route
from ..services import Services
from .access import Exchange


async def fanout(
    services: Services, ref: AdapterRef | None, gens: Sequence[GenerationRequest]
) -> AsyncGenerator[tuple[int, GenerationOutput], None]:
    """The outputs of `gens` as (choice index, output), interleaved as the engine produces them. All are
    submitted at once, so they decode in the same batch; nothing is yielded before every one was accepted (or
    one failed), so a full queue or a stopped engine is still an error status rather than a broken stream."""
    if len(gens) == 1:
        async for out in services.generate(ref, gens[0]):
            yield 0, out
        return
    inbox: asyncio.Queue[tuple[int, GenerationOutput | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, gen: GenerationRequest) -> None:
        try:
            async for out in services.generate(ref, gen):
                inbox.put_nowait((index, out))
            inbox.put_nowait((index, None))
        except Exception as exc:  # noqa: BLE001 - re-raised by the consumer
            inbox.put_nowait((index, exc))

    tasks = [asyncio.ensure_future(pump(i, gen)) for i, gen in enumerate(gens)]
    held: list[tuple[int, GenerationOutput]] | None = []  # until every choice has been accepted
    heard: set[int] = set()
    ended = 0
    try:
        while ended < len(gens):
            index, item = await inbox.get()
            if isinstance(item, BaseException):
                raise item
            heard.add(index)
            if item is None:
                ended += 1
            elif held is not None:
                held.append((index, item))
            else:
                yield index, item
            if held is not None and len(heard) == len(gens):
                for pair in held:
                    yield pair
                held = None
    finally:
        for task in tasks:
            task.cancel()  # closes the engine streams still running, which aborts their rows
        await asyncio.gather(*tasks, return_exceptions=True)


async def observed(
    services: Services,
    route: Route,
    gens: Sequence[GenerationRequest],
    started: float,
    exchange: Exchange | None = None,
) -> AsyncGenerator[tuple[int, GenerationOutput], None]:
    """The engine streams of `gens`, recording TTFT, inter-token gaps, latency, tokens and status (in the metrics,
    the experiment's statistics and the request's `exchange`, which its access line and span report)."""
    metrics, experiments, tracing = services.metrics, services.experiments, services.tracing
    labels = metrics.route_labels(route)
    experiments.remember(gens[0].request_id, route)
    if exchange is not None:
        exchange.route = route
    if tracing is not None:
        tracing.follow(gen.request_id for gen in gens)
    queue_s: float | None = None
    metrics.in_flight.labels(*labels).inc()
    status, first = "200", None
    last: dict[int, float] = {}  # per choice: when its last token came (inter-token gaps are per sequence)
    latest: dict[int, GenerationOutput] = {}
    try:
        async for index, out in fanout(services, route.ref, gens):
            now = time.perf_counter()
            if out.queue_s is not None and index == 0:
                queue_s = out.queue_s
                metrics.queue.labels(*labels).observe(out.queue_s)
            if out.token_ids:
                if first is None:
                    first = now
                    metrics.ttft.labels(*labels).observe(now - started)
                elif index in last:
                    metrics.itl.labels(*labels).observe(now - last[index])
                last[index] = now
            latest[index] = out
            yield index, out
    except SwitchboardError as exc:
        status = str(exc.status)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        if not _all_finished(latest, len(gens)):
            status = "499"  # the client went away
        raise
    finally:
        metrics.in_flight.labels(*labels).dec()
        if status == "200" and any(o.finish_reason not in (None, "stop", "length") for o in latest.values()):
            status = "503"
        elif status == "200" and not _all_finished(latest, len(gens)):
            status = "499"
        metrics.requests.labels(*labels, status).inc()
        latency = time.perf_counter() - started
        prompt = next(iter(latest.values())).prompt_tokens if latest else 0
        completion = sum(o.completion_tokens for o in latest.values())
        if latest:
            metrics.prompt_tokens.labels(*labels).inc(prompt)
            metrics.completion_tokens.labels(*labels).inc(completion)
        if status == "200":
            metrics.latency.labels(*labels).observe(latency)
        if tracing is not None:
            tracing.forget(gen.request_id for gen in gens)
        if exchange is not None:
            exchange.outcome, exchange.queue_s = int(status), queue_s
            exchange.ttft_s = (first - started) if first is not None else None
            exchange.prompt_tokens, exchange.completion_tokens = (prompt, completion) if latest else (None, None)
        if route.experiment:
            outcome = Outcome(
                ok=status == "200",
                prompt_tokens=prompt,
                completion_tokens=completion,
                ttft=(first - started) if first is not None else None,
                latency=latency if status == "200" else None,
                fallback=route.assignment == FALLBACK,
            )
            experiments.record(route.experiment, route.variant, outcome)


def _all_finished(latest: dict[int, GenerationOutput], n: int) -> bool:
    return len(latest) == n and all(o.finish_reason is not None for o in latest.values())
