"""The adapter registry: names, versions, aliases, pins and experiment definitions, persisted atomically.

Routing resolves a request to one concrete `AdapterRef` once; the engine holds adapters under the
ref's string form (`name@version`), so a new version never shares engine state with an old one.
Registering under an existing name adds a version and makes it the name's current version;
aliases point at one `name@version` and move atomically (promote / roll back). Every change goes
through `_commit` (copy, apply, persist, swap): it is stored before anyone can see it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import Conflict, NotFound
from ..experiments.definitions import Experiment
from .keys import KeysSection
from .refs import AdapterRef, check_name, not_found
from .store import MemoryStore, Store

T = TypeVar("T")


@dataclass
class VersionEntry:
    path: Path
    pinned: bool = False
    created: float = field(default_factory=time.time)
    content: str | None = None  # sha256 of the adapter's files (validation.AdapterInfo.content_hash)


@dataclass
class AdapterEntry:
    name: str
    versions: dict[str, VersionEntry] = field(default_factory=dict)
    current: str | None = None
    counter: int = 0  # last auto-number, so removed version numbers are never reused


class Registry(KeysSection):
    """Thread-safe registry state; every change is persisted before it becomes visible."""

    def __init__(self, store: Store | None = None) -> None:
        self._lock = threading.RLock()
        self._store = store or MemoryStore()
        self._adapters: dict[str, AdapterEntry] = {}
        self._aliases: dict[str, str] = {}
        self._alias_history: dict[str, list[str]] = {}
        self._experiments: dict[str, Experiment] = {}
        self._apply_keys({})
        self._apply(self._store.load())

    # ------------------------------------------------------------------ persistence
    def _apply(self, state: dict[str, Any] | None) -> None:
        """Replace the in-memory state by `state` (as stored)."""
        self._adapters, self._aliases, self._alias_history, self._experiments = {}, {}, {}, {}
        self._apply_keys((state or {}).get("keys", {}))
        if not state:
            return
        for name, data in state.get("adapters", {}).items():
            entry = AdapterEntry(name, current=data.get("current"), counter=int(data.get("counter", 0)))
            for version, v in data.get("versions", {}).items():
                entry.versions[version] = VersionEntry(
                    Path(v["path"]), bool(v.get("pinned")), float(v["created"]), v.get("content")
                )
            self._adapters[name] = entry
        self._aliases = dict(state.get("aliases", {}))
        self._alias_history = {k: list(v) for k, v in state.get("alias_history", {}).items()}
        # state files before 0.3.2 kept experiments under "extra"
        experiments = state.get("experiments", state.get("extra", {}).get("experiments", {}))
        self._experiments = {name: Experiment.from_dict(data) for name, data in experiments.items()}

    def _state(self) -> dict[str, Any]:
        return {
            "adapters": {
                name: {
                    "current": e.current,
                    "counter": e.counter,
                    "versions": {
                        v: {"path": str(ve.path), "pinned": ve.pinned, "created": ve.created, "content": ve.content}
                        for v, ve in e.versions.items()
                    },
                }
                for name, e in self._adapters.items()
            },
            "aliases": self._aliases,
            "alias_history": self._alias_history,
            "experiments": {name: e.as_dict() for name, e in self._experiments.items()},
            "keys": {name: dict(record) for name, record in self._keys.items()},
        }

    def _commit(self, change: Callable[[], T]) -> T:
        """Apply `change` to the latest state, persist it, then keep it (all or nothing). In a store
        shared by replicas the latest state is what any replica committed, read under its lock."""
        with self._lock:
            backup = (
                {n: AdapterEntry(e.name, dict(e.versions), e.current, e.counter) for n, e in self._adapters.items()},
                dict(self._aliases),
                {k: list(v) for k, v in self._alias_history.items()},
                dict(self._experiments),
                dict(self._keys),
            )
            try:
                with self._store.transaction() as latest:
                    if latest is not None:
                        self._apply(latest)
                    result = change()
                    self._store.save(self._state())
            except BaseException:
                self._adapters, self._aliases, self._alias_history, self._experiments, self._keys = backup
                self._index_keys()
                raise
            return result

    def refresh(self, state: dict[str, Any] | None = None) -> None:
        """Take the state another replica committed (read from the store unless given)."""
        if state is None:
            state = self._store.load()
        with self._lock:
            self._apply(state)

    def state(self) -> dict[str, Any]:
        """The whole state as a store holds it (registry.json's sections)."""
        with self._lock:
            return self._state()

    @property
    def store(self) -> Store:
        return self._store

    @classmethod
    def of_state(cls, state: dict[str, Any] | None) -> Registry:
        """A read-only view of a stored state (to compare with this replica's)."""
        view = cls(MemoryStore())
        view._apply(state)
        return view

    def stored_state(self) -> dict[str, Any] | None:
        """The state as the store holds it now (blocking: call it off the event loop)."""
        return self._store.load()

    # ------------------------------------------------------------------ reads
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters)

    def aliases(self) -> dict[str, str]:
        with self._lock:
            return dict(self._aliases)

    def alias_history(self) -> dict[str, list[str]]:
        """Each alias's earlier targets, oldest first (what rollback walks back through)."""
        with self._lock:
            return {k: list(v) for k, v in self._alias_history.items() if k in self._aliases}

    def refs(self) -> list[AdapterRef]:
        with self._lock:
            return [AdapterRef(e.name, v) for e in self._adapters.values() for v in e.versions]

    def entry(self, ref: AdapterRef) -> VersionEntry | None:
        with self._lock:
            adapter = self._adapters.get(ref.name)
            return adapter.versions.get(ref.version) if adapter else None

    def path(self, ref: AdapterRef) -> Path:
        entry = self.entry(ref)
        if entry is None:
            raise not_found("adapter", str(ref), self.available())
        return entry.path

    def current(self, name: str) -> AdapterRef | None:
        with self._lock:
            entry = self._adapters.get(name)
            return AdapterRef(name, entry.current) if entry and entry.current else None

    def lookup(self, text: str) -> AdapterRef | None:
        """Resolve an alias, `name` or `name@version` to a ref; None when there is none."""
        with self._lock:
            if "@" not in text and text in self._aliases:
                text = self._aliases[text]
            name, version = AdapterRef.parse(text)
            entry = self._adapters.get(name)
            if entry is None:
                return None
            version = version or entry.current
            if version is None or version not in entry.versions:
                return None
            return AdapterRef(name, version)

    def available(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters) + sorted(self._aliases)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for name in sorted(self._adapters):
                e = self._adapters[name]
                out.append(
                    {
                        "name": name,
                        "current": e.current,
                        "versions": [
                            {
                                "version": v,
                                "ref": f"{name}@{v}",
                                "path": str(ve.path),
                                "pinned": ve.pinned,
                                "created": ve.created,
                            }
                            for v, ve in e.versions.items()
                        ],
                        "aliases": sorted(a for a, t in self._aliases.items() if AdapterRef.parse(t)[0] == name),
                    }
                )
            return out

    # ------------------------------------------------------------------ changes
    def next_ref(self, name: str, version: str | None = None) -> AdapterRef:
        """The ref a registration of `name` would get (`v<n+1>` unless a version is given)."""
        check_name(name)
        with self._lock:
            if name in self._aliases:
                raise Conflict(f"'{name}' is an alias; choose another adapter name", param="name")
            entry = self._adapters.get(name)
            if version is not None:
                check_name(version, "version")
                if entry and version in entry.versions:
                    raise Conflict(
                        f"adapter '{name}@{version}' already exists; give a new version or omit it", param="version"
                    )
                return AdapterRef(name, version)
            counter = entry.counter if entry else 0
            existing = entry.versions if entry else {}
            while f"v{counter + 1}" in existing:
                counter += 1
            return AdapterRef(name, f"v{counter + 1}")

    def current_if_same(self, name: str, content: str | None) -> AdapterRef | None:
        """`name`'s current version when its files are `content` (a registration to retry, not a new one)."""
        with self._lock:
            entry = self._adapters.get(name)
            if content is None or entry is None or entry.current is None:
                return None
            return AdapterRef(name, entry.current) if entry.versions[entry.current].content == content else None

    def add(
        self,
        name: str,
        path: Path,
        version: str | None = None,
        *,
        pinned: bool = False,
        alias: str | None = None,
        content: str | None = None,
    ) -> AdapterRef:
        """Register a version (and optionally point an alias at it), persisted before it is visible.
        Without an explicit version, files identical to the current version's (same `content`) return
        that version: a retried registration never makes a second copy."""
        if alias is not None:
            check_name(alias, "alias")

        def change() -> AdapterRef:
            same = self.current_if_same(name, content) if version is None else None
            if same is not None:
                if alias is not None:
                    self._set_alias(alias, same)
                return same
            ref = self.next_ref(name, version)
            entry = self._adapters.setdefault(name, AdapterEntry(name))
            numbered = re.fullmatch(r"v(\d+)", ref.version)
            if numbered:
                entry.counter = max(entry.counter, int(numbered[1]))
            entry.versions[ref.version] = VersionEntry(Path(path), pinned, content=content)
            entry.current = ref.version
            if alias is not None:
                self._set_alias(alias, ref)
            return ref

        return self._commit(change)

    def remove(self, name: str, version: str | None = None) -> list[AdapterRef]:
        """Stop routing to `name` (all versions) or `name@version`; returns the removed refs."""

        def change() -> list[AdapterRef]:
            entry = self._adapters.get(name)
            if entry is None or (version is not None and version not in entry.versions):
                label = f"{name}@{version}" if version else name
                raise not_found("adapter", label, self.available())
            doomed = [version] if version is not None else list(entry.versions)
            refs = [AdapterRef(name, v) for v in doomed]
            pointing = sorted(
                a for a, t in self._aliases.items() if AdapterRef.parse(t) in [(r.name, r.version) for r in refs]
            )
            if pointing:
                raise Conflict(
                    f"alias(es) {', '.join(pointing)} point at {', '.join(map(str, refs))}; move them "
                    "with PUT /admin/aliases/{alias} first"
                )
            for v in doomed:
                del entry.versions[v]
            if not entry.versions:
                del self._adapters[name]
            elif entry.current in doomed:
                entry.current = list(entry.versions)[-1]
            return refs

        return self._commit(change)

    def _set_alias(self, alias: str, ref: AdapterRef) -> str | None:
        if alias in self._adapters:
            raise Conflict(f"'{alias}' is an adapter name; an alias needs its own name", param="alias")
        previous = self._aliases.get(alias)
        if previous is not None and previous != str(ref):
            self._alias_history.setdefault(alias, []).append(previous)
            self._alias_history[alias] = self._alias_history[alias][-20:]
        self._aliases[alias] = str(ref)
        return previous

    def set_alias(self, alias: str, target: str) -> tuple[AdapterRef, str | None]:
        check_name(alias, "alias")

        def change() -> tuple[AdapterRef, str | None]:
            name, version = AdapterRef.parse(target)
            ref = self.lookup(target) if version else self.current(name)
            if ref is None:
                raise not_found("target", target, self.available(), param="target")
            return ref, self._set_alias(alias, ref)

        return self._commit(change)

    def rollback_alias(self, alias: str) -> AdapterRef:
        """Point `alias` back at the target it had before its last move."""

        def change() -> AdapterRef:
            history = self._alias_history.get(alias) or []
            while history:
                previous = history.pop()
                ref = self.lookup(previous)
                if ref is not None:
                    self._aliases[alias] = str(ref)
                    return ref
            raise Conflict(f"alias '{alias}' has no earlier target to roll back to", param="alias")

        return self._commit(change)

    def delete_alias(self, alias: str) -> None:
        def change() -> None:
            if alias not in self._aliases:
                raise not_found("alias", alias, sorted(self._aliases))
            del self._aliases[alias]
            self._alias_history.pop(alias, None)

        self._commit(change)

    # ------------------------------------------------------------------ experiments
    def experiments(self) -> dict[str, Experiment]:
        with self._lock:
            return dict(self._experiments)

    def experiment(self, name: str) -> Experiment | None:
        with self._lock:
            return self._experiments.get(name)

    def set_experiment(self, name: str, experiment: Experiment) -> None:
        """Create or replace an experiment (validated by `experiments.define`), stored before it routes."""

        def change() -> None:
            self._experiments[name] = experiment

        self._commit(change)

    def update_experiment(
        self, name: str, update: Callable[[Experiment], Experiment], alias: str | None = None
    ) -> tuple[Experiment, str | None]:
        """Replace experiment `name` by `update(its latest definition)` in one commit; with `alias`, point
        that alias at the updated experiment's winner in the same commit (a conclusion: all or nothing).
        Returns the updated experiment and the alias's previous target."""

        def change() -> tuple[Experiment, str | None]:
            if name not in self._experiments:
                raise NotFound(f"experiment '{name}' not found")
            updated = update(self._experiments[name])
            previous = None
            if alias is not None and updated.winner is not None:
                ref = self.lookup(updated.winner)
                if ref is None:
                    raise not_found("winner", updated.winner, self.available(), param="winner")
                previous = self._set_alias(alias, ref)
            self._experiments[name] = updated
            return updated, previous

        return self._commit(change)

    def delete_experiment(self, name: str) -> None:
        def change() -> None:
            if name not in self._experiments:
                raise NotFound(f"experiment '{name}' not found")
            del self._experiments[name]

        self._commit(change)
