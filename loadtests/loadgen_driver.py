"""The driver of `loadgen.py`: replays a trace against an OpenAI-compatible server with streaming chat requests.

Open loop: each request is sent at its arrival offset whatever the server is doing, at most `max_in_flight` at once
(later arrivals wait for a free slot; their TTFT and latency count from the arrival, so the wait shows). Closed
loop: `concurrency` clients, each sending its next request of the trace as soon as its previous one is done. Both
stop at `max_run_s`: requests still streaming then are cancelled (the connection closed, so the server aborts them)
and counted as cancelled, requests not yet sent as not sent; neither counts as a failure or as throughput.
A request with a response format (structured outputs) keeps its text, which is checked against its schema when it
ends (`loadgen_formats.check`: valid, cut by max_tokens, or invalid).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import harness
import httpx
import loadgen_formats
from loadgen_workload import BASE, TraceRequest


@dataclass(frozen=True)
class Target:
    """A server under test: where it listens and which model id reaches its bare base model. `lora_ids` (llama-server:
    adapter name → index of its --lora) makes each request name the base model and pick its adapter by a `lora`
    field instead: its adapter at scale 1, every other at 0. The bare base lists every adapter at 0: an empty
    `lora` would take each --lora at its command-line scale (1; --lora-init-without-apply only skips applying
    them at start), i.e. all of them stacked."""

    name: str
    base_url: str
    base_model: str
    lora_ids: Mapping[str, int] | None = None

    def extra(self, adapter: str) -> dict[str, Any] | None:
        """Body fields the request for `adapter` adds (`harness.chat_request`'s `extra`)."""
        if self.lora_ids is None:
            return None
        scales = {i: float(name == adapter) for name, i in self.lora_ids.items()}
        lora = [{"id": i, "scale": scale} for i, scale in scales.items() if scale or adapter == BASE]
        return {"model": self.base_model, "lora": lora}


@dataclass
class Outcome:
    """One request of a run; times in seconds."""

    index: int
    adapter: str
    expected_tokens: int
    status: str = "not_sent"  # → running → ok | failed | cancelled (still running at the deadline)
    queued_s: float = 0.0  # open loop: sent − arrival (waiting for a free slot)
    ttft_s: float | None = None  # from the arrival (open) or the send (closed) to the first content chunk
    latency_s: float | None = None  # same origin, to `data: [DONE]`
    end_s: float | None = None  # offset from the run's start when it ended
    prompt_tokens: int = 0
    completion_tokens: int = 0
    itl_s: list[float] = field(default_factory=list)  # gaps between content chunks
    error: str | None = None
    response_format: str | None = None  # a loadgen_formats name; None: free text
    transcript: harness.Transcript | None = None  # structured requests: what came back
    check: str | None = None  # structured requests that ended: valid | cut | invalid (loadgen_formats.check)

    @classmethod
    def of(cls, req: TraceRequest) -> Outcome:
        structured = req.response_format is not None
        return cls(req.index, req.adapter, req.output_tokens, response_format=req.response_format,
                   transcript=harness.Transcript() if structured else None)  # fmt: skip

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        gaps = out.pop("itl_s")
        out["itl_mean_s"] = sum(gaps) / len(gaps) if gaps else None
        return out


@dataclass
class Run:
    target: str
    scenario: str
    repeat: int
    wall_s: float  # start → last request ended, or the deadline if it cut requests
    outcomes: list[Outcome]
    rss_mib: float | None = None  # the server's peak resident memory during the run (harness.rss_mib)
    decode_batch: float | None = None  # llama-server: output tokens per llama_decode() call (llamacpp.decode_batch)
    loadavg: float | None = None  # the machine's 1-minute load average at the run's end (other work skews figures)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def tokens_per_s(self) -> float:
        return sum(o.completion_tokens for o in self.outcomes if o.status == "ok") / self.wall_s

    @property
    def requests_per_s(self) -> float:
        return self.count("ok") / self.wall_s


async def stream_one(client: httpx.AsyncClient, target: Target, req: TraceRequest, out: Outcome, t0: float) -> None:
    """Send `req` and read its SSE stream into `out`. TTFT and latency count from the send minus `out.queued_s`:
    the arrival in the open loop, the send in the closed loop. `t0` is the run's start (for `end_s`)."""
    out.status = "running"
    fmt = req.response_format
    end = await harness.stream_chat(
        client, out, req.prompt, req.output_tokens, req.adapter, target.base_model,
        origin=time.perf_counter() - out.queued_s, itl=out.itl_s,
        response_format=None if fmt is None else loadgen_formats.response_format(fmt), transcript=out.transcript,
        extra=target.extra(req.adapter),
    )  # fmt: skip
    out.end_s = end - t0
    out.status = "failed" if out.error else "ok"
    if fmt is not None and out.transcript is not None and out.status == "ok":
        out.check = loadgen_formats.check(fmt, out.transcript.text, out.transcript.finish_reason)


async def _bounded(tasks: list[asyncio.Task[None]], outcomes: list[Outcome], max_run_s: float, t0: float) -> float:
    """Wait for the tasks until the deadline; cancel the rest. Returns the run's wall time."""
    _, pending = await asyncio.wait(tasks, timeout=max_run_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for out in outcomes:
        if out.status == "running":
            out.status = "cancelled"
    if pending:
        return max_run_s
    ends = [o.end_s for o in outcomes if o.end_s is not None]
    return max(ends) if ends else time.perf_counter() - t0


async def open_loop(
    client: httpx.AsyncClient, target: Target, trace: list[TraceRequest], max_in_flight: int, max_run_s: float
) -> tuple[float, list[Outcome]]:
    outcomes = [Outcome.of(r) for r in trace]
    slots = asyncio.Semaphore(max_in_flight)
    t0 = time.perf_counter()

    async def one(req: TraceRequest, out: Outcome) -> None:
        await asyncio.sleep(max(0.0, t0 + req.arrival_s - time.perf_counter()))
        async with slots:
            out.queued_s = max(0.0, time.perf_counter() - t0 - req.arrival_s)
            await stream_one(client, target, req, out, t0)

    tasks = [asyncio.create_task(one(r, o)) for r, o in zip(trace, outcomes, strict=True)]
    return await _bounded(tasks, outcomes, max_run_s, t0), outcomes


async def closed_loop(
    client: httpx.AsyncClient, target: Target, trace: list[TraceRequest], concurrency: int, max_run_s: float
) -> tuple[float, list[Outcome]]:
    outcomes = [Outcome.of(r) for r in trace]
    jobs = iter(range(len(trace)))  # shared by the clients: each takes the next request when it is free
    t0 = time.perf_counter()

    async def client_loop() -> None:
        for i in jobs:
            await stream_one(client, target, trace[i], outcomes[i], t0)

    tasks = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
    return await _bounded(tasks, outcomes, max_run_s, t0), outcomes


async def warm_up(
    client: httpx.AsyncClient, target: Target, adapters: list[str], formats: tuple[str, ...] = (), parallel: int = 8
) -> None:
    """One short request per adapter (and the base), then one per response format (the first builds the server's
    grammar tokenizer, seconds), before any timing; raises if one fails."""
    slots = asyncio.Semaphore(parallel)

    async def one(i: int, adapter: str, fmt: str | None = None) -> Outcome:
        req = TraceRequest(i, 0.0, adapter, 12, 2, "say hello", fmt)
        out = Outcome.of(req)
        async with slots:
            await stream_one(client, target, req, out, time.perf_counter())
        return out

    outs = await asyncio.gather(*(one(i, a) for i, a in enumerate(adapters)))
    if formats:  # the first alone: concurrent ones would all wait for the same tokenizer
        outs += [await one(0, adapters[0], formats[0])]
        outs += await asyncio.gather(*(one(i, adapters[0], f) for i, f in enumerate(formats[1:], 1)))
    for out in outs:
        if out.error:
            what = f"adapter {out.adapter}" + (f", format {out.response_format}" if out.response_format else "")
            raise RuntimeError(f"warm-up on {target.name} {what} failed: {out.error}")
