"""Which adapter versions are loaded in the engine: LRU within a budget, pins, in-flight leases.

A request leases its version for its whole life: a leased version is never evicted or unloaded, so a
request always finishes on the version it started with, even if the version is removed meanwhile
(it is unloaded when its last request ends). A request for a version that was evicted reloads it.
Loads are prepared in a worker thread and attached in the engine thread between decode steps; other
requests keep streaming.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..errors import AdapterNotFound, EngineFailure, SwitchboardError
from ..registry.refs import AdapterRef

logger = logging.getLogger(__name__)


class Residency:
    def __init__(self, engine: Any, max_resident: int, on_change: Callable[[str, str], None] | None = None) -> None:
        self.engine = engine
        self.max_resident = max_resident
        self._lru: OrderedDict[str, None] = OrderedDict()  # resident keys, least recently used first
        self._paths: dict[str, Path] = {}
        self._pinned: set[str] = set()
        self._retired: set[str] = set()  # removed from the registry; unload when no longer leased
        self.refused: dict[str, str] = {}  # registered by another replica, unusable here: key -> why
        self._leases: Counter[str] = Counter()
        self._loading: dict[str, asyncio.Future] = {}
        self._lock = asyncio.Lock()
        self._on_change = on_change or (lambda event, key: None)
        self.loads = 0
        self.evictions = 0
        self.last_load_s = 0.0
        self.load_s: dict[str, float] = {}  # seconds each resident key's last load took
        self._background: set[asyncio.Task] = set()

    def resident(self) -> list[str]:
        return list(self._lru)

    def in_flight(self, key: str) -> int:
        return self._leases[key]

    def known(self, ref: AdapterRef) -> bool:
        return str(ref) in self._paths and str(ref) not in self._retired

    def refuse(self, ref: AdapterRef, reason: str) -> None:
        """`ref` is in the registry but this replica cannot serve it (files missing here, wrong base):
        its requests get a 503 that says why; everything else keeps serving."""
        self.refused[str(ref)] = reason

    def track(self, ref: AdapterRef, path: Path, pinned: bool = False) -> None:
        """Make `ref` loadable on demand (without loading it)."""
        key = str(ref)
        self.refused.pop(key, None)
        self._paths[key] = path
        self._retired.discard(key)
        if pinned:
            self._pinned.add(key)

    async def load(self, ref: AdapterRef, path: Path, pinned: bool = False) -> None:
        """Load `ref` now (registration); raises what the engine raises, and then tracks nothing."""
        key = str(ref)
        self.track(ref, path, pinned)
        try:
            await self._ensure(key)
        except BaseException:
            self._paths.pop(key, None)
            self._pinned.discard(key)
            raise

    async def _ensure(self, key: str) -> None:
        if key in self._lru:
            self._lru.move_to_end(key)
            return
        pending = self._loading.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            await self._make_room(exclude=key)
            started = time.perf_counter()
            await self.engine.add_adapter(key, self._paths[key])
            self.last_load_s = time.perf_counter() - started
            self.load_s[key] = self.last_load_s
            self._lru[key] = None
            self.loads += 1
            self._on_change("load", key)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            del self._loading[key]

    async def _make_room(self, exclude: str) -> None:
        async with self._lock:
            while len(self._lru) >= self.max_resident:
                victim = next(
                    (k for k in self._lru if k not in self._pinned and not self._leases[k] and k != exclude), None
                )
                if victim is None:
                    logger.warning(
                        "adapter budget %d exceeded: every resident adapter is pinned or in use", self.max_resident
                    )
                    return
                await self._unload(victim)
                self.evictions += 1
                self._on_change("evict", victim)

    async def _unload(self, key: str) -> None:
        self._lru.pop(key, None)
        await self.engine.remove_adapter(key)

    async def evict(self, key: str) -> bool:
        """Unload `key` now unless it is pinned or in use (a Ray Serve replica's model LRU asks);
        True if it was unloaded. It stays loadable: its next request loads it again."""
        if key not in self._lru or key in self._pinned or self._leases[key]:
            return False
        await self._unload(key)
        self.evictions += 1
        self._on_change("evict", key)
        return True

    async def retire(self, ref: AdapterRef) -> None:
        """The version was removed: unload it now, or when its last request ends."""
        key = str(ref)
        self.refused.pop(key, None)
        self._retired.add(key)
        self._pinned.discard(key)
        if not self._leases[key]:
            await self._drop(key)

    async def _drop(self, key: str) -> None:
        self._retired.discard(key)
        self._paths.pop(key, None)
        if key in self._lru:
            await self._unload(key)
            self._on_change("unload", key)

    @asynccontextmanager
    async def lease(self, ref: AdapterRef | None) -> AsyncIterator[None]:
        """Hold `ref` resident for the duration of a request (None = bare base model)."""
        if ref is None:
            yield
            return
        key = str(ref)
        if key in self.refused:
            raise EngineFailure(f"adapter '{key}' cannot be served by this replica: {self.refused[key]}")
        if key not in self._paths or key in self._retired:
            raise AdapterNotFound(f"adapter '{key}' was removed")
        self._leases[key] += 1  # taken before any await, so removal cannot race in between
        try:
            try:
                await self._ensure(key)
            except SwitchboardError as exc:
                raise EngineFailure(f"adapter '{key}' could not be loaded: {exc.message}") from exc
            yield
        finally:
            self._leases[key] -= 1
            if not self._leases[key]:
                del self._leases[key]
                if key in self._retired:
                    # not awaited here: this may run while the request is being cancelled
                    task = asyncio.get_running_loop().create_task(self._drop(key))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
