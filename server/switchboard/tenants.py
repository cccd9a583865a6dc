"""Tenants: API keys as named principals, and what each may use (docs/tenants.md).

A key is `sb-` + 32 random bytes (urlsafe base64); the registry keeps only its SHA-256, with the key's name,
the adapters and experiments it may use (fnmatch globs; none = all) and its limits. Pure: no HTTP, no store;
the API layer looks a key up (`Keyring`), then calls `authorize` with what routing chose.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .errors import Conflict, Forbidden, InvalidRequest

KEY_PREFIX = "sb-"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
RESERVED = re.compile(r"admin|static-\d+")  # the admin key's and the static keys' principal names
MAX_PATTERNS = 32


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 of a key, hex. A fast unsalted hash is right here: the keys are 256-bit random tokens, not
    passwords, so there is nothing to brute-force and no dictionary to precompute; a slow KDF would only slow
    every request down."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a named key with what it may use and its limits (None or 0 = unlimited)."""

    name: str
    allow: tuple[str, ...] = ()  # fnmatch globs over adapter and experiment names; empty = everything
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute: prompt + max_tokens charged up front, the unused part refunded
    max_streams: int | None = None  # requests open at once (a stream counts while it is open)
    created_at: float = field(default_factory=time.time)
    digest: str = ""  # sha256 hex of the key; empty for the admin and static keys (compared as they are)
    revoked_at: float | None = None  # a revoked key stays as a tombstone: /v1 keeps needing keys

    def as_record(self) -> dict[str, Any]:
        """As the registry stores it (the digest, never the key)."""
        return {**asdict(self), "allow": list(self.allow)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Principal:
        return cls(
            name=str(record["name"]),
            allow=tuple(record.get("allow") or ()),
            rpm=record.get("rpm") or None,
            tpm=record.get("tpm") or None,
            max_streams=record.get("max_streams") or None,
            created_at=float(record.get("created_at", 0.0)),
            digest=str(record.get("digest", "")),
            revoked_at=record.get("revoked_at"),
        )

    def view(self) -> dict[str, Any]:
        """What the admin API lists: everything but the digest."""
        return {k: v for k, v in self.as_record().items() if k != "digest"}

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_streams)


def define(
    name: str, allow: list[str], rpm: int | None, tpm: int | None, max_streams: int | None
) -> tuple[Principal, str]:
    """A new key named `name`: (its principal, the key itself, to show once)."""
    if not NAME.fullmatch(name) or RESERVED.fullmatch(name):
        raise InvalidRequest(
            f"key name {name[:64]!r}: use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit "
            "('admin' and 'static-N' are taken by the admin and static keys)",
            param="name",
        )
    if len(allow) > MAX_PATTERNS or any(not p or len(p) > 128 for p in allow):
        raise InvalidRequest(f"allow: at most {MAX_PATTERNS} patterns of 1-128 characters", param="allow")
    for param, value in (("rpm", rpm), ("tpm", tpm), ("max_streams", max_streams)):
        if value is not None and value < 0:
            raise InvalidRequest(f"{param} must be 0 (unlimited) or more, got {value}", param=param)
    secret = new_secret()
    principal = Principal(name, tuple(allow), rpm or None, tpm or None, max_streams or None, digest=digest(secret))
    return principal, secret


class Keyring:
    """Key -> principal: the registry's keys (found by digest), then the static keys and the admin key."""

    def __init__(
        self, find: Callable[[str], Mapping[str, Any] | None], stored: int, static: list[str], admin: str | None
    ) -> None:
        self.find = find  # digest -> the registry's record of that key
        self.stored = stored  # how many keys the registry holds, revoked ones included
        self.static = [(Principal(f"static-{i}", created_at=0.0), key) for i, key in enumerate(static, start=1)]
        self.admin = admin

    def __bool__(self) -> bool:
        """Whether any inference key exists (then every /v1 request needs one)."""
        return bool(self.stored or self.static)

    def lookup(self, key: str) -> Principal | None:
        # Found by the digest of what was sent (its timing tells nothing of any stored key), then confirmed with a
        # constant-time compare; the static and admin keys are each compared in constant time, every one of them.
        sent = digest(key)
        record = self.find(sent)
        found = Principal.from_record(record) if record is not None else None
        if found is not None and (not hmac.compare_digest(found.digest, sent) or found.revoked_at is not None):
            found = None
        for candidate, secret in self.static:
            if hmac.compare_digest(key.encode(), secret.encode()) and found is None:
                found = candidate
        if self.admin is not None and hmac.compare_digest(key.encode(), self.admin.encode()) and found is None:
            found = Principal("admin", created_at=0.0)
        return found


def may_use(principal: Principal, name: str) -> bool:
    return not principal.allow or any(fnmatchcase(name, pattern) for pattern in principal.allow)


def authorize(principal: Principal | None, adapter: str | None, experiment: str = "") -> None:
    """Whether `principal` may be served by `adapter` (a name; None = the bare base model, named `base`), as
    routing chose it, whatever the request named. A request routed by an experiment is judged by the
    experiment's name (the variant is chosen at random; the operator grants the experiment as a whole)."""
    if principal is None:
        return
    target = experiment or adapter or "base"
    if not may_use(principal, target):
        what = f"experiment '{target}'" if experiment else f"adapter '{target}'"
        allowed = ", ".join(principal.allow)
        raise Forbidden(f"key '{principal.name}' may not use {what}; it may use: {allowed}", code="model_forbidden")


def unique(records: Mapping[str, Any], principal: Principal) -> None:
    """A name is free when no key has it or its key was revoked (the new key replaces the tombstone)."""
    if principal.name in records and records[principal.name].get("revoked_at") is None:
        raise Conflict(f"key '{principal.name}' exists; revoke it first or choose another name", param="name")
