"""Experiment statistics and feedback ids in PostgreSQL, for replicas sharing one registry.

Each replica adds its outcomes to per-variant counters in small batches (every `flush_s`, never per
token): requests, errors, tokens, TTFT and latency histogram buckets, feedback count/sum/sum of
squares. Completion ids are stored with their route and an expiry, so `/v1/feedback` works on any
replica. A report reads the counters every replica wrote, so it gives the same numbers anywhere
(after the flush interval); percentiles come from the buckets (the bucket's upper bound), and
the decision from the feedback's count, sum and sum of squares (all its tests need).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NotFound, RegistryUnavailable
from ..registry.refs import AdapterRef
from .decision import Summary, VariantData, report
from .definitions import Experiment
from .guardrails import BUCKETS, bucket_of
from .stats import Counts, ExperimentStats, Outcome

if TYPE_CHECKING:
    from ..registry.postgres import PostgresStore
    from ..routing import Route

logger = logging.getLogger(__name__)


def bucket_percentile(counts: dict[int, int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (None without samples)."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= q * total:
            return BUCKETS[index] if math.isfinite(BUCKETS[index]) else BUCKETS[-2]
    return None


@dataclass
class _Delta(Counts):
    """What this replica adds to a variant's counters at the next flush."""

    buckets: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))


def _served(route: Route) -> tuple[str, str]:
    return (route.ref.name, route.ref.version) if route.ref is not None else ("base", "")


