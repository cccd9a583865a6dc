"""The two Serve deployments of `switchboard serve-ray`.

- `EngineReplica` (N replicas, CPUs/GPUs each from `ray:`): the existing engine (hf or vllm) with its own
  `Residency` — the same validation, LRU, pins and `max_resident_adapters` as one process. Its adapter
  loader is wrapped by `serve.multiplexed`, so each replica reports which `name@version`s it holds and
  Serve routes a request carrying that `multiplexed_model_id` to one of those replicas.
- `Ingress`: the very FastAPI app of one process (same routes, errors, X-Adapter header, routing,
  experiments, registry), built on a `RemoteEngine` that sends generation to the replicas, plus
  `GET /admin/replicas` (what each replica holds and has loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from ray import serve

from ..config import Settings
from ..engine import build_engine
from ..engine.base import GenerationOutput, GenerationRequest
from ..engine.residency import Residency
from ..models import resolve_model_dir
from ..openmp import to_thread_releasing
from ..registry import AdapterRef
from ..validation import base_model_info, check_fits, read_adapter

logger = logging.getLogger(__name__)


def _ref(key: str) -> AdapterRef:
    name, version = AdapterRef.parse(key)
    return AdapterRef(name, version or "")


class _Held:
    """What Serve's multiplexed LRU keeps per adapter version; dropping it evicts the version from the
    engine (unless pinned or in use: the replica's Residency decides)."""

    def __init__(self, residency: Residency, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self._residency, self._key, self._loop, self._dropped = residency, key, loop, False

    def __del__(self) -> None:  # Serve calls it (in a worker thread) when its LRU drops the version
        if self._dropped:
            return
        self._dropped = True
        with contextlib.suppress(RuntimeError):  # a closed loop: the replica is shutting down
            asyncio.run_coroutine_threadsafe(self._residency.evict(self._key), self._loop)


class EngineReplica:
    """Deployed as the class `engine_replica` makes (its multiplexed loader sized by the settings)."""

    async def __init__(self, settings_data: dict[str, Any]) -> None:  # type: ignore[misc]  # Serve awaits it
        settings = Settings.model_validate(settings_data)
        self.settings = settings
        self.engine = build_engine(settings)
        await to_thread_releasing(self.engine.load_model)
        await self.engine.start()
        self.base_info = await asyncio.to_thread(base_model_info, Path(self.engine.model_dir), settings.base_model_id)
        self.residency = Residency(self.engine, settings.max_resident_adapters)
        self.loop = asyncio.get_running_loop()
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id if context is not None else "local"
        self.requests: Counter[str] = Counter()
        self._wanted: dict[str, tuple[Path, bool]] = {}
        logger.info("engine replica %s ready (%s)", self.replica, self.engine.describe())

    async def _load(self, key: str) -> _Held:
        """Serve's multiplexed loader (wrapped in `engine_replica`): validate the version's files here, then
        load it into the engine."""
        path, pinned = self._wanted[key]
        info = await asyncio.to_thread(read_adapter, path)
        check_fits(info, self.base_info, self.settings.max_lora_rank)
        await self.residency.load(_ref(key), info.path, pinned)
        return _Held(self.residency, key, self.loop)

    async def generate(
        self, request: GenerationRequest, path: str | None, pinned: bool
    ) -> AsyncIterator[GenerationOutput]:
        """Stream `request` (already tokenized and routed by the ingress); cancelling the call aborts it."""
        ref = None
        if request.adapter is not None and path is not None:
            key = request.adapter
            self._wanted[key] = (Path(path), pinned)
            await self._load(key)  # through Serve's LRU: loads it only if this replica does not hold it
            ref = _ref(key)
            self.residency.track(ref, Path(path), pinned)  # loadable again if our LRU evicted it meanwhile
        self.requests[request.adapter or "base"] += 1
        local = replace(request, arrival=time.perf_counter())  # queue time on this replica's clock
        async with self.residency.lease(ref):
            async for out in self.engine.generate(local):
                yield out

    async def forget(self, key: str) -> None:
        """The version was removed from the registry: unload it once its requests here finish."""
        self._wanted.pop(key, None)
        await self.residency.retire(_ref(key))

    def stats(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "engine": self.engine.describe(),
            "resident": self.residency.resident(),
            "loads": self.residency.loads,
            "evictions": self.residency.evictions,
            "requests": dict(self.requests),
            **self.engine.occupancy(),
        }

    async def __del__(self) -> None:
        await self.engine.shutdown()


def engine_replica(max_resident: int) -> Any:
    """The EngineReplica deployment, its `_load` wrapped by `serve.multiplexed` with the same
    budget as the replica's Residency. Serve finds the multiplexed method on the class (it must, to route
    by model id), so the class is made here, where the budget is known."""
    load = serve.multiplexed(max_num_models_per_replica=max_resident)(EngineReplica._load)
    cls = type("EngineReplica", (EngineReplica,), {"_load": load, "__module__": __name__})
    return serve.deployment(cls, name="EngineReplica")


def _replicas_router(engine: Any) -> APIRouter:
    from ..api.auth import require_admin

    router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @router.get("/replicas")
    async def replicas() -> JSONResponse:
        """Each engine replica: the adapter versions it holds, loads, evictions, requests served."""
        return JSONResponse({"replicas": await engine.replica_stats()})

    return router


@serve.ingress()
class Ingress:
    """The OpenAI and admin API, exactly as one process serves it; generation runs on the replicas."""

    def __init__(self, settings_data: dict[str, Any], replicas: Any) -> None:
        self.settings = Settings.model_validate(settings_data)
        self.replicas = replicas

    def __serve_build_asgi_app__(self) -> Any:
        from ..app import create_app
        from .remote_engine import RemoteEngine

        model_dir = resolve_model_dir(self.settings.model, self.settings.cache_dir)
        engine = RemoteEngine(self.settings, self.replicas, model_dir)
        # the ingress holds no weights: every registered version stays routable here; the replicas keep
        # their own LRU within max_resident_adapters
        app_settings = self.settings.model_copy(update={"max_resident_adapters": 1_000_000})
        app = create_app(app_settings, engine=engine)

        def pinned(key: str) -> bool:
            services = getattr(app.state, "services", None)
            entry = services.registry.entry(_ref(key)) if services is not None else None
            return bool(entry is not None and entry.pinned)

        engine.pinned = pinned
        app.include_router(_replicas_router(engine))
        return app
