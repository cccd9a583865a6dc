"""Which variant of an experiment serves a caller: a stable hash of (experiment, user) picks a point
in the weights, so one user always lands on the same variant; no user = a fresh random point."""

from __future__ import annotations

import hashlib
import time

from ..registry.refs import AdapterRef
from .definitions import Experiment


def bucket(experiment: str, user: str) -> float:
    """A point in [0, 1) fixed by (experiment, user)."""
    digest = hashlib.sha256(f"{experiment}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(name: str, experiment: Experiment, user: str | None) -> tuple[AdapterRef, str]:
    """The variant for `user` (sticky: a stable hash); random when there is no user."""
    variants = sorted(experiment.variants.items())
    total = sum(w for _, w in variants)
    point = (bucket(name, user) if user else bucket(name, str(time.perf_counter_ns()))) * total
    chosen = variants[-1][0]
    for target, weight in variants:
        point -= weight
        if point < 0:
            chosen = target
            break
    adapter, version = AdapterRef.parse(chosen)
    return AdapterRef(adapter, version or ""), chosen
