"""create_app(settings): the FastAPI app, wired; the model loads in lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import admin, console, experiments, health, keys, openai, vllm_compat
from .api.access import AccessLog
from .api.errors import BodyLimitMiddleware, install_error_handlers
from .api.openapi import install_openapi
from .config import Settings
from .engine import build_engine
from .engine.base import Engine
from .engine.residency import Residency
from .experiments import ExperimentStats
from .hardware import cpu_info
from .metrics import Metrics
from .openmp import release_pool, to_thread_releasing
from .registry import Registry
from .registry.store import Store, open_store
from .routing import Router
from .services import Services
from .tracing import Tracing
from .validation import base_model_info, peft_dirs
from .watcher import AdapterDirWatcher

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)
RATE_LIMIT_HEADERS = [f"x-ratelimit-{w}-{k}" for w in ("limit", "remaining", "reset") for k in ("requests", "tokens")]


def static_adapters(settings: Settings) -> dict[str, Path]:
    """Adapters to serve from the start: every PEFT dir in the adapter dir, then --adapter NAME=DIR."""
    if settings.adapter_dir is not None and not settings.adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter dir not found: {settings.adapter_dir}")
    adapter_dir = settings.effective_adapter_dir()
    found = peft_dirs(adapter_dir) if adapter_dir is not None else {}
    for name, path in settings.adapters.items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter '{name}': {path} has no adapter_config.json (not a PEFT dir)")
        found[name] = Path(path)
    return found


def experiment_stats(store: Store, settings: Settings) -> ExperimentStats:
    """Per-replica statistics, or, with a registry shared by replicas, statistics they all add to."""
    from .registry.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        from .experiments.shared import SharedExperimentStats

        return SharedExperimentStats(store, ttl_s=settings.feedback_ttl_s)
    return ExperimentStats()


async def build_services(settings: Settings, engine: Engine) -> Services:
    """Registry, residency, router, metrics and experiment statistics around a loaded `engine`."""
    store = await asyncio.to_thread(open_store, settings.registry, settings.state_dir)
    registry = await asyncio.to_thread(Registry, store)
    base_info = await asyncio.to_thread(base_model_info, Path(engine.model_dir), settings.base_model_id)
    metrics = Metrics()
    metrics.describe_engine(engine.describe(), cpu_info())

    def on_residency(event: str, key: str) -> None:
        if event == "load":
            metrics.loads.inc()
            metrics.load_time.observe(residency.last_load_s)
        elif event == "evict":
            metrics.evictions.inc()

    residency = Residency(engine, settings.max_resident_adapters, on_residency)
    return Services(
        settings=settings,
        engine=engine,
        registry=registry,
        residency=residency,
        router=Router(registry, settings.base_model_id, settings.routes, settings.default_adapter),
        base_info=base_info,
        metrics=metrics,
        experiments=experiment_stats(store, settings),
    )


def follow_registry(services: Services, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """With a registry shared by replicas, sync this replica on every change any of them commits;
    returns what stops following (a no-op for the JSON file)."""
    watch = getattr(services.registry.store, "watch", None)
    if watch is None:
        return lambda: None
    stop = threading.Event()

    def on_change(generation: int) -> bool:
        """Sync and wait for it: False when it failed, so the watch tries again shortly."""
        if stop.is_set() or loop.is_closed():
            return True
        done = asyncio.run_coroutine_threadsafe(services.sync(), loop)
        while not stop.is_set():
            try:
                done.result(timeout=0.5)
                return True
            except futures.TimeoutError:
                continue
            except Exception:
                logger.exception("registry sync failed; trying again in a second")
                return False
        done.cancel()
        return True

    thread = threading.Thread(target=watch, args=(on_change, stop), name="switchboard-registry-watch", daemon=True)
    thread.start()

    def stop_following() -> None:
        stop.set()
        thread.join(timeout=5)

    return stop_following


def create_app(settings: Settings, engine: Engine | None = None, span_exporter: SpanExporter | None = None) -> FastAPI:
    """Build the app. `engine` may be given (tests share one); otherwise it is built in lifespan. `span_exporter`
    (tests) turns tracing on and receives every span as it ends."""
    tracing = Tracing.configure(settings, span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        adapters = static_adapters(settings)
        # torch work off the engine thread gives its OpenMP team back, the main thread's too (openmp.py)
        release_pool()
        logger.info("cpu: %s", (await to_thread_releasing(cpu_info)).summary())
        eng = engine if engine is not None else await to_thread_releasing(build_engine, settings)
        if eng.model is None:
            await to_thread_releasing(eng.load_model)
        services = await build_services(settings, eng)
        services.tracing = tracing
        if tracing is not None:
            from .engine.hf import HFEngine  # the engine whose batch steps become spans

            if isinstance(eng, HFEngine):
                eng.tracer = tracing
        app.state.services = services
        follow = follow_registry(services, asyncio.get_running_loop())
        await eng.start()
        await services.restore(adapters)
        registry = services.registry
        if settings.default_adapter and registry.lookup(settings.default_adapter) is None:
            raise ValueError(f"default_adapter '{settings.default_adapter}' is not among the served adapters")
        watcher = None
        adapter_dir = settings.effective_adapter_dir()
        if settings.watch_adapter_dir and adapter_dir is not None:
            watcher = AdapterDirWatcher(services, adapter_dir, settings.watch_interval_s)
            watcher.start()
        services.ready = True
        guardrails = asyncio.create_task(services.watch_guardrails())
        logger.info("serving %s with %d adapters", settings.base_model_id, len(registry.names()))
        try:
            yield
        finally:
            services.ready = False
            guardrails.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guardrails
            follow()
            await asyncio.to_thread(services.experiments.close)
            if watcher is not None:
                await watcher.stop()
            if engine is None:
                await eng.shutdown()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="Switchboard", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    install_openapi(app)
    for module in (health, admin, keys, experiments, vllm_compat, openai):
        app.include_router(module.router)
    if settings.console:
        app.include_router(console.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    if settings.cors_origins:  # off unless configured: the keys are bearer tokens, never cookies
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["*"],  # routing and sticky-assignment headers are configurable
            expose_headers=["X-Adapter", "X-Request-Id", "X-Experiment", "Retry-After", *RATE_LIMIT_HEADERS],
            max_age=600,
        )
    app.add_middleware(AccessLog, tracing=tracing)  # outermost of ours: sees every status, 413 and CORS included
    if tracing is not None:
        tracing.instrument(app)  # its span wraps all of the above
    return app
