"""Services: what the HTTP layer, the dir watcher and start-up talk to (settings, engine, registry,
residency, router, metrics, experiment statistics), and the one path for every registry change.

Every change (register, unregister, alias, experiment) goes through `_change`: one lock, so changes
apply one at a time; the registry's disk write off the event loop; and one count per action in
`switchboard_registry_changes_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import faults, tenants
from .config import Settings
from .engine.base import Engine, GenerationOutput, GenerationRequest
from .engine.residency import Residency
from .errors import NotFound, SwitchboardError
from .experiments import CONCLUDED, RUNNING, STOPPED, Experiment, ExperimentStats, define
from .faults import Fault
from .limits import Limiter
from .metrics import Metrics
from .registry import AdapterRef, Registry
from .routing import Router
from .tenants import Principal
from .tracing import Tracing
from .validation import BaseModelInfo, check_fits, read_adapter, validate_adapter

logger = logging.getLogger(__name__)

T = TypeVar("T")
GUARDRAIL_INTERVAL_S = 1.0  # how often each replica checks the running experiments' guardrails


@dataclass
class Services:
    settings: Settings
    engine: Engine
    registry: Registry
    residency: Residency
    router: Router
    base_info: BaseModelInfo
    metrics: Metrics
    experiments: ExperimentStats
    faults: dict[str, Fault] = field(default_factory=faults.load)  # tests only (faults.py)
    started_at: int = field(default_factory=lambda: int(time.time()))
    ready: bool = False
    draining: bool = False  # SIGTERM: /ready is 503 and new inference requests too; in-flight ones finish
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inflight: set[str] = field(default_factory=set)  # engine request ids being generated
    tracing: Tracing | None = None  # OpenTelemetry, when configured (tracing.py)
    limiter: Limiter = field(default_factory=Limiter)  # the keys' limits on this replica

    async def _change(self, action: str, apply: Callable[[], T]) -> T:
        """Apply one registry change (persisted by the registry before it is visible), counted."""
        async with self.admin_lock:
            result = await asyncio.to_thread(apply)
            self.metrics.registry_changes.labels(action).inc()
            return result

    # ------------------------------------------------------------------ adapters
    async def register(
        self,
        name: str,
        path: str | Path,
        version: str | None = None,
        *,
        pinned: bool = False,
        alias: str | None = None,
        trusted: bool = False,
    ) -> AdapterRef:
        """Validate, load, persist, then route: the version is served only once all of that succeeded.

        `trusted` skips the adapter-root check (adapters given on the command line or in the adapter dir).
        """
        async with self.admin_lock:
            ref = self.registry.next_ref(name, version)
            if trusted:
                resolved = Path(path).resolve()
                info = await asyncio.to_thread(read_adapter, resolved)
                check_fits(info, self.base_info, self.settings.max_lora_rank)
            else:
                info = await asyncio.to_thread(
                    validate_adapter,
                    path,
                    self.settings.effective_adapter_roots(),
                    self.base_info,
                    self.settings.max_lora_rank,
                )
                resolved = info.path
            content = await asyncio.to_thread(info.content_hash)
            same = self.registry.current_if_same(name, content) if version is None and alias is None else None
            if same is not None:
                logger.info("adapter %s: the same files as %s; nothing registered", name, same)
                return same
            await self.residency.load(ref, resolved, pinned)
            try:
                # an auto-numbered version is allocated again inside the store's transaction: with a
                # registry shared by replicas another one may have taken `ref` meanwhile
                committed = await asyncio.to_thread(
                    self.registry.add, name, resolved, version, pinned=pinned, alias=alias, content=content
                )
            except BaseException:
                await self.residency.retire(ref)
                raise
            if committed != ref:
                self.residency.track(committed, resolved, pinned)  # before any await: it is routable now
                await self.residency.retire(ref)
                await self.residency.load(committed, resolved, pinned)
            self.metrics.registry_changes.labels("register").inc()
            logger.info("registered adapter %s from %s", committed, resolved)
            return committed

    async def unregister(self, name: str, version: str | None = None) -> list[AdapterRef]:
        async with self.admin_lock:
            refs = await asyncio.to_thread(self.registry.remove, name, version)
            for ref in refs:
                await self.residency.retire(ref)
                self.metrics.forget(ref.name, ref.version)
            self.metrics.registry_changes.labels("remove").inc()
            logger.info("removed adapter(s) %s", ", ".join(map(str, refs)))
            return refs

    # ------------------------------------------------------------------ aliases
    async def set_alias(self, alias: str, target: str) -> tuple[AdapterRef, str | None]:
        """Point `alias` at `target` (name@version, or a name's current version); returns (ref, previous)."""
        ref, previous = await self._change("alias", lambda: self.registry.set_alias(alias, target))
        logger.info("alias %s -> %s (was %s)", alias, ref, previous)
        return ref, previous

    async def rollback_alias(self, alias: str) -> AdapterRef:
        ref = await self._change("alias", lambda: self.registry.rollback_alias(alias))
        logger.info("alias %s rolled back to %s", alias, ref)
        return ref

    async def delete_alias(self, alias: str) -> None:
        await self._change("alias", lambda: self.registry.delete_alias(alias))
        logger.info("alias %s deleted", alias)

    # ------------------------------------------------------------------ experiments
    async def put_experiment(self, name: str, variants: dict[str, float], sticky: str, **plan: Any) -> Experiment:
        """Create or replace experiment `name`; `plan`: `define`'s keyword options (alpha, planned_n, ...)."""

        def apply() -> Experiment:
            experiment = define(self.registry, name, variants, sticky, **plan)
            self.registry.set_experiment(name, experiment)
            return experiment

        experiment = await self._change("experiment", apply)
        logger.info("experiment %s: %s", name, experiment.variants)
        return experiment

    async def end_experiment(
        self, name: str, winner: str | None = None, alias: str | None = None
    ) -> tuple[Experiment, str | None, str | None]:
        """Stop experiment `name` (no winner: the control serves its requests from now on) or conclude it
        with `winner`: in one registry change, the alias it tests (`alias`, else the one it was created
        with, else the only alias pointing at one of its variants) moves to the winner and the experiment
        is concluded; its statistics stay for the report. Returns (experiment, alias moved, its previous
        target)."""
        experiment = self.registry.experiment(name)
        if experiment is None:
            raise NotFound(f"experiment '{name}' not found")
        if winner is not None:
            ref = self.registry.lookup(winner)
            winner = str(ref) if ref is not None and str(ref) in experiment.variants else winner
            alias = alias or experiment.alias or self._tested_alias(experiment)
        else:
            alias = None
        state = CONCLUDED if winner is not None else STOPPED
        done, previous = await self._change(
            "experiment", lambda: self.registry.update_experiment(name, lambda e: e.end(state, winner, alias), alias)
        )
        logger.info("experiment %s %s (winner %s; alias %s, was %s)", name, state, winner, alias, previous)
        return done, alias, previous

    def _tested_alias(self, experiment: Experiment) -> str | None:
        """The one alias that points at a variant of `experiment` (None if none or several)."""
        found = [a for a, target in self.registry.aliases().items() if target in experiment.variants]
        return found[0] if len(found) == 1 else None

    async def check_guardrails(self) -> int:
        """Cut off every variant that crossed a guardrail of its running experiment (the report's
        `guardrails.crossing`, from the statistics every replica shares): weight 0, recorded with the reason
        and time in one registry change, logged and counted. Returns how many this call cut off."""
        done = 0
        for name, experiment in self.registry.experiments().items():
            if experiment.state != RUNNING or experiment.guardrails is None:
                continue
            report = await asyncio.to_thread(self.experiments.report, name, experiment)
            for crossing in report["guardrails"]["crossing"]:
                variant, guardrail, reason = crossing["variant"], crossing["guardrail"], crossing["reason"]
                if await self._cut_off(name, variant, guardrail, reason):
                    done += 1
                    self.metrics.guardrail_events.labels(name, variant, guardrail).inc()
                    logger.warning(
                        "experiment %s: variant %s cut off by guardrail %s: %s", name, variant, guardrail, reason
                    )
        return done

    async def _cut_off(self, name: str, variant: str, guardrail: str, reason: str) -> bool:
        """One registry change: `variant` of experiment `name` cut off; False if it was already (another
        replica was first)."""

        def apply() -> bool:
            newly: list[bool] = []

            def update(experiment: Experiment) -> Experiment:
                updated = experiment.cut_off(variant, guardrail, reason)
                newly.append(updated is not experiment)
                return updated

            self.registry.update_experiment(name, update)
            return newly[-1]

        return await self._change("guardrail", apply)

    async def watch_guardrails(self, interval_s: float = GUARDRAIL_INTERVAL_S) -> None:
        """Check the guardrails every `interval_s` seconds until cancelled (started by the app)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check_guardrails()
            except SwitchboardError as exc:  # e.g. the shared registry is down: try again next time
                logger.warning("guardrails not checked: %s", exc.message)

    async def delete_experiment(self, name: str) -> None:
        await self._change("experiment", lambda: self.registry.delete_experiment(name))
        logger.info("experiment %s deleted", name)

    # ------------------------------------------------------------------ keys (tenants)
    async def create_key(
        self, name: str, allow: list[str], rpm: int | None, tpm: int | None, max_streams: int | None
    ) -> tuple[Principal, str]:
        """A new API key, stored (hashed) before it is accepted: (its principal, the key, shown only now)."""
        principal, secret = tenants.define(name, allow, rpm, tpm, max_streams)
        await self._change("key", lambda: self.registry.add_key(principal))
        logger.info("key %s created (allow %s)", name, ", ".join(allow) or "everything")
        return principal, secret

    async def revoke_key(self, name: str) -> Principal:
        """Refuse key `name` from the next request on (other replicas: once they synced)."""
        principal = await self._change("key", lambda: self.registry.revoke_key(name))
        self.limiter.forget(name)
        self.metrics.forget_key(name)
        logger.info("key %s revoked", name)
        return principal

    # ------------------------------------------------------------------ replicas
    async def sync(self) -> None:
        """Take the registry as other replicas left it (a shared store told us it changed): versions
        they added become loadable here before they are routable (current and pinned ones are loaded
        now, after this replica's own validation); versions they removed are retired."""
        async with self.admin_lock:  # read under the lock: a change of ours can't slip in between
            state = await asyncio.to_thread(self.registry.stored_state)
            stored = Registry.of_state(state)
            added = {r: e for r in stored.refs() if self.registry.entry(r) is None and (e := stored.entry(r))}
            removed = [r for r in self.registry.refs() if stored.entry(r) is None]
            for ref, entry in added.items():
                self.residency.track(ref, entry.path, entry.pinned)
            self.registry.refresh(state)
            for ref in removed:
                await self.residency.retire(ref)
                self.metrics.forget(ref.name, ref.version)
            warm = {c for c in (stored.current(n) for n in stored.names()) if c is not None}
            for ref, entry in added.items():
                try:
                    info = await asyncio.to_thread(read_adapter, entry.path)
                    check_fits(info, self.base_info, self.settings.max_lora_rank)
                    if ref in warm or entry.pinned:
                        await self.residency.load(ref, entry.path, entry.pinned)
                except SwitchboardError as exc:
                    logger.error("adapter %s (registered by another replica) cannot be served here: %s", ref, exc)
                    self.residency.refuse(ref, exc.message)
            if added or removed:
                logger.info(
                    "registry synced: +%s -%s", ", ".join(map(str, added)) or "0", ", ".join(map(str, removed)) or "0"
                )

    # ------------------------------------------------------------------ serving
    async def generate(self, ref: AdapterRef | None, gen: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        """The engine's stream for `gen`, holding `ref` resident (and reloading it if evicted) throughout."""
        if self.faults and ref is not None:
            await faults.inject(self.faults, str(ref))
        async with self.residency.lease(ref):
            self.inflight.add(gen.request_id)
            try:
                async for out in self.engine.generate(gen):
                    yield out
            finally:
                self.inflight.discard(gen.request_id)

    def drain(self) -> None:
        """Stop taking requests: /ready answers 503 and new inference requests get 503 (ShuttingDown)."""
        self.draining, self.ready = True, False

    def abort_all(self) -> int:
        """End every request still generating (the drain's grace period is over): each ends with
        finish_reason "abort", which a stream reports as an error event before [DONE]. Returns how many."""
        ids = list(self.inflight)
        for request_id in ids:
            self.engine.abort(request_id)
        return len(ids)

    async def restore(self, adapters: dict[str, Path]) -> None:
        """At start: bring back the persisted registry, (re)register the static `adapters` whose dir
        changed, then load the current and pinned versions up to the budget (the rest load on first use)."""
        registry, residency = self.registry, self.residency
        for ref in registry.refs():
            entry = registry.entry(ref)
            if entry is not None:
                residency.track(ref, entry.path, entry.pinned)
        for name, path in adapters.items():
            current = registry.current(name)
            current_entry = registry.entry(current) if current else None
            if current_entry is not None and current_entry.path == path.resolve():
                continue
            try:
                await self.register(name, path, trusted=True)
            except SwitchboardError as exc:
                logger.error("not serving adapter %s: %s", name, exc.message)
        warm = [r for r in registry.refs() if (entry := registry.entry(r)) is not None and entry.pinned]
        warm += [c for c in (registry.current(n) for n in registry.names()) if c is not None and c not in warm]
        for ref in warm[: residency.max_resident]:
            entry = registry.entry(ref)
            if entry is None or str(ref) in residency.resident():
                continue
            try:
                await residency.load(ref, entry.path, entry.pinned)
            except SwitchboardError as exc:
                logger.error("adapter %s could not be loaded at start: %s", ref, exc.message)
                residency.track(ref, entry.path, entry.pinned)