class SharedExperimentStats(ExperimentStats):
    """ExperimentStats whose counters and completion ids live in PostgreSQL (see the module doc)."""

    def __init__(self, store: PostgresStore, flush_s: float = 1.0, ttl_s: float = 7 * 86400) -> None:
        super().__init__()
        self.store = store
        self.ttl_s = ttl_s
        self._pending: dict[tuple[str, str], _Delta] = defaultdict(_Delta)
        self._pending_ids: list[tuple[str, Route]] = []
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(flush_s,), name="switchboard-stats", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.flush()
        except RegistryUnavailable as exc:
            logger.warning("experiment statistics of this replica's last second are lost: %s", exc.message)

    # ------------------------------------------------------------------ what happens on this replica
    def record(self, experiment: str, variant: str, outcome: Outcome) -> None:
        with self._lock:
            delta = self._pending[(experiment, variant)]
            delta.add(outcome)
            for kind, seconds in (("ttft", outcome.ttft), ("latency", outcome.latency)):
                if seconds is not None:
                    delta.buckets[(kind, bucket_of(seconds))] += 1

    def remember(self, completion_id: str, route: Route) -> None:
        with self._lock:  # feedback looks completions up in PostgreSQL only
            self._pending_ids.append((completion_id, route))

    def feedback(self, completion_id: str, score: float) -> Route:
        self.flush()  # this replica's own recent completions first
        route = self._route_of(completion_id)
        if route.experiment:
            with self.store.connection() as conn:
                conn.execute(
                    "INSERT INTO sb_variant_stats (experiment, variant, feedback_count, feedback_sum, feedback_sumsq) "
                    "VALUES (%s, %s, 1, %s, %s) ON CONFLICT (experiment, variant) DO UPDATE SET "
                    "feedback_count = sb_variant_stats.feedback_count + 1, "
                    "feedback_sum = sb_variant_stats.feedback_sum + excluded.feedback_sum, "
                    "feedback_sumsq = sb_variant_stats.feedback_sumsq + excluded.feedback_sumsq",
                    (route.experiment, route.variant, score, score * score),
                )
        return route

    def _route_of(self, completion_id: str) -> Route:
        from ..routing import Route

        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT adapter, version, experiment, variant FROM sb_completions WHERE id = %s AND expires_at > now()",
                (completion_id,),
            ).fetchone()
        if row is None:
            raise NotFound(f"completion '{completion_id}' is unknown (or too old to take feedback)", param="id")
        adapter, version, experiment, variant = row
        return Route(AdapterRef(adapter, version) if adapter != "base" else None, experiment, variant)

    # ------------------------------------------------------------------ every replica's, from PostgreSQL
    def report(self, name: str, experiment: Experiment) -> dict[str, Any]:
        self.flush()
        with self.store.connection() as conn:
            counters = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT variant, requests, errors, prompt_tokens, completion_tokens, fallback, feedback_count, "
                    "feedback_sum, feedback_sumsq FROM sb_variant_stats WHERE experiment = %s",
                    (name,),
                )
            }
            buckets: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
            for variant, kind, index, count in conn.execute(
                "SELECT variant, kind, bucket, count FROM sb_variant_buckets WHERE experiment = %s", (name,)
            ):
                buckets[(variant, kind)][index] = count
        data = {}
        for variant in experiment.variants:
            requests, errors, prompt, completion, fallback, n, total, sumsq = counters.get(variant, (0,) * 8)
            data[variant] = VariantData(
                (int(requests), int(errors), int(prompt), int(completion), int(fallback)),
                (
                    bucket_percentile(buckets[(variant, "ttft")], 0.5),
                    bucket_percentile(buckets[(variant, "ttft")], 0.95),
                    bucket_percentile(buckets[(variant, "latency")], 0.5),
                    bucket_percentile(buckets[(variant, "latency")], 0.95),
                ),
                Summary(int(n), float(total), float(sumsq)),
                dict(buckets[(variant, "latency")]),
            )
        return report(name, experiment, data)

    # ------------------------------------------------------------------ batching
    def _run(self, flush_s: float) -> None:
        while not self._stop.wait(flush_s):
            try:
                self.flush()
            except RegistryUnavailable as exc:  # kept and retried at the next flush
                logger.warning("experiment statistics not flushed: %s", exc.message)

    def flush(self) -> None:
        """Write this replica's pending counters and completion ids (one transaction)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(_Delta)
                ids, self._pending_ids = self._pending_ids, []
            if not pending and not ids:
                return
            try:
                self._write(pending, ids)
            except BaseException:
                with self._lock:  # put them back for the next flush
                    for key, delta in pending.items():
                        self._merge(self._pending[key], delta)
                    self._pending_ids[:0] = ids
                raise

    @staticmethod
    def _merge(into: _Delta, delta: _Delta) -> None:
        into.merge(delta)
        for key, count in delta.buckets.items():
            into.buckets[key] += count

    def _write(self, pending: dict[tuple[str, str], _Delta], ids: list[tuple[str, Route]]) -> None:
        expires = time.time() + self.ttl_s
        with self.store.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sb_variant_stats (experiment, variant, requests, errors, prompt_tokens, "
                "completion_tokens, fallback) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (experiment, variant) "
                "DO UPDATE SET requests = sb_variant_stats.requests + excluded.requests, "
                "errors = sb_variant_stats.errors + excluded.errors, "
                "prompt_tokens = sb_variant_stats.prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = sb_variant_stats.completion_tokens + excluded.completion_tokens, "
                "fallback = sb_variant_stats.fallback + excluded.fallback",
                [
                    (e, v, d.requests, d.errors, d.prompt_tokens, d.completion_tokens, d.fallback)
                    for (e, v), d in pending.items()
                ],
            )
            cur.executemany(
                "INSERT INTO sb_variant_buckets (experiment, variant, kind, bucket, count) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (experiment, variant, kind, bucket) DO UPDATE "
                "SET count = sb_variant_buckets.count + excluded.count",
                [(e, v, kind, index, n) for (e, v), d in pending.items() for (kind, index), n in d.buckets.items()],
            )
            cur.executemany(
                "INSERT INTO sb_completions (id, adapter, version, experiment, variant, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (id) DO NOTHING",
                [
                    (
                        cid,
                        r.ref.name if r.ref else "base",
                        r.ref.version if r.ref else "",
                        r.experiment,
                        r.variant,
                        expires,
                    )
                    for cid, r in ids
                ],
            )
            cur.execute("DELETE FROM sb_completions WHERE expires_at < now()")
