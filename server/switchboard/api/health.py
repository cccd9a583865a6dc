"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..hardware import cpu_info

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Alive; also what computes: the CPU's features and, once built, the engine with its resolved dtype."""
    body: dict[str, Any] = {"status": "ok", "cpu": cpu_info().as_dict()}
    services = getattr(request.app.state, "services", None)
    if services is not None:
        body["engine"] = services.engine.describe()
    return JSONResponse(body)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    services = getattr(request.app.state, "services", None)
    if services is None or not services.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model": services.settings.base_model_id, **services.engine.load()})
