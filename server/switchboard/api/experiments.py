"""A/B experiments (admin), feedback (inference keys) and the Prometheus endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from .auth import check_inference_key, require_admin

router = APIRouter()
admin = APIRouter(prefix="/admin/experiments", dependencies=[Depends(require_admin)])


class ExperimentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: dict[str, float] = Field(description="NAME[@VERSION] -> weight; a bare name means its current version")
    sticky: str = Field(default="user", pattern="^(user|header|none)$")


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=0, allow_inf_nan=False, description="0 or more, e.g. 0/1 thumbs or 1-5 stars")


@admin.put("/{name}")
async def put_experiment(request: Request, name: str, body: ExperimentBody) -> JSONResponse:
    services = request.app.state.services
    async with services.admin_lock:
        definition = services.experiments.put(name, body.variants, body.sticky)
    services.metrics.registry_changes.labels("experiment").inc()
    return JSONResponse({"experiment": name, **definition})


@admin.get("/{name}")
async def get_experiment(request: Request, name: str) -> JSONResponse:
    return JSONResponse(request.app.state.services.experiments.report(name))


@admin.delete("/{name}")
async def delete_experiment(request: Request, name: str) -> JSONResponse:
    services = request.app.state.services
    async with services.admin_lock:
        services.experiments.delete(name)
    services.metrics.registry_changes.labels("experiment").inc()
    return JSONResponse({"deleted": name})


@router.post("/v1/feedback")
async def feedback(request: Request, body: FeedbackBody) -> JSONResponse:
    check_inference_key(request)
    services = request.app.state.services
    labels = services.experiments.feedback(body.id, body.score)
    services.metrics.feedback.labels(*labels).inc()
    services.metrics.feedback_score.labels(*labels).inc(body.score)
    adapter, version, experiment, variant = labels
    return JSONResponse(
        {
            "id": body.id,
            "adapter": f"{adapter}@{version}" if version else adapter,
            "experiment": experiment or None,
            "variant": variant or None,
        }
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = request.app.state.services
    m = services.metrics
    load = services.engine.load()
    m.batch_size.set(load.get("running", 0))
    m.pending.set(load.get("pending", 0))
    m.resident.set(len(services.residency.resident()))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


router.include_router(admin)
