"""Runtime management: /admin/adapters and /admin/aliases (admin key required)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..registry import AdapterRef
from ..services import Services
from .auth import require_admin
from .deps import ServicesDep

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    path: str = Field(min_length=1, max_length=4096)
    version: str | None = Field(default=None, min_length=1, max_length=64)
    alias: str | None = Field(default=None, min_length=1, max_length=64)
    pinned: bool = False


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=130, description="name@version, or a name (its current version)")


def adapters_view(services: Services) -> dict[str, Any]:
    residency = services.residency
    resident = set(residency.resident())
    adapters = services.registry.describe()
    for adapter in adapters:
        for version in adapter["versions"]:
            version["resident"] = version["ref"] in resident
            version["in_flight"] = residency.in_flight(version["ref"])
    return {
        "adapters": adapters,
        "aliases": services.registry.aliases(),
        "resident": sorted(resident),
        "max_resident": residency.max_resident,
    }


@router.get("/adapters")
async def list_adapters(services: ServicesDep) -> JSONResponse:
    return JSONResponse(adapters_view(services))


@router.post("/adapters", status_code=201)
async def register_adapter(services: ServicesDep, body: RegisterBody) -> JSONResponse:
    ref = await services.register(body.name, body.path, body.version, pinned=body.pinned, alias=body.alias)
    return JSONResponse(
        {
            "ref": str(ref),
            "name": ref.name,
            "version": ref.version,
            "alias": body.alias,
            "pinned": body.pinned,
            "path": str(services.registry.path(ref)),
        },
        status_code=201,
    )


@router.delete("/adapters/{name_ref}")
async def remove_adapter(services: ServicesDep, name_ref: str) -> JSONResponse:
    name, version = AdapterRef.parse(name_ref)
    refs = await services.unregister(name, version)
    return JSONResponse({"removed": [str(r) for r in refs]})


@router.put("/aliases/{alias}")
async def put_alias(services: ServicesDep, alias: str, body: AliasBody) -> JSONResponse:
    ref, previous = await services.set_alias(alias, body.target)
    return JSONResponse({"alias": alias, "target": str(ref), "previous": previous})


@router.post("/aliases/{alias}/rollback")
async def rollback_alias(services: ServicesDep, alias: str) -> JSONResponse:
    ref = await services.rollback_alias(alias)
    return JSONResponse({"alias": alias, "target": str(ref)})


@router.delete("/aliases/{alias}")
async def delete_alias(services: ServicesDep, alias: str) -> JSONResponse:
    await services.delete_alias(alias)
    return JSONResponse({"deleted": alias})
