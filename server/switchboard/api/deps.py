"""Typed FastAPI dependencies for the app's `Services`: a handler asks for `services: ServicesDep`
instead of reaching into `request.app.state`. The key checks are in auth.py (`InferenceKey`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..errors import EngineFailure
from ..services import Services


def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise EngineFailure("the server is still starting; retry shortly")
    return services


def optional_services(request: Request) -> Services | None:
    """The services once the lifespan has built them (health answers before that)."""
    return getattr(request.app.state, "services", None)


ServicesDep = Annotated[Services, Depends(get_services)]
MaybeServices = Annotated[Services | None, Depends(optional_services)]
