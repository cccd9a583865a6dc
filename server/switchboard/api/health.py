"""Liveness (/health), readiness (/ready) and the Prometheus endpoint (/metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..hardware import cpu_info
from .deps import MaybeServices, ServicesDep
from .response_schemas import Health, Readiness, text

router = APIRouter()


@router.get("/health", responses={200: {"model": Health}})
async def health(services: MaybeServices) -> JSONResponse:
    """Alive; also what computes: the version, the CPU's features and, once built, the engine with its
    resolved dtype."""
    body: dict[str, Any] = {"status": "ok", "version": __version__, "cpu": cpu_info().as_dict()}
    if services is not None:
        body["engine"] = services.engine.describe()
    return JSONResponse(body)


@router.get("/ready", responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "loading"}})
async def ready(services: MaybeServices) -> JSONResponse:
    if services is None or not services.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    body: dict[str, Any] = {"status": "ready", "model": services.settings.base_model_id}
    body.update(services.engine.occupancy())
    if not services.registry.store.health().up:
        # inference goes on with the versions loaded; registry changes wait (503) until it is back
        body["status"], body["registry"] = "degraded", "unreachable"
    if services.residency.refused:  # registered by another replica, unusable here (docs/scaling.md)
        body["unavailable"] = dict(services.residency.refused)
    return JSONResponse(body)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: text("Prometheus text exposition format", "text/plain")},
)
async def metrics(services: ServicesDep) -> Response:
    m = services.metrics
    occupancy = services.engine.occupancy()
    m.batch_size.set(occupancy.get("running", 0))
    m.pending.set(occupancy.get("pending", 0))
    m.resident.set(len(services.residency.resident()))
    # the model-server protocol (vLLM's names, for the inference gateway's picker): an engine without a
    # per-batch adapter limit (hf) can batch every resident adapter, so the residency budget is its max_lora
    state = services.engine.scheduler_state()
    m.observe_scheduler(state, services.engine.model_id, state.max_loras or services.residency.max_resident)
    m.unavailable.set(len(services.residency.refused))
    store = services.registry.store.health()
    m.observe_store(store.up, store.sync_lag_s, store.reconnects)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
