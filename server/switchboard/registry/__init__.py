"""The adapter registry: names, versions and where their weights live.

Routing asks it to resolve a name once per request to one concrete `AdapterRef`; the engine loads
adapters under the ref's string form (`name@version`), so a new version never shares engine state
with an old one.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AdapterNotFound, InvalidRequest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BASE = "base"


@dataclass(frozen=True)
class AdapterRef:
    """One concrete adapter version."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> tuple[str, str | None]:
        name, _, version = text.partition("@")
        return name, (version or None)


@dataclass
class AdapterEntry:
    name: str
    versions: dict[str, Path] = field(default_factory=dict)
    current: str | None = None


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name == BASE:
        raise InvalidRequest(
            f"invalid adapter name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit (and not '{BASE}')",
            param="name",
        )
    return name


class Registry:
    """In-memory registry of adapter versions; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[str, AdapterEntry] = {}

    def add(self, name: str, path: Path, version: str | None = None) -> AdapterRef:
        check_name(name)
        with self._lock:
            entry = self._adapters.setdefault(name, AdapterEntry(name))
            if version is None:
                version = f"v{len(entry.versions) + 1}"
                while version in entry.versions:
                    version = f"v{int(version[1:]) + 1}"
            entry.versions[version] = Path(path)
            entry.current = version
            return AdapterRef(name, version)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters)

    def refs(self) -> list[AdapterRef]:
        with self._lock:
            return [AdapterRef(e.name, v) for e in self._adapters.values() for v in e.versions]

    def path(self, ref: AdapterRef) -> Path:
        with self._lock:
            return self._adapters[ref.name].versions[ref.version]

    def lookup(self, text: str) -> AdapterRef | None:
        """Resolve `name` or `name@version` to a ref; None when there is no such adapter."""
        name, version = AdapterRef.parse(text)
        with self._lock:
            entry = self._adapters.get(name)
            if entry is None:
                return None
            version = version or entry.current
            if version is None or version not in entry.versions:
                return None
            return AdapterRef(name, version)

    def resolve(self, text: str) -> AdapterRef:
        ref = self.lookup(text)
        if ref is None:
            available = ", ".join([BASE, *self.names()])
            raise AdapterNotFound(f"adapter '{text}' not found; available: {available}", param="model")
        return ref
