"""An experiment's report: each variant's line, and the decision — each variant against the control
(the first), with always-valid intervals (`sequential`) at alpha / (number of comparisons) (Bonferroni),
so the report may be read at any time and the chance that it ever says "promote" for a variant no better
than the control stays <= alpha. Welch's fixed-horizon t-test (scipy) decides instead only when the
experiment declared a planned sample size (`planned_n` scores per variant) and every variant reached it.

Built from per-variant sums, the same on every replica when the sums come from the shared store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import guardrails, sequential
from .definitions import Experiment


@dataclass(frozen=True)
class Summary:
    """Feedback scores of one variant as count, sum and sum of squares (what the shared store keeps)."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    @classmethod
    def of_scores(cls, scores: list[float]) -> Summary:
        return cls(len(scores), math.fsum(scores), math.fsum(s * s for s in scores))

    @property
    def sums(self) -> tuple[int, float, float]:
        return self.n, self.total, self.squares

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class VariantData:
    """What one variant did: counts (requests, errors, prompt and completion tokens, fallback
    assignments), times (TTFT p50, p95, latency p50, p95, seconds) and its feedback."""

    counts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    times: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)
    feedback: Summary = field(default_factory=Summary)
    latency: dict[int, int] = field(default_factory=dict)  # successful requests per guardrails.BUCKETS bucket


def horizon(experiment: Experiment) -> float:
    """Observations (two arms together) where the intervals are tightest: the plan's, else the default."""
    return 2 * experiment.planned_n if experiment.planned_n else sequential.DEFAULT_HORIZON


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def row(variant: str, experiment: Experiment, data: VariantData) -> dict[str, Any]:
    """One variant's line of a report, with its mean feedback's always-valid interval (at alpha)."""
    requests, errors, prompt_tokens, completion_tokens, fallback = data.counts
    ttft_p50, ttft_p95, latency_p50, latency_p95 = data.times
    fb = data.feedback
    interval = None
    if fb.n >= 2:
        mean, var = sequential.mean_var(*fb.sums)
        half = sequential.radius(var / fb.n, fb.n, experiment.alpha, horizon(experiment) / 2)
        interval = [_num(mean - half), _num(mean + half)]
    return {
        "variant": variant,
        "weight": experiment.variants[variant],
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "fallback_requests": fallback,
        "ttft_p50": ttft_p50,
        "ttft_p95": ttft_p95,
        "latency_p50": latency_p50,
        "latency_p95": latency_p95,
        "feedback_count": fb.n,
        "feedback_mean": fb.mean,
        "feedback_interval": interval,
        "cut": experiment.cut.get(variant),
    }


def _verdict(low: float | None, high: float | None, enough: bool) -> str:
    if not enough or low is None or high is None:
        return "not enough feedback"
    return "better" if low > 0 else "worse" if high < 0 else "inconclusive"


def comparisons(experiment: Experiment, data: dict[str, VariantData]) -> list[dict[str, Any]]:
    """Each variant but the control against the control, always valid at alpha / comparisons."""
    control = data[experiment.control].feedback
    others = [v for v in experiment.variants if v != experiment.control]
    level = experiment.alpha / max(1, len(others))
    out = []
    for variant in others:
        fb = data[variant].feedback
        enough = min(control.n, fb.n) >= sequential.MIN_SCORES
        diff, low, high, p = (_num(x) for x in sequential.difference(control.sums, fb.sums, level, horizon(experiment)))
        item: dict[str, Any] = {
            "variant": variant,
            "difference": diff,
            "interval": [low, high] if enough else None,
            "p_value": min(1.0, p * len(others)) if enough and p is not None else None,
            "verdict": _verdict(low, high, enough),
        }
        if experiment.planned_n and min(control.n, fb.n) >= experiment.planned_n:
            item["fixed_horizon"] = _welch(control, fb, len(others), experiment.alpha)
        out.append(item)
    return out


