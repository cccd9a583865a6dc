"""create_app(settings): the FastAPI app; the model loads in lifespan, never at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .api import admin, health, openai, vllm_compat
from .api import experiments as experiments_api
from .api.errors import BodyLimitMiddleware, install_error_handlers
from .config import Settings
from .errors import SwitchboardError
from .experiments import Experiments
from .hardware import cpu_info
from .metrics import Metrics
from .registry import Registry
from .registry.residency import Residency
from .registry.store import JsonStore
from .routing import Router
from .services import Services
from .validation import base_model_info
from .watcher import AdapterDirWatcher

logger = logging.getLogger(__name__)


def is_peft_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def static_adapters(settings: Settings) -> dict[str, Path]:
    """Adapters to serve from the start: every PEFT dir in the adapter dir, then --adapter NAME=DIR."""
    found: dict[str, Path] = {}
    adapter_dir = settings.effective_adapter_dir()
    if settings.adapter_dir is not None and not settings.adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter dir not found: {settings.adapter_dir}")
    if adapter_dir is not None and adapter_dir.is_dir():
        for child in sorted(adapter_dir.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and is_peft_dir(child):
                found[child.name] = child
    for name, path in settings.adapters.items():
        if not is_peft_dir(Path(path)):
            raise FileNotFoundError(f"adapter '{name}': {path} has no adapter_config.json (not a PEFT dir)")
        found[name] = Path(path)
    return found


def build_engine(settings: Settings) -> Any:
    if settings.quantize != "none" and settings.engine != "hf":
        raise ValueError(f"--quantize {settings.quantize} is an hf-engine option (got --engine {settings.engine})")
    from .models import resolve_model_dir

    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    common: dict[str, Any] = {
        "model_id": settings.base_model_id,
        "dtype": settings.dtype,
        "max_batch_size": settings.max_batch_size,
        "max_queue": settings.max_queue,
        "max_model_len": settings.max_model_len,
    }
    if settings.engine == "vllm":
        from .engine.vllm_engine import VLLMEngine

        return VLLMEngine(
            model_dir,
            **common,
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
            max_cpu_loras=settings.max_resident_adapters,
            engine_args=settings.engine_args,
        )
    from .engine.hf import HFEngine

    return HFEngine(model_dir, **common, quantize=settings.quantize)


async def _restore(services: Services, adapters: dict[str, Path]) -> None:
    """Bring back the persisted registry, then (re)register static adapters whose dir changed."""
    registry, residency = services.registry, services.residency
    for ref in registry.refs():
        entry = registry.entry(ref)
        if entry is not None:
            residency.track(ref, entry.path, entry.pinned)
    for name, path in adapters.items():
        current = registry.current(name)
        current_entry = registry.entry(current) if current else None
        if current_entry is not None and current_entry.path == path.resolve():
            continue
        try:
            await services.register(name, path, trusted=True)
        except SwitchboardError as exc:
            logger.error("not serving adapter %s: %s", name, exc.message)
    # load the current and pinned versions now, up to the budget; the rest load on first use
    warm = [r for r in registry.refs() if (registry.entry(r) and registry.entry(r).pinned)]
    warm += [c for c in (registry.current(n) for n in registry.names()) if c is not None and c not in warm]
    for ref in warm[: residency.max_resident]:
        entry = registry.entry(ref)
        if entry is None or str(ref) in residency.resident():
            continue
        try:
            await residency.load(ref, entry.path, entry.pinned)
        except SwitchboardError as exc:
            logger.error("adapter %s could not be loaded at start: %s", ref, exc.message)
            residency.track(ref, entry.path, entry.pinned)


def create_app(settings: Settings, engine: Any | None = None) -> FastAPI:
    """Build the app. `engine` may be given (tests share one); otherwise it is built in lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        adapters = static_adapters(settings)
        logger.info("cpu: %s", (await asyncio.to_thread(cpu_info)).summary())
        registry = await asyncio.to_thread(Registry, JsonStore(settings.state_dir))
        eng = engine if engine is not None else await asyncio.to_thread(build_engine, settings)
        if getattr(eng, "model", None) is None:
            await asyncio.to_thread(eng.load_model)
        base_info = await asyncio.to_thread(base_model_info, Path(eng.model_dir), settings.base_model_id)
        metrics = Metrics()
        metrics.describe_engine(eng.describe(), cpu_info())

        def on_residency(event: str, key: str) -> None:
            if event == "load":
                metrics.loads.inc()
                metrics.load_time.observe(residency.last_load_s)
            elif event == "evict":
                metrics.evictions.inc()

        residency = Residency(eng, settings.max_resident_adapters, on_residency)
        experiments = Experiments(registry)
        services = Services(
            settings=settings,
            engine=eng,
            registry=registry,
            residency=residency,
            router=Router(registry, settings.base_model_id, settings.routes, settings.default_adapter, experiments),
            base_info=base_info,
            metrics=metrics,
            experiments=experiments,
        )
        app.state.services = services
        await eng.start()
        await _restore(services, adapters)
        if settings.default_adapter and registry.lookup(settings.default_adapter) is None:
            raise ValueError(f"default_adapter '{settings.default_adapter}' is not among the served adapters")
        watcher = None
        if settings.watch_adapter_dir and settings.effective_adapter_dir() is not None:
            watcher = AdapterDirWatcher(services, settings.effective_adapter_dir(), settings.watch_interval_s)
            watcher.start()
        services.ready = True
        logger.info("serving %s with %d adapters", settings.base_model_id, len(registry.names()))
        try:
            yield
        finally:
            services.ready = False
            if watcher is not None:
                await watcher.stop()
            if engine is None:
                await eng.shutdown()

    app = FastAPI(title="Switchboard", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(experiments_api.router)
    app.include_router(vllm_compat.router)
    app.include_router(openai.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    return app
