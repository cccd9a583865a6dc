"""Which variant of an experiment serves a request.

The sticky key (`Experiment.sticky`): "user" — the OpenAI `user`, else the experiment_user_header;
"header:<Name>" — that request header; "none" — no key. A stable hash of (experiment, key) picks a point
in [0, 1) that is mapped onto the cumulative weights, so one key always lands on the same variant and
changing weights moves only the keys near a boundary. No key: a fresh random point. A sticky experiment's
request without its key is a *fallback* (random, and counted apart in the report), so a client that forgot
to send its key shows up instead of silently spreading one user over every variant.

The weights are laid out by variant name (not by the order written, which only names the control), so the
users of an experiment defined before the control was the first variant keep their variant.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from ..registry.refs import AdapterRef
from .definitions import Experiment, Sticky

# how a request was assigned: by its key, at random by design (sticky "none"), or at random for want of a key
KEYED, RANDOM, FALLBACK = "keyed", "random", "fallback"


@dataclass(frozen=True)
class Assignment:
    ref: AdapterRef
    variant: str  # name@version, as in the experiment
    basis: str  # KEYED, RANDOM or FALLBACK


def bucket(experiment: str, key: str) -> float:
    """A point in [0, 1) fixed by (experiment, key)."""
    digest = hashlib.sha256(f"{experiment}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sticky_key(sticky: Sticky, user: str | None, headers: Mapping[str, str]) -> str | None:
    """The value that keeps a request on one variant (None: none; `headers` have lower-case names)."""
    if sticky == "user":
        return user or None
    if sticky.startswith("header:"):
        return headers.get(sticky.partition(":")[2].lower()) or None
    return None


def assign(name: str, experiment: Experiment, key: str | None, draw: random.Random | None = None) -> Assignment:
    """The variant for a request whose sticky key is `key` (see the module doc)."""
    variants = sorted((v, w) for v, w in experiment.variants.items() if w > 0)
    if not variants:  # every variant cut off: the control serves
        variants = [(experiment.control, 1.0)]
    if key is not None and experiment.sticky != "none":
        point, basis = bucket(name, key), KEYED
    else:
        point = (draw or random).random()
        basis = RANDOM if experiment.sticky == "none" else FALLBACK
    point *= sum(w for _, w in variants)
    chosen = variants[-1][0]
    for target, weight in variants:
        point -= weight
        if point < 0:
            chosen = target
            break
    adapter, version = AdapterRef.parse(chosen)
    return Assignment(AdapterRef(adapter, version or ""), chosen, basis)
