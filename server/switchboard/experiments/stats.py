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


@dataclass(frozen=True)
class Outcome:
    """How one request of an experiment variant went (latencies in seconds, None when not reached)."""

    ok: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: float | None = None
    latency: float | None = None
    fallback: bool = False  # a sticky experiment's request without its key, assigned at random


@dataclass
class Counts:
    """The counted part of a variant's outcomes (kept in memory, or summed in PostgreSQL)."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallback: int = 0

    def add(self, outcome: Outcome) -> None:
        self.requests += 1
        self.errors += 0 if outcome.ok else 1
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens
        self.fallback += 1 if outcome.fallback else 0

    def merge(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.fallback += other.fallback

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return self.requests, self.errors, self.prompt_tokens, self.completion_tokens, self.fallback


@dataclass
class VariantStats(Counts):
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

    def close(self) -> None:
        """Nothing to write back: this replica's statistics live and die with it."""

    def record(self, experiment: str, variant: str, outcome: Outcome) -> None:
        with self._lock:
            stats = self._stats.setdefault((experiment, variant), VariantStats())
            stats.add(outcome)
            if outcome.ttft is not None:
                stats.ttft.append(outcome.ttft)
            if outcome.latency is not None:
                stats.latency.append(outcome.latency)

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
        rows: list[dict[str, Any]] = []
        summaries: list[Summary] = []
        with self._lock:
            for variant, weight in experiment.variants.items():
                s = self._stats.get((name, variant), VariantStats())
                summary = Summary.of_scores(list(s.scores))
                summaries.append(summary)
                counts = s.as_tuple()
                times = tuple(percentile(d, q) for d in (s.ttft, s.latency) for q in (0.5, 0.95))
                rows.append(summary_row(variant, weight, counts, times, summary))
        return {"experiment": name, "variants": rows, "sticky": experiment.sticky, **compare(rows, summaries)}


@dataclass(frozen=True)
class Summary:
    """Feedback scores of one variant as count, mean and sample variance (all Welch's test needs)."""

    n: int = 0
    mean: float | None = None
    var: float | None = None

    @classmethod
    def of_scores(cls, scores: list[float]) -> Summary:
        if not scores:
            return cls()
        return cls(len(scores), statistics.fmean(scores), statistics.variance(scores) if len(scores) >= 2 else None)

    @classmethod
    def of_sums(cls, n: int, total: float, squares: float) -> Summary:
        if n == 0:
            return cls()
        mean = total / n
        return cls(n, mean, max(0.0, (squares - n * mean * mean) / (n - 1)) if n >= 2 else None)

    def ci95(self) -> list[float] | None:
        from scipy import stats as st

        if self.mean is None or self.var is None:
            return None
        half = float(st.t.ppf(0.975, self.n - 1)) * math.sqrt(self.var / self.n)
        return [self.mean - half, self.mean + half]


def summary_row(
    variant: str,
    weight: float,
    counts: tuple[int, int, int, int, int],
    times: tuple[float | None, ...],
    summary: Summary,
) -> dict[str, Any]:
    """One variant's line of a report: counts (requests, errors, prompt and completion tokens, fallback
    assignments), times (TTFT p50, p95, latency p50, p95) and the feedback summary."""
    requests, errors, prompt_tokens, completion_tokens, fallback = counts
    ttft_p50, ttft_p95, latency_p50, latency_p95 = times
    return {
        "variant": variant,
        "weight": weight,
        "requests": requests,
        "errors": errors,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "fallback_requests": fallback,
        "ttft_p50": ttft_p50,
        "ttft_p95": ttft_p95,
        "latency_p50": latency_p50,
        "latency_p95": latency_p95,
        "feedback_count": summary.n,
        "feedback_mean": summary.mean,
        "feedback_ci95": summary.ci95(),
    }


def compare(rows: list[dict[str, Any]], summaries: list[Summary]) -> dict[str, Any]:
    """Welch's t-test of the best-scoring variant against the first (the control), from each row's
    feedback summary."""
    from scipy import stats as st

    if len(rows) < 2:
        return {"significant": False, "p_value": None, "recommendation": "keep running: only one variant"}
    control = rows[0]
    best_index = max(
        range(1, len(rows)),
        key=lambda i: rows[i]["feedback_mean"] if rows[i]["feedback_mean"] is not None else -math.inf,
    )
    best = rows[best_index]
    a, b = summaries[0], summaries[best_index]
    if a.n < 2 or b.n < 2 or a.mean is None or b.mean is None or a.var is None or b.var is None:
        return {
            "significant": False,
            "p_value": None,
            "control": control["variant"],
            "candidate": best["variant"],
            "recommendation": "keep running: not enough feedback yet (need at least 2 scores per variant)",
        }
    test = st.ttest_ind_from_stats(b.mean, math.sqrt(b.var), b.n, a.mean, math.sqrt(a.var), a.n, equal_var=False)
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
