"""Runtime management: /admin/adapters and /admin/aliases (admin key required)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..registry import AdapterRef
from ..services import Services
from .auth import require_admin
from .deps import ServicesDep
from .openapi import errors
from .response_schemas import AdapterList, AliasSet, Deleted, Registered, Removed

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


MANIFEST_FIELDS = ("base_model", "base_model_hash", "data", "metrics", "created")


def manifest_summary(path: str) -> dict[str, Any] | None:
    """What the trainer's manifest.json says of a version (base, data hash, losses, training time), or None."""
    try:
        manifest = json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: manifest[k] for k in MANIFEST_FIELDS if k in manifest} if isinstance(manifest, dict) else None


def adapters_view(services: Services) -> dict[str, Any]:
    residency = services.residency
    resident = set(residency.resident())
    adapters = services.registry.describe()
    for adapter in adapters:
        for version in adapter["versions"]:
            version["resident"] = version["ref"] in resident
            version["in_flight"] = residency.in_flight(version["ref"])
            version["load_s"] = residency.load_s.get(version["ref"]) if version["resident"] else None
    return {
        "adapters": adapters,
        "aliases": services.registry.aliases(),
        "alias_history": services.registry.alias_history(),
        "experiments": sorted(services.registry.experiments()),
        "resident": sorted(resident),
        "max_resident": residency.max_resident,
        "adapter_roots": [str(p) for p in services.settings.effective_adapter_roots()],
    }


def add_manifests(view: dict[str, Any]) -> dict[str, Any]:
    for adapter in view["adapters"]:
        for version in adapter["versions"]:
            version["manifest"] = manifest_summary(version["path"])
    return view


@router.get("/adapters", responses={200: {"model": AdapterList}})
async def list_adapters(services: ServicesDep) -> JSONResponse:
    # the manifests are read from disk, off the event loop
    return JSONResponse(await asyncio.to_thread(add_manifests, adapters_view(services)))


@router.post("/adapters", status_code=201, responses={201: {"model": Registered}, **errors(403, 409, 422)})
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


@router.delete("/adapters/{name_ref}", responses={200: {"model": Removed}, **errors(400, 404, 409)})
async def remove_adapter(services: ServicesDep, name_ref: str) -> JSONResponse:
    name, version = AdapterRef.parse(name_ref)
    refs = await services.unregister(name, version)
    return JSONResponse({"removed": [str(r) for r in refs]})


@router.put("/aliases/{alias}", responses={200: {"model": AliasSet}, **errors(404, 409)})
async def put_alias(services: ServicesDep, alias: str, body: AliasBody) -> JSONResponse:
    ref, previous = await services.set_alias(alias, body.target)
    return JSONResponse({"alias": alias, "target": str(ref), "previous": previous})


@router.post("/aliases/{alias}/rollback", responses={200: {"model": AliasSet}, **errors(404, 409)})
async def rollback_alias(services: ServicesDep, alias: str) -> JSONResponse:
    ref = await services.rollback_alias(alias)
    return JSONResponse({"alias": alias, "target": str(ref)})


@router.delete("/aliases/{alias}", responses={200: {"model": Deleted}, **errors(404, 409)})
async def delete_alias(services: ServicesDep, alias: str) -> JSONResponse:
    await services.delete_alias(alias)
    return JSONResponse({"deleted": alias})