def _welch(control: Summary, fb: Summary, comparisons: int, alpha: float) -> dict[str, Any]:
    from scipy import stats as st

    (ma, va), (mb, vb) = sequential.mean_var(*control.sums), sequential.mean_var(*fb.sums)
    test = st.ttest_ind_from_stats(mb, math.sqrt(vb), fb.n, ma, math.sqrt(va), control.n, equal_var=False)
    p = min(1.0, float(test.pvalue) * comparisons) if not math.isnan(test.pvalue) else 1.0
    return {"p_value": p, "verdict": ("better" if mb > ma else "worse") if p < alpha else "inconclusive"}


def decide(experiment: Experiment, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision and why: promote the best variant shown better than the control; keep the control
    when every other variant is shown worse; else keep running."""
    fixed = bool(items) and all("fixed_horizon" in item for item in items)
    verdicts = {item["variant"]: (item["fixed_horizon"] if fixed else item)["verdict"] for item in items}
    verdicts.update({v: "cut off" for v in experiment.cut if v in verdicts})  # a guardrail removed it
    k = len(items)
    if fixed:
        how = f"Welch's t-test at the planned {experiment.planned_n} scores per variant (fixed horizon)"
    else:
        how = "always-valid confidence sequence (asymptotic, Waudby-Smith et al.)"
    method = f"{how}, alpha {experiment.alpha:g}" + (f", Bonferroni over {k} comparisons" if k > 1 else "")
    means = {item["variant"]: item["difference"] for item in items}
    better = sorted((v for v, verdict in verdicts.items() if verdict == "better"), key=lambda v: -(means[v] or 0))
    base = {"control": experiment.control, "method": method, "comparisons": items}
    if not items:
        return {**base, "decision": "keep running", "winner": None, "reason": "only one variant"}
    if better:
        winner = better[0]
        item = next(i for i in items if i["variant"] == winner)
        reason = f"{winner} scores {item['difference']:+.3f} over {experiment.control}" + (
            f" (always-valid interval {item['interval'][0]:+.3f} .. {item['interval'][1]:+.3f})" if not fixed else ""
        )
        return {**base, "decision": "promote", "winner": winner, "reason": reason}
    if all(v in ("worse", "cut off") for v in verdicts.values()):
        reason = f"every other variant scores lower than {experiment.control} or was cut off by a guardrail"
        return {**base, "decision": "keep the control", "winner": experiment.control, "reason": reason}
    short = [v for v, verdict in verdicts.items() if verdict == "not enough feedback"]
    if short:
        reason = f"not enough feedback yet ({sequential.MIN_SCORES} scores per variant needed): {', '.join(short)}"
    else:
        reason = "no variant differs from the control with confidence yet"
    return {**base, "decision": "keep running", "winner": None, "reason": reason}


def report(name: str, experiment: Experiment, data: dict[str, VariantData]) -> dict[str, Any]:
    """The report (JSON): the definition, one line per variant in order, the comparisons and the decision."""
    data = {v: data.get(v, VariantData()) for v in experiment.variants}
    decision = decide(experiment, comparisons(experiment, data))
    best = min((i["p_value"] for i in decision["comparisons"] if i["p_value"] is not None), default=None)
    recommendation = decision["decision"] + (f" {decision['winner']}" if decision["decision"] == "promote" else "")
    return {
        "experiment": name,
        "state": experiment.state,
        "concluded": {"winner": experiment.winner, "alias": experiment.alias, "at": experiment.ended}
        if experiment.state != "running"
        else None,
        "sticky": experiment.sticky,
        "alpha": experiment.alpha,
        "planned_n": experiment.planned_n,
        "variants": [row(v, experiment, d) for v, d in data.items()],
        **decision,
        "guardrails": {
            "limits": experiment.guardrails.as_dict() if experiment.guardrails else None,
            "events": [{"variant": v, **record} for v, record in experiment.cut.items()],
            "crossing": guardrails.check(experiment, data) if experiment.state == "running" else [],
        },
        "significant": decision["decision"] != "keep running",
        "p_value": best,
        "recommendation": f"{recommendation}: {decision['reason']}",
    }
