"""Bearer keys: inference keys for /v1, the admin key for /admin and the vLLM load/unload endpoints.
Both are FastAPI dependencies: handlers take `caller: InferenceKey`; admin routers depend on `require_admin`.
Each also declares its security scheme (`ApiKey`, `AdminKey`), so the OpenAPI document marks every operation
that needs a key, and its 401/403 (api/openapi.py), for any router that uses them.

Inference keys are the registry's keys (tenants, created through /admin/keys) and the static `api_keys`; once
any exists, every /v1 request needs one. Each key is a named principal (tenants.py); its name, never the key,
goes on `request.state.key_name` for the access log."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import Forbidden, Unauthorized
from ..services import Services
from ..tenants import Keyring, Principal
from .deps import get_services


@dataclass(frozen=True)
class Caller:
    """Who sent an inference request: the key as sent (route rules match it) and its principal (None when the
    server has no inference keys: then anyone may call, unlimited)."""

    key: str | None
    principal: Principal | None


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def matches(key: str, candidates: Iterable[str]) -> bool:
    """Whether `key` is one of `candidates`, in constant time per candidate and checking every one, so neither the
    timing of a compare nor which key matched tells an attacker how close a guess came."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


# declared for the OpenAPI document only (auto_error=False: the checks below give the error, in OpenAI's shape)
api_key_scheme = HTTPBearer(
    scheme_name="ApiKey", description="an inference key, or the admin key; needed when keys are set", auto_error=False
)
admin_key_scheme = HTTPBearer(scheme_name="AdminKey", description="the admin key (--admin-key)", auto_error=False)
Declared = Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)]
DeclaredAdmin = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_key_scheme)]


def keyring(services: Services) -> Keyring:
    settings, registry = services.settings, services.registry
    static = [k.get_secret_value() for k in settings.api_keys]
    admin = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
    return Keyring(registry.key_by_digest, registry.key_count(), static, admin)


def check_inference_key(request: Request, _: Declared) -> Caller:
    """When inference keys exist, require one of them (or the admin key); returns who is calling."""
    ring = keyring(get_services(request))
    key = bearer(request)
    if not ring:
        return Caller(key, None)
    if key is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    principal = ring.lookup(key)
    if principal is None:
        raise Unauthorized("invalid API key (or revoked)")
    request.state.key_name = principal.name
    return Caller(key, principal)


def require_admin(request: Request, _: DeclaredAdmin) -> None:
    """The admin API is off without an admin key, and never open to inference keys."""
    settings = get_services(request).settings
    if settings.admin_key is None:
        raise Forbidden("the admin API is off: start the server with --admin-key KEY (or SWITCHBOARD_ADMIN_KEY)")
    key = bearer(request)
    if key is None:
        raise Unauthorized("missing admin key: send 'Authorization: Bearer <admin key>'")
    if matches(key, [settings.admin_key.get_secret_value()]):
        request.state.key_name = "admin"
        return
    if keyring(get_services(request)).lookup(key) is not None:
        raise Forbidden("inference keys cannot manage adapters; use the admin key")
    raise Unauthorized("invalid admin key")


InferenceKey = Annotated[Caller, Depends(check_inference_key)]
