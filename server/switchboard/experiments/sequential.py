"""Always-valid inference: intervals that hold at every sample size at once, so a report may be read (and
acted on) at any time without inflating its error rate — the "peeking problem" of a fixed-sample test
read again and again.

The intervals are asymptotic confidence sequences (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", Annals of Statistics 2024), the
Gaussian-mixture boundary: after t observations an estimate with variance V lies within

    V * 2(t rho^2 + 1) / (t rho^2) * log(sqrt(t rho^2 + 1) / alpha)      (the square of the radius)

of the truth, for every t at once, with probability >= 1 - alpha (asymptotically). `rho` only decides at
which t the interval is tightest (`horizon`, in observations): any fixed value keeps the guarantee.

Everything here takes sums (count, sum, sum of squares), the form the shared store keeps, and works on
floats and on numpy arrays alike (loadtests/sim_experiments.py runs 2,000 experiments at once through it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

DEFAULT_HORIZON = 1000  # observations (both arms together) where the interval is tightest, without a plan
MIN_SCORES = 20  # scores per variant before a comparison may decide anything

Array = Any  # a float or a numpy array of them


def rho2(alpha: float, horizon: float) -> float:
    """The mixture's rho^2 that makes the interval tightest after `horizon` observations (the paper's choice)."""
    log = -2 * math.log(alpha)
    return (log + math.log(log + 1)) / horizon


def radius(var: Array, t: Array, alpha: float, horizon: float = DEFAULT_HORIZON) -> Array:
    """Half-width of the always-valid (1 - alpha) interval of an estimate with variance `var` after `t`
    observations."""
    r = np.asarray(t, dtype=float) * rho2(alpha, horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var * 2 * (r + 1) / r * np.log(np.sqrt(r + 1) / alpha))


def p_value(diff: Array, var: Array, t: Array, alpha: float, horizon: float = DEFAULT_HORIZON) -> Array:
    """The always-valid p-value of "no difference": the smallest level whose interval (with the same rho,
    tuned for `alpha`) excludes 0; P(it ever drops to <= alpha) <= alpha."""
    r = np.asarray(t, dtype=float) * rho2(alpha, horizon)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.sqrt(r + 1) * np.exp(-(diff**2) * r / (2 * var * (r + 1)))
    return np.minimum(1.0, np.where(var > 0, p, np.where(diff == 0, 1.0, 0.0)))


def mean_var(n: Array, total: Array, squares: Array) -> tuple[Array, Array]:
    """Mean and sample variance from count, sum and sum of squares (nan below 1 resp. 2 observations)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        var = np.maximum(0.0, (squares - n * mean * mean) / (n - 1))
    return mean, np.where(n >= 2, var, np.nan)


def difference(
    a: tuple[Array, Array, Array], b: tuple[Array, Array, Array], alpha: float, horizon: float = DEFAULT_HORIZON
) -> tuple[Array, Array, Array, Array]:
    """Mean of b minus mean of a, from each arm's (count, sum, sum of squares): (difference, low, high,
    always-valid p). The variance is Welch's (each arm's own), t the two arms' observations together."""
    (na, ma, va), (nb, mb, vb) = ((arm[0], *mean_var(*arm)) for arm in (a, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = va / na + vb / nb
    diff = mb - ma
    half = radius(var, np.asarray(na) + nb, alpha, horizon)
    return diff, diff - half, diff + half, p_value(diff, var, np.asarray(na) + nb, alpha, horizon)


def rate_difference(
    a: tuple[Array, Array], b: tuple[Array, Array], alpha: float, horizon: float = DEFAULT_HORIZON
) -> tuple[Array, Array, Array]:
    """Rate of b minus rate of a from (events, trials) each: (difference, low, high). The variance uses one
    pseudo-event and one pseudo-non-event per arm, so 0 of 20 and 20 of 20 are not certainties."""
    (xa, na), (xb, nb) = a, b
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = (np.asarray(xa) + 1) / (np.asarray(na) + 2), (np.asarray(xb) + 1) / (np.asarray(nb) + 2)
        var = pa * (1 - pa) / na + pb * (1 - pb) / nb
        diff = np.asarray(xb) / nb - np.asarray(xa) / na
    half = radius(var, np.asarray(na) + nb, alpha, horizon)
    return diff, diff - half, diff + half


def rate_bounds(events: Array, trials: Array, alpha: float, horizon: float = DEFAULT_HORIZON) -> tuple[Array, Array]:
    """Always-valid (low, high) of one rate from its events and trials (pseudo-counts as above)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (np.asarray(events) + 1) / (np.asarray(trials) + 2)
        rate = np.asarray(events) / trials
    half = radius(p * (1 - p) / trials, trials, alpha, horizon)
    return rate - half, rate + half
