"""What each experiment variant did, in memory: requests, errors, tokens, latencies and feedback
scores; the completion ids that may still take feedback; the report is `decision.report`'s."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .decision import Summary, VariantData, report
from .definitions import Experiment
from .guardrails import bucket_of

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
    latency_buckets: dict[int, int] = field(default_factory=dict)


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
                index = bucket_of(outcome.latency)
                stats.latency_buckets[index] = stats.latency_buckets.get(index, 0) + 1

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
        data: dict[str, VariantData] = {}
        with self._lock:
            for variant in experiment.variants:
                s = self._stats.get((name, variant), VariantStats())
                q = [percentile(d, p) for d in (s.ttft, s.latency) for p in (0.5, 0.95)]
                scores = Summary.of_scores(list(s.scores))
                data[variant] = VariantData(s.as_tuple(), (q[0], q[1], q[2], q[3]), scores, dict(s.latency_buckets))
        return report(name, experiment, data)
