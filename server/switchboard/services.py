"""Services: what the HTTP layer talks to (settings, engine, registry, residency, router), and the
registry operations the admin API, the vLLM-compatible API and the dir watcher share."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .engine.base import GenerationOutput, GenerationRequest
from .experiments import Experiments
from .metrics import Metrics
from .registry import AdapterRef, Registry
from .registry.residency import Residency
from .routing import Router
from .validation import BaseModelInfo, check_fits, read_adapter, validate_adapter

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Any
    registry: Registry
    residency: Residency
    router: Router
    base_info: BaseModelInfo
    metrics: Metrics
    experiments: Experiments
    started_at: int = field(default_factory=lambda: int(time.time()))
    ready: bool = False
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def register(
        self,
        name: str,
        path: str | Path,
        version: str | None = None,
        *,
        pinned: bool = False,
        alias: str | None = None,
        trusted: bool = False,
    ) -> AdapterRef:
        """Validate, load, persist, then route: the version is served only once all of that succeeded.

        `trusted` skips the adapter-root check (adapters given on the command line or in the adapter dir).
        """
        async with self.admin_lock:
            ref = self.registry.next_ref(name, version)
            if trusted:
                resolved = Path(path).resolve()
                info = await asyncio.to_thread(read_adapter, resolved)
                check_fits(info, self.base_info, self.settings.max_lora_rank)
            else:
                info = await asyncio.to_thread(
                    validate_adapter,
                    path,
                    self.settings.effective_adapter_roots(),
                    self.base_info,
                    self.settings.max_lora_rank,
                )
                resolved = info.path
            await self.residency.load(ref, resolved, pinned)
            try:
                committed = await asyncio.to_thread(
                    self.registry.add, name, resolved, ref.version, pinned=pinned, alias=alias
                )
            except BaseException:
                await self.residency.retire(ref)
                raise
            self.metrics.registry_changes.labels("register").inc()
            logger.info("registered adapter %s from %s", committed, resolved)
            return committed

    async def unregister(self, name: str, version: str | None = None) -> list[AdapterRef]:
        async with self.admin_lock:
            refs = await asyncio.to_thread(self.registry.remove, name, version)
            for ref in refs:
                await self.residency.retire(ref)
                self.metrics.forget(ref.name, ref.version)
            self.metrics.registry_changes.labels("remove").inc()
            logger.info("removed adapter(s) %s", ", ".join(map(str, refs)))
            return refs

    async def generate(self, ref: AdapterRef | None, gen: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        """The engine's stream for `gen`, holding `ref` resident (and reloading it if evicted) throughout."""
        async with self.residency.lease(ref):
            async for out in self.engine.generate(gen):
                yield out
