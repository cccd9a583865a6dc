"""The hf engine's ledger of its requests: how many it accepted, the adapters of those still waiting, and
what its running batch holds. The event loop admits requests, the engine thread publishes its batch after
each iteration, and /ready and metric scrapes read it from any thread without waiting on the engine."""

from __future__ import annotations

import threading
from collections import Counter

from ..errors import Overloaded
from .base import SchedulerState
from .batch import Batch


class RequestLedger:
    """Requests accepted and not yet finished (`pending`: waiting + running) and the adapters of those waiting
    (None: the bare base), both under one lock; the running rows' adapters and the KV cache slots they hold,
    set by the engine thread only."""

    def __init__(self) -> None:
        self.pending = 0
        self.running = 0
        self._lock = threading.Lock()
        self._waiting: Counter[str | None] = Counter()
        self._running_adapters: tuple[str | None, ...] = ()
        self._kv_slots = 0

    def admit(self, adapter: str | None, max_queue: int) -> None:
        """Count a new request as waiting, or refuse it (429) when `max_queue` requests are already pending."""
        with self._lock:
            if self.pending >= max_queue:
                raise Overloaded(f"server is at capacity ({max_queue} requests); retry shortly")
            self.pending += 1
            self._waiting[adapter] += 1

    def release(self) -> None:
        """One request finished, or left before it ran."""
        with self._lock:
            self.pending -= 1

    def publish(self, batch: Batch | None, taken: list[str | None]) -> None:
        """Publish the running batch; the requests taken this iteration (their adapters) stop waiting only now,
        once the batch they joined (or left at once) is visible."""
        self._running_adapters = tuple(row.request.adapter for row in batch.rows) if batch is not None else ()
        self.running = len(self._running_adapters)
        self._kv_slots = len(batch) * batch.length if batch is not None else 0
        if taken:
            with self._lock:
                self._waiting.subtract(taken)
                self._waiting = +self._waiting  # drop adapters with no request left waiting

    def clear_waiting(self) -> None:
        """Forget every waiting request (the engine failed and answered them all)."""
        with self._lock:
            self._waiting.clear()

    def occupancy(self) -> dict[str, int]:
        return {"pending": self.pending, "running": self.running}

    def state(self, kv_capacity: int) -> SchedulerState:
        """The scheduler state, KV use as the slots held over `kv_capacity` (at most 1)."""
        with self._lock:
            waiting = self._waiting.copy()
        running = self._running_adapters
        return SchedulerState(
            waiting=sum(waiting.values()),
            running=len(running),
            waiting_adapters=tuple(key for key in waiting if key is not None),
            running_adapters=tuple(dict.fromkeys(key for key in running if key is not None)),
            kv_cache_usage=min(1.0, self._kv_slots / kv_capacity),
        )
