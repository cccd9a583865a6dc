"""The registry's state file: one JSON document under the state dir, replaced atomically.

Write = serialize → temp file in the same dir → fsync → rename over the old file → fsync the dir.
A crash (even `kill -9`) at any moment leaves either the old or the new complete file, never a
half-written one; a change is acknowledged to the client only after the rename.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class Store(Protocol):
    """Where the registry's state lives. `transaction()` brackets one change: it yields the latest state
    committed by anyone (None: this process is the only writer, its memory is the latest) and `save`
    inside it is part of the change; a store shared by replicas also serializes changes there."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def transaction(self) -> AbstractContextManager[dict[str, Any] | None]: ...

    def health(self) -> StoreHealth: ...


@dataclass(frozen=True)
class StoreHealth:
    """Whether the store is reachable, how far behind this replica saw the last change, reconnections."""

    up: bool = True
    sync_lag_s: float = 0.0
    reconnects: int = 0


@contextmanager
def _sole_writer() -> Iterator[None]:
    yield None


class JsonStore:
    """Registry persistence in `<state_dir>/registry.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "registry.json"

    def transaction(self) -> AbstractContextManager[None]:
        return _sole_writer()  # one process owns the file

    def health(self) -> StoreHealth:
        return StoreHealth()

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        with open(self.path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unknown registry format {data.get('format')!r}")
        return data

    def save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"format": FORMAT_VERSION, **state}, indent=2, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".tmp", dir=self.state_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class MemoryStore:
    """No persistence (tests, or a server without a state dir)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def transaction(self) -> AbstractContextManager[None]:
        return _sole_writer()

    def health(self) -> StoreHealth:
        return StoreHealth()

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = json.loads(json.dumps(state))


def open_store(registry: str | None, state_dir: Path) -> Store:
    """The store `--registry` names: a postgresql:// URL (shared by replicas), else the JSON file."""
    if registry is None:
        return JsonStore(state_dir)
    if registry.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(registry)
    raise ValueError(
        f"--registry must be a postgresql:// URL (or unset for {state_dir}/registry.json), got {registry!r}"
    )
