"""What each experiment variant did, in memory: requests, errors, tokens, latencies and feedback
scores; the completion ids that may still take feedback; and the report with Welch's t-test (scipy)
of the best-scoring variant against the control (the first variant)."""

from __future__ import annotations

import math
import statistics
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .definitions import Experiment

if TYPE_CHECKING:
    from ..routing import Route


@dataclass
class VariantStats:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


def percentile(values: deque[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ExperimentStats:
    """Thread-safe per-variant statistics and the completion-id memory for `/v1/feedback`."""

    def __init__(self, completions_remembered: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], VariantStats] = {}
        self._completions: OrderedDict[str, Route] = OrderedDict()
        self._max = completions_remembered

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

    def remember(self, completion_id: str, route: Route) -> None:
        """Which route served `completion_id`, so feedback on it counts for that variant."""
        with self._lock:
            self._completions[completion_id] = route
            while len(self._completions) > self._max:
                self._completions.popitem(last=False)

    def feedback(self, completion_id: str, score: float) -> Route:
        """Record `score` for the variant that served `completion_id`; returns that route."""
        with self._lock:
            route = self._completions.get(completion_id)
            if route is None:
                raise NotFound(f"completion '{completion_id}' is unknown (or too old to take feedback)", param="id")
            if route.experiment:
                self._stats.setdefault((route.experiment, route.variant), VariantStats()).scores.append(score)
            return route

    def report(self, name: str, experiment: Experiment) -> dict[str, Any]:
        from scipy import stats as st

        rows: list[dict[str, Any]] = []
        scores: list[list[float]] = []
        with self._lock:
            for variant, weight in sorted(experiment.variants.items()):
                s = self._stats.get((name, variant), VariantStats())
                own = list(s.scores)
                mean = statistics.fmean(own) if own else None
                ci = None
                if mean is not None and len(own) >= 2:
                    half = st.t.ppf(0.975, len(own) - 1) * statistics.stdev(own) / math.sqrt(len(own))
                    ci = [mean - half, mean + half]
                scores.append(own)
                rows.append(
                    {
                        "variant": variant,
                        "weight": weight,
                        "requests": s.requests,
                        "errors": s.errors,
                        "prompt_tokens": s.prompt_tokens,
                        "completion_tokens": s.completion_tokens,
                        "ttft_p50": percentile(s.ttft, 0.5),
                        "ttft_p95": percentile(s.ttft, 0.95),
                        "latency_p50": percentile(s.latency, 0.5),
                        "latency_p95": percentile(s.latency, 0.95),
                        "feedback_count": len(own),
                        "feedback_mean": mean,
                        "feedback_ci95": ci,
                    }
                )
        return {"experiment": name, "variants": rows, "sticky": experiment.sticky, **compare(rows, scores)}


def compare(rows: list[dict[str, Any]], scores: list[list[float]]) -> dict[str, Any]:
    """Welch's t-test of the best-scoring variant against the first (the control); `scores[i]` are
    row i's feedback scores."""
    from scipy import stats as st

    if len(rows) < 2:
        return {"significant": False, "p_value": None, "recommendation": "keep running: only one variant"}
    control = rows[0]
    best_index = max(
        range(1, len(rows)),
        key=lambda i: rows[i]["feedback_mean"] if rows[i]["feedback_mean"] is not None else -math.inf,
    )
    best = rows[best_index]
    a, b = scores[0], scores[best_index]
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
