"""API keys (tenants): /admin/keys (admin key required). The key itself is in the answer to its creation only."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_admin
from .deps import ServicesDep
from .openapi import errors

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="unique: a-z, 0-9, '-', '_'")
    allow: list[str] = Field(
        default_factory=list, description="fnmatch globs over adapter and experiment names; empty = everything"
    )
    rpm: int | None = Field(default=None, ge=0, description="requests per minute (0 or unset: unlimited)")
    tpm: int | None = Field(default=None, ge=0, description="tokens per minute, prompt + max_tokens (0: unlimited)")
    max_streams: int | None = Field(default=None, ge=0, description="requests open at once (0: unlimited)")


class KeyView(BaseModel):
    """A key as the admin API lists it: everything but the key and its hash."""

    name: str
    allow: list[str]
    rpm: int | None
    tpm: int | None
    max_streams: int | None
    created_at: float = Field(description="Unix time")
    revoked_at: float | None = Field(description="Unix time; null while the key works")


class KeyList(BaseModel):
    keys: list[KeyView]


class KeyCreated(KeyView):
    key: str = Field(description="the key itself: shown in this answer only")


class KeyRevoked(BaseModel):
    revoked: str


@router.get("/keys", responses={200: {"model": KeyList}})
async def list_keys(services: ServicesDep) -> JSONResponse:
    return JSONResponse({"keys": [p.view() for p in services.registry.api_keys()]})


@router.post("/keys", status_code=201, responses={201: {"model": KeyCreated}, **errors(409)})
async def create_key(services: ServicesDep, body: KeyBody) -> JSONResponse:
    principal, secret = await services.create_key(body.name, body.allow, body.rpm, body.tpm, body.max_streams)
    return JSONResponse({**principal.view(), "key": secret}, status_code=201)


@router.delete("/keys/{name}", responses={200: {"model": KeyRevoked}, **errors(404)})
async def revoke_key(services: ServicesDep, name: str) -> JSONResponse:
    principal = await services.revoke_key(name)
    return JSONResponse({"revoked": principal.name})
