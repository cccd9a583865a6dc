"""A/B experiments (admin) and feedback on completions (inference keys)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import NotFound
from ..experiments import STICKY_HELP
from ..experiments.render import render
from ..registry import served_by
from .auth import InferenceKey, require_admin
from .deps import ServicesDep
from .openapi import errors
from .response_schemas import Concluded, Deleted, ExperimentList, ExperimentState, FeedbackResult, text

router = APIRouter()
MAX_SCORE = 1e6
admin = APIRouter(prefix="/admin/experiments", dependencies=[Depends(require_admin)])


class VariantWeight(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: str = Field(description="NAME[@VERSION]; a bare name means its current version")
    weight: float


class GuardrailsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_error_rate_increase: float | None = Field(
        default=None, ge=0, le=1, description="cut a variant whose error rate exceeds the control's by more (0-1)"
    )
    max_latency_p95_ratio: float | None = Field(
        default=None, ge=1, description="cut a variant whose p95 latency is above this many times the control's"
    )
    max_feedback_drop: float | None = Field(
        default=None, ge=0, description="cut a variant whose mean feedback is lower than the control's by more"
    )
    min_requests: int = Field(default=20, ge=1, description="requests on both sides before a guardrail may act")


class ExperimentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: dict[str, float] | list[VariantWeight] = Field(
        description="NAME[@VERSION] -> weight, or a list of {variant, weight}; in the order written, the first "
        "is the control; a bare name means its current version"
    )
    sticky: str = Field(default="user", description=STICKY_HELP)
    alpha: float = Field(default=0.05, description="the most the chance of a false 'promote' may be, read any time")
    alias: str | None = Field(default=None, description="the alias this experiment tests: conclude moves it")
    guardrails: GuardrailsBody | None = Field(
        default=None, description="limits relative to the control; a variant that crosses one is cut off"
    )
    planned_n: int | None = Field(
        default=None,
        description="feedback scores per variant planned: once every variant has them, Welch's fixed-horizon "
        "test decides (read the report once then)",
    )

    def ordered(self) -> dict[str, float]:
        if isinstance(self.variants, dict):
            return dict(self.variants)
        ordered: dict[str, float] = {}
        for item in self.variants:
            ordered[item.variant] = ordered.get(item.variant, 0.0) + item.weight
        return ordered


class ConcludeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    winner: str = Field(min_length=1, max_length=130, description="the variant to promote (NAME[@VERSION])")
    alias: str | None = Field(
        default=None,
        description="the alias to point at the winner (default: the experiment's, else the one alias on a variant)",
    )


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    # bounded: a sum of scores past float's range would make the experiment report and /metrics infinite
    score: float = Field(ge=0, le=MAX_SCORE, allow_inf_nan=False, description="0 to 1e6, e.g. 0/1 thumbs or 1-5 stars")


@admin.put("/{name}", responses={200: {"model": ExperimentState}, **errors(404, 409)})
async def put_experiment(services: ServicesDep, name: str, body: ExperimentBody) -> JSONResponse:
    experiment = await services.put_experiment(
        name,
        body.ordered(),
        body.sticky,
        alpha=body.alpha,
        planned_n=body.planned_n,
        alias=body.alias,
        guardrails=body.guardrails.model_dump() if body.guardrails else None,
    )
    return JSONResponse({"experiment": name, **experiment.as_dict()})


@admin.get("", responses={200: {"model": ExperimentList}})
async def list_experiments(services: ServicesDep) -> JSONResponse:
    """Every experiment with its state and weights, by name."""
    experiments = services.registry.experiments()
    return JSONResponse({"experiments": [{"experiment": n, **experiments[n].as_dict()} for n in sorted(experiments)]})


@admin.post("/{name}/conclude", responses={200: {"model": Concluded}, **errors(404, 409)})
async def conclude_experiment(services: ServicesDep, name: str, body: ConcludeBody) -> JSONResponse:
    experiment, alias, previous = await services.end_experiment(name, body.winner, body.alias)
    return JSONResponse({"experiment": name, **experiment.as_dict(), "alias": alias, "previous": previous})


@admin.post("/{name}/stop", responses={200: {"model": ExperimentState}, **errors(404, 409)})
async def stop_experiment(services: ServicesDep, name: str) -> JSONResponse:
    experiment, _, _ = await services.end_experiment(name)
    return JSONResponse({"experiment": name, **experiment.as_dict()})


@admin.get(
    "/{name}",
    response_model=None,
    responses={
        200: {
            "description": "the report: JSON, or readable as text/plain or text/markdown (`format`)",
            "content": {
                **text("", "text/plain", "text/markdown")["content"],
                "application/json": {"schema": {"type": "object"}},
            },
        },
        **errors(404),
    },
)
async def get_experiment(
    services: ServicesDep,
    name: str,
    format: Literal["json", "text", "markdown"] = Query(
        default="json", description="json, or the readable report as text/plain or text/markdown"
    ),
) -> JSONResponse | PlainTextResponse:
    experiment = services.registry.experiment(name)
    if experiment is None:
        raise NotFound(f"experiment '{name}' not found")
    # off the event loop: with a shared registry the report reads PostgreSQL
    report = await asyncio.to_thread(services.experiments.report, name, experiment)
    if format == "json":
        return JSONResponse(report)
    media = "text/markdown" if format == "markdown" else "text/plain"
    return PlainTextResponse(render(report, format), media_type=f"{media}; charset=utf-8")


@admin.delete("/{name}", responses={200: {"model": Deleted}, **errors(404, 409)})
async def delete_experiment(services: ServicesDep, name: str) -> JSONResponse:
    await services.delete_experiment(name)
    return JSONResponse({"deleted": name})


@router.post("/v1/feedback", responses={200: {"model": FeedbackResult}, **errors(404)})
async def feedback(services: ServicesDep, caller: InferenceKey, body: FeedbackBody) -> JSONResponse:
    route = await asyncio.to_thread(services.experiments.feedback, body.id, body.score)
    labels = services.metrics.route_labels(route)
    services.metrics.feedback.labels(*labels).inc()
    services.metrics.feedback_score.labels(*labels).inc(body.score)
    return JSONResponse(
        {
            "id": body.id,
            "adapter": served_by(route.ref),
            "experiment": route.experiment or None,
            "variant": route.variant or None,
        }
    )


router.include_router(admin)
