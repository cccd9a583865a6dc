"""Bearer keys: inference keys for /v1, the admin key for /admin and the vLLM load/unload endpoints.
Both are FastAPI dependencies: handlers take `api_key: InferenceKey`; admin routers depend on `require_admin`.
Each also declares its security scheme (`ApiKey`, `AdminKey`), so the OpenAPI document marks every operation
that needs a key, and its 401/403 (api/openapi.py), for any router that uses them."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import Forbidden, Unauthorized
from .deps import get_services


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


def check_inference_key(request: Request, _: Declared) -> str | None:
    """When inference keys are configured, require one of them (or the admin key); returns the key."""
    settings = get_services(request).settings
    key = bearer(request)
    if not settings.api_keys:
        return key
    allowed = {k.get_secret_value() for k in settings.api_keys}
    if settings.admin_key is not None:
        allowed.add(settings.admin_key.get_secret_value())
    if key is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if not matches(key, allowed):
        raise Unauthorized("invalid API key")
    return key


def require_admin(request: Request, _: DeclaredAdmin) -> None:
    """The admin API is off without an admin key, and never open to inference keys."""
    settings = get_services(request).settings
    if settings.admin_key is None:
        raise Forbidden("the admin API is off: start the server with --admin-key KEY (or SWITCHBOARD_ADMIN_KEY)")
    key = bearer(request)
    if key is None:
        raise Unauthorized("missing admin key: send 'Authorization: Bearer <admin key>'")
    if matches(key, [settings.admin_key.get_secret_value()]):
        return
    if matches(key, [k.get_secret_value() for k in settings.api_keys]):
        raise Forbidden("inference keys cannot manage adapters; use the admin key")
    raise Unauthorized("invalid admin key")


InferenceKey = Annotated[str | None, Depends(check_inference_key)]
