"""create_app(settings): the FastAPI app; the model loads in lifespan, never at import."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .api import health, openai
from .api.errors import BodyLimitMiddleware, install_error_handlers
from .config import Settings
from .registry import Registry
from .routing import Router

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """What the HTTP layer talks to; one per app."""

    settings: Settings
    engine: Any
    registry: Registry
    router: Router
    started_at: int = field(default_factory=lambda: int(time.time()))
    ready: bool = False


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
            if child.is_dir() and is_peft_dir(child):
                found[child.name] = child
    for name, path in settings.adapters.items():
        if not is_peft_dir(Path(path)):
            raise FileNotFoundError(f"adapter '{name}': {path} has no adapter_config.json (not a PEFT dir)")
        found[name] = Path(path)
    return found


def build_engine(settings: Settings) -> Any:
    if settings.engine == "vllm":
        raise NotImplementedError("the vllm engine is not available yet; use --engine hf")
    from .engine.hf import HFEngine
    from .models import resolve_model_dir

    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    return HFEngine(
        model_dir,
        model_id=settings.base_model_id,
        dtype=settings.dtype,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        max_model_len=settings.max_model_len,
    )


def create_app(settings: Settings, engine: Any | None = None) -> FastAPI:
    """Build the app. `engine` may be given (tests share one); otherwise it is built in lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        registry = Registry()
        adapters = static_adapters(settings)
        eng = engine if engine is not None else await asyncio.to_thread(build_engine, settings)
        if getattr(eng, "model", None) is None:
            await asyncio.to_thread(eng.load_model)
        resident = set(eng.resident_adapters())
        for name, path in adapters.items():
            ref = registry.add(name, path)
            if str(ref) not in resident:
                await eng.add_adapter(str(ref), path)
        if settings.default_adapter and registry.lookup(settings.default_adapter) is None:
            raise ValueError(f"default_adapter '{settings.default_adapter}' is not among the served adapters")
        services = Services(
            settings=settings,
            engine=eng,
            registry=registry,
            router=Router(registry, settings.base_model_id, settings.routes, settings.default_adapter),
        )
        app.state.services = services
        await eng.start()
        services.ready = True
        logger.info("serving %s with %d adapters", settings.base_model_id, len(adapters))
        try:
            yield
        finally:
            services.ready = False
            if engine is None:
                await eng.shutdown()

    app = FastAPI(title="Switchboard", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    return app
