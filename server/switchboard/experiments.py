"""A/B experiments between adapter versions: weighted variants, sticky per user, persisted with the
registry; in-memory statistics per variant for the report (requests, errors, tokens, latencies,
feedback) and a significance test on feedback scores (Welch's t-test, scipy)."""

from __future__ import annotations

import hashlib
import math
import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .errors import AdapterNotFound, Conflict, InvalidRequest, NotFound
from .registry import AdapterRef, Registry, check_name

KEY = "experiments"


@dataclass
class VariantStats:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: deque = field(default_factory=lambda: deque(maxlen=5000))
    latency: deque = field(default_factory=lambda: deque(maxlen=5000))
    scores: deque = field(default_factory=lambda: deque(maxlen=100_000))


def _bucket(experiment: str, user: str) -> float:
    digest = hashlib.sha256(f"{experiment}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _pct(values: deque, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Experiments:
    def __init__(self, registry: Registry, completions_remembered: int = 100_000) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], VariantStats] = {}
        self._completions: OrderedDict[str, tuple[str, str, str, str]] = OrderedDict()
        self._max = completions_remembered

    def definitions(self) -> dict[str, Any]:
        return dict(self.registry.extra.get(KEY, {}))

    def get(self, name: str) -> dict[str, Any] | None:
        return self.definitions().get(name)

    def put(self, name: str, variants: dict[str, float], sticky: str = "user") -> dict[str, Any]:
        check_name(name, "experiment name")
        if self.registry.lookup(name) is not None:
            raise Conflict(f"'{name}' is an adapter or alias; an experiment needs its own name", param="name")
        if not variants:
            raise InvalidRequest("an experiment needs at least one variant", param="variants")
        resolved: dict[str, float] = {}
        for target, weight in variants.items():
            if not isinstance(weight, int | float) or weight < 0 or math.isnan(weight):
                raise InvalidRequest(f"weight of {target!r} must be a number >= 0", param="variants")
            ref = self.registry.lookup(target)
            if ref is None:
                available = ", ".join(self.registry.available())
                raise AdapterNotFound(f"variant '{target}' not found; available: {available}", param="variants")
            resolved[str(ref)] = resolved.get(str(ref), 0.0) + float(weight)
        if sum(resolved.values()) <= 0:
            raise InvalidRequest("variant weights must not all be 0", param="variants")
        definition = {"variants": resolved, "sticky": sticky, "updated": time.time()}
        experiments = {**self.definitions(), name: definition}
        self.registry.save_extra(KEY, experiments)  # persisted atomically before it takes effect
        return definition

    def delete(self, name: str) -> None:
        experiments = self.definitions()
        if name not in experiments:
            raise NotFound(f"experiment '{name}' not found")
        del experiments[name]
        self.registry.save_extra(KEY, experiments)

    def assign(self, name: str, user: str | None) -> tuple[AdapterRef, str]:
        """The variant for `user` (sticky: a stable hash); random when there is no user."""
        definition = self.get(name)
        if definition is None:
            raise NotFound(f"experiment '{name}' not found")
        variants = sorted(definition["variants"].items())
        total = sum(w for _, w in variants)
        point = (_bucket(name, user) if user else _bucket(name, str(time.perf_counter_ns()))) * total
        chosen = variants[-1][0]
        for target, weight in variants:
            point -= weight
            if point < 0:
                chosen = target
                break
        name_, version = AdapterRef.parse(chosen)
        return AdapterRef(name_, version or ""), chosen

    # ------------------------------------------------------------------ statistics
    def record(
        self,
        experiment: str,
        variant: str,
        *,
        ok: bool,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        ttft: float | None = None,
        latency: float | None = None,
    ) -> None:
        with self._lock:
            stats = self._stats.setdefault((experiment, variant), VariantStats())
            stats.requests += 1
            stats.errors += 0 if ok else 1
            stats.prompt_tokens += prompt_tokens
            stats.completion_tokens += completion_tokens
            if ttft is not None:
                stats.ttft.append(ttft)
            if latency is not None:
                stats.latency.append(latency)

    def remember(self, completion_id: str, labels: tuple[str, str, str, str]) -> None:
        with self._lock:
            self._completions[completion_id] = labels
            while len(self._completions) > self._max:
                self._completions.popitem(last=False)

    def feedback(self, completion_id: str, score: float) -> tuple[str, str, str, str]:
        with self._lock:
            labels = self._completions.get(completion_id)
            if labels is None:
                raise NotFound(f"completion '{completion_id}' is unknown (or too old to take feedback)", param="id")
            _, _, experiment, variant = labels
            if experiment:
                self._stats.setdefault((experiment, variant), VariantStats()).scores.append(score)
            return labels

    def report(self, name: str) -> dict[str, Any]:
        from scipy import stats as st

        definition = self.get(name)
        if definition is None:
            raise NotFound(f"experiment '{name}' not found")
        rows = []
        with self._lock:
            for variant, weight in sorted(definition["variants"].items()):
                s = self._stats.get((name, variant), VariantStats())
                scores = list(s.scores)
                mean = statistics.fmean(scores) if scores else None
                ci = None
                if len(scores) >= 2:
                    half = st.t.ppf(0.975, len(scores) - 1) * statistics.stdev(scores) / math.sqrt(len(scores))
                    ci = [mean - half, mean + half]
                rows.append(
                    {
                        "variant": variant,
                        "weight": weight,
                        "requests": s.requests,
                        "errors": s.errors,
                        "prompt_tokens": s.prompt_tokens,
                        "completion_tokens": s.completion_tokens,
                        "ttft_p50": _pct(s.ttft, 0.5),
                        "ttft_p95": _pct(s.ttft, 0.95),
                        "latency_p50": _pct(s.latency, 0.5),
                        "latency_p95": _pct(s.latency, 0.95),
                        "feedback_count": len(scores),
                        "feedback_mean": mean,
                        "feedback_ci95": ci,
                        "_scores": scores,
                    }
                )
        result: dict[str, Any] = {"experiment": name, "variants": rows, "sticky": definition["sticky"]}
        result.update(_compare(rows, st))
        for row in rows:
            row.pop("_scores")
        return result


def _compare(rows: list[dict[str, Any]], st: Any) -> dict[str, Any]:
    """Welch's t-test of the best-scoring variant against the first (the control)."""
    if len(rows) < 2:
        return {"significant": False, "p_value": None, "recommendation": "keep running: only one variant"}
    control = rows[0]
    best = max(rows[1:], key=lambda r: r["feedback_mean"] if r["feedback_mean"] is not None else -math.inf)
    a, b = control["_scores"], best["_scores"]
    if len(a) < 2 or len(b) < 2:
        return {
            "significant": False,
            "p_value": None,
            "control": control["variant"],
            "candidate": best["variant"],
            "recommendation": "keep running: not enough feedback yet (need at least 2 scores per variant)",
        }
    test = st.ttest_ind(b, a, equal_var=False)
    p = float(test.pvalue) if not math.isnan(test.pvalue) else 1.0
    significant = p < 0.05
    if significant and best["feedback_mean"] > control["feedback_mean"]:
        advice = f"promote {best['variant']}: feedback {best['feedback_mean']:.3f} vs {control['feedback_mean']:.3f}"
    elif significant:
        advice = f"roll back to {control['variant']}: the candidate scores lower"
    else:
        advice = "keep running: no significant difference yet"
    return {
        "significant": significant,
        "p_value": p,
        "test": "Welch's t-test on feedback scores",
        "control": control["variant"],
        "candidate": best["variant"],
        "recommendation": advice,
    }
