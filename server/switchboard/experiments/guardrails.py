"""Guardrails: limits on a variant relative to the control, checked while the experiment runs. A variant
that crosses one with always-valid confidence is cut off (weight 0, recorded with the guardrail, the
reason and the time; `Services.check_guardrails` applies it), so a broken variant stops getting traffic
without anyone watching.

Each limit is tested at alpha / (comparisons x limits) (Bonferroni), with the same always-valid intervals
as the report (`sequential`), tuned to be tightest after `HORIZON` requests: a guardrail should act early.
- `max_error_rate_increase`: cut when the variant's error rate exceeds the control's by more than this
  (the interval of the difference lies above the limit);
- `max_latency_p95_ratio`: cut when the variant's p95 latency is above ratio x the control's: from the
  latency histograms, the control's p95 is bounded above (q: the smallest bucket bound that more than 95 %
  of its requests stay under, with confidence), then the variant's share of requests slower than the
  first bucket bound >= ratio x q is shown to exceed 5 % (half the level for each step);
- `max_feedback_drop`: cut when the variant's mean feedback is below the control's by more than this.
Nothing is judged before `min_requests` requests (and `sequential.MIN_SCORES` scores) on both sides.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest
from . import sequential

if TYPE_CHECKING:
    from .decision import VariantData
    from .definitions import Experiment

HORIZON = 200  # requests (both sides) where a guardrail's interval is tightest
# latency histogram bounds, seconds (the shared store's buckets; the last is +inf)
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, math.inf)


def bucket_of(seconds: float) -> int:
    return next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)


@dataclass(frozen=True)
class Guardrails:
    """Per-experiment limits on every variant but the control, relative to the control (None: not set)."""

    max_error_rate_increase: float | None = None  # e.g. 0.05: 5 points more errors than the control
    max_latency_p95_ratio: float | None = None  # e.g. 1.5: a p95 latency 50 % above the control's
    max_feedback_drop: float | None = None  # e.g. 0.5: mean feedback 0.5 below the control's
    min_requests: int = 20

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Guardrails | None:
        if not data:
            return None
        limits = cls(**data)
        for name in ("max_error_rate_increase", "max_latency_p95_ratio", "max_feedback_drop"):
            value = getattr(limits, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise InvalidRequest(f"guardrail {name} must be a number >= 0; got {value}", param="guardrails")
        if limits.max_latency_p95_ratio is not None and limits.max_latency_p95_ratio < 1:
            raise InvalidRequest("guardrail max_latency_p95_ratio must be >= 1", param="guardrails")
        if limits.min_requests < 1:
            raise InvalidRequest("guardrail min_requests must be >= 1", param="guardrails")
        return limits

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count(self) -> int:
        limits = (self.max_error_rate_increase, self.max_latency_p95_ratio, self.max_feedback_drop)
        return sum(limit is not None for limit in limits)


def _above(counts: dict[int, int], index: int) -> int:
    """Requests slower than BUCKETS[index]."""
    return sum(n for i, n in counts.items() if i > index)


def error_check(control: VariantData, variant: VariantData, limit: float, level: float) -> str | None:
    """Why the variant's error rate is above the control's by more than `limit` (None: not shown)."""
    (n_c, e_c), (n_v, e_v) = control.counts[:2], variant.counts[:2]
    diff, low, _ = sequential.rate_difference((e_c, n_c), (e_v, n_v), level, HORIZON)
    if not low > limit:
        return None
    return (
        f"error rate {e_v / n_v:.1%} vs the control's {e_c / n_c:.1%}: {float(diff):+.1%} (at least "
        f"{float(low):+.1%}), over the limit of +{limit:.1%}"
    )


def feedback_check(control: VariantData, variant: VariantData, limit: float, level: float) -> str | None:
    """Why the variant's mean feedback is below the control's by more than `limit` (None: not shown)."""
    if min(control.feedback.n, variant.feedback.n) < sequential.MIN_SCORES:
        return None
    diff, _, high, _ = sequential.difference(control.feedback.sums, variant.feedback.sums, level)
    if not high < -limit:
        return None
    return f"mean feedback {float(diff):+.3f} vs the control's (at most {float(high):+.3f}), below -{limit:g}"


def latency_check(control: VariantData, variant: VariantData, ratio: float, level: float) -> str | None:
    """Why the variant's p95 latency is above `ratio` x the control's with confidence (None: not shown)."""
    return _latency(control.latency, variant.latency, ratio, level)


def _latency(control: dict[int, int], variant: dict[int, int], ratio: float, level: float) -> str | None:
    n_c, n_v = sum(control.values()), sum(variant.values())
    if not n_c or not n_v:
        return None
    bound = None
    for i in range(len(BUCKETS) - 1):
        high = sequential.rate_bounds(_above(control, i), n_c, level / 2, HORIZON / 2)[1]
        if high <= 0.05:
            bound = i
            break
    if bound is None:
        return None
    limit = ratio * BUCKETS[bound]
    j = next((i for i in range(len(BUCKETS) - 1) if BUCKETS[i] >= limit), None)
    if j is None:
        return None
    slow = _above(variant, j)
    low = sequential.rate_bounds(slow, n_v, level / 2, HORIZON / 2)[0]
    if low <= 0.05:
        return None
    return (
        f"p95 latency above {BUCKETS[j]:g} s ({slow} of {n_v} requests slower) while the control's is at most "
        f"{BUCKETS[bound]:g} s: more than {ratio:g} x the control's"
    )


def check(experiment: Experiment, data: dict[str, VariantData]) -> list[dict[str, Any]]:
    """Every variant that crosses a guardrail now, with always-valid confidence: [{variant, guardrail,
    reason}], at most one per variant (the first limit crossed). Variants already cut off are skipped."""
    limits = experiment.guardrails
    if limits is None or not limits.count():
        return []
    others = [v for v in experiment.variants if v != experiment.control]
    level = experiment.alpha / (max(1, len(others)) * limits.count())
    control = data[experiment.control]
    found = []
    for variant in others:
        if variant in experiment.cut:
            continue
        mine = data[variant]
        if min(control.counts[0], mine.counts[0]) < limits.min_requests:
            continue
        tests = (
            ("error_rate", limits.max_error_rate_increase, error_check),
            ("latency_p95", limits.max_latency_p95_ratio, latency_check),
            ("feedback", limits.max_feedback_drop, feedback_check),
        )
        for guardrail, limit, test in tests:
            reason = test(control, mine, limit, level) if limit is not None else None
            if reason is not None:
                found.append({"variant": variant, "guardrail": guardrail, "reason": reason})
                break
    return found
