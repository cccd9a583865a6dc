"""The registry's API keys (tenants): one record per key name, holding the key's SHA-256, never the key.

A section of the registry's state like adapters and aliases, so it is persisted by the same `_commit` in the
JSON file or PostgreSQL, and other replicas pick changes up through the same sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import NotFound
from ..tenants import Principal, unique

T = TypeVar("T")


class KeysSection:
    """Mixed into `Registry`: `_keys` (name -> record) and its index by digest, changed through `_commit`."""

    _keys: dict[str, dict[str, Any]]
    _key_index: dict[str, dict[str, Any]]

    def _commit(self, change: Callable[[], T]) -> T:  # Registry's
        raise NotImplementedError

    def _apply_keys(self, records: dict[str, Any]) -> None:
        self._keys = {name: dict(record) for name, record in records.items()}
        self._index_keys()

    def _index_keys(self) -> None:
        self._key_index = {str(r["digest"]): r for r in self._keys.values()}

    def api_keys(self) -> list[Principal]:
        return [Principal.from_record(r) for _, r in sorted(self._keys.items())]

    def key_count(self) -> int:
        """Keys stored, revoked ones included: once a key was created, /v1 keeps needing one."""
        return len(self._keys)

    def key_by_digest(self, digest: str) -> dict[str, Any] | None:
        return self._key_index.get(digest)

    def add_key(self, principal: Principal) -> None:
        """Store a new key (its name must be free), persisted before it is accepted."""

        def change() -> None:
            unique(self._keys, principal)
            self._keys[principal.name] = principal.as_record()
            self._index_keys()

        self._commit(change)

    def revoke_key(self, name: str) -> Principal:
        """Revoke key `name`: refused from the next request on (on other replicas, once they synced). Its record
        stays, marked `revoked_at`, so that revoking the last key never opens /v1 to requests without one."""

        def change() -> Principal:
            live = sorted(n for n, r in self._keys.items() if r.get("revoked_at") is None)
            if name not in live:
                raise NotFound(f"key '{name}' not found (or revoked already); keys: {', '.join(live) or 'none'}")
            self._keys[name] = {**self._keys[name], "revoked_at": time.time()}
            self._index_keys()
            return Principal.from_record(self._keys[name])

        return self._commit(change)
