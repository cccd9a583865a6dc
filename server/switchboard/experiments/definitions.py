"""An A/B experiment's definition: weighted variants (concrete adapter versions, in the order written:
the first is the control) and how a caller sticks to one. Definitions are their own section of the
registry's stored state; changing one goes through `Services`, like every registry change."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidRequest
from ..registry.refs import check_name, not_found
from .guardrails import Guardrails

if TYPE_CHECKING:
    from ..registry import Registry

# "user": the OpenAI `user`, else the experiment_user_header (X-User-Id); "none": every request drawn at
# random; "header:<Name>": that request header (e.g. a session id)
Sticky = str
STICKY_HELP = (
    "user: the OpenAI `user` (else the X-User-Id header) keeps a caller on one variant; none: each request "
    "is drawn at random; header:<Name>: that request header (e.g. header:X-Session-Id) is the key"
)
RUNNING, STOPPED, CONCLUDED = "running", "stopped", "concluded"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP token (RFC 9110)


def check_sticky(value: str) -> Sticky:
    """`value` if it is a stickiness this server knows, else a 400 that lists them."""
    if value in ("user", "none"):
        return value
    kind, _, header = value.partition(":")
    if kind == "header" and _HEADER_NAME.match(header):
        return f"header:{header}"
    raise InvalidRequest(
        f"sticky must be 'user', 'none' or 'header:<Name>' (e.g. 'header:X-Session-Id'); got {value!r}",
        param="sticky",
    )


def _variants_of(data: Any) -> dict[str, float]:
    """Stored variants, in order: a list of {"variant", "weight"} (since #18), or the older mapping
    (its order as stored is kept)."""
    if isinstance(data, dict):
        return {str(k): float(v) for k, v in data.items()}
    return {str(item["variant"]): float(item["weight"]) for item in data}


@dataclass(frozen=True)
class Experiment:
    """`variants`: `name@version` -> weight (weights need not sum to 1), in the order written; the first
    is the control every other variant is compared with."""

    variants: dict[str, float]
    sticky: Sticky = "user"
    updated: float = field(default_factory=time.time)
    alpha: float = 0.05  # the most the report's chance of a false "promote" (or cut-off) may be
    planned_n: int | None = None  # feedback scores per variant planned for a fixed-horizon test, if any
    alias: str | None = None  # the alias the experiment tests: `conclude` points it at the winner
    state: str = RUNNING  # running; stopped (the control serves); concluded (the winner serves)
    winner: str | None = None
    ended: float | None = None  # when it was stopped or concluded (Unix time)
    guardrails: Guardrails | None = None
    # variants a guardrail cut off (weight 0): variant -> {guardrail, reason, at (Unix time), weight (before)}
    cut: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def control(self) -> str:
        return next(iter(self.variants))

    def as_dict(self) -> dict[str, Any]:
        # a list, not a mapping: PostgreSQL's jsonb does not keep the keys' order, and the order names the control
        return {
            "variants": [{"variant": v, "weight": w} for v, w in self.variants.items()],
            "control": self.control,
            "sticky": self.sticky,
            "updated": self.updated,
            "alpha": self.alpha,
            "planned_n": self.planned_n,
            "alias": self.alias,
            "state": self.state,
            "winner": self.winner,
            "ended": self.ended,
            "guardrails": self.guardrails.as_dict() if self.guardrails else None,
            "cut": {v: dict(record) for v, record in self.cut.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        sticky = data.get("sticky", "user")
        if sticky == "header":  # accepted but never applied before #18: the user key is what it did
            sticky = "user"
        planned = data.get("planned_n")
        return cls(
            _variants_of(data["variants"]),
            sticky,
            data["updated"],
            float(data.get("alpha", 0.05)),
            int(planned) if planned is not None else None,
            data.get("alias"),
            data.get("state", RUNNING),
            data.get("winner"),
            data.get("ended"),
            Guardrails.of(data.get("guardrails")),
            {str(v): dict(record) for v, record in (data.get("cut") or {}).items()},
        )

    @property
    def serving(self) -> str:
        """The variant every request gets once the experiment is over: the winner, else the control."""
        return self.winner or self.control

    def cut_off(self, variant: str, guardrail: str, reason: str) -> Experiment:
        """This experiment with `variant` cut off by `guardrail` (weight 0, recorded); unchanged if it was."""
        if variant in self.cut or variant not in self.variants or self.state != RUNNING:
            return self
        record = {"guardrail": guardrail, "reason": reason, "at": time.time(), "weight": self.variants[variant]}
        return replace(self, variants={**self.variants, variant: 0.0}, cut={**self.cut, variant: record})

    def end(self, state: str, winner: str | None = None, alias: str | None = None) -> Experiment:
        """This experiment stopped (the control serves) or concluded with `winner` (which then serves),
        with `alias` as the alias it moved."""
        if self.state != RUNNING:
            raise Conflict(f"the experiment is {self.state} already; PUT it again to restart it")
        if winner is not None and winner not in self.variants:
            raise InvalidRequest(
                f"winner {winner!r} is not a variant; the variants: {', '.join(self.variants)}", param="winner"
            )
        return replace(self, state=state, winner=winner, ended=time.time(), alias=alias or self.alias)


def define(
    registry: Registry,
    name: str,
    variants: dict[str, float],
    sticky: Sticky = "user",
    *,
    alpha: float = 0.05,
    planned_n: int | None = None,
    alias: str | None = None,
    guardrails: dict[str, Any] | None = None,
) -> Experiment:
    """Validate a definition against the registry: every variant resolves to one concrete version now
    (a bare name means its current version), so the experiment never moves when a name gets a new one.
    The order of `variants` is kept: the first is the control."""
    check_name(name, "experiment name")
    sticky = check_sticky(sticky)
    if not 0 < alpha <= 0.5:
        raise InvalidRequest(f"alpha must be in (0, 0.5]; got {alpha}", param="alpha")
    if planned_n is not None and planned_n < 2:
        raise InvalidRequest(f"planned_n must be at least 2 scores per variant; got {planned_n}", param="planned_n")
    if registry.lookup(name) is not None:
        raise Conflict(f"'{name}' is an adapter or alias; an experiment needs its own name", param="name")
    if alias is not None and alias not in registry.aliases():
        raise not_found("alias", alias, sorted(registry.aliases()), param="alias")
    if not variants:
        raise InvalidRequest("an experiment needs at least one variant", param="variants")
    resolved: dict[str, float] = {}
    for target, weight in variants.items():
        if not isinstance(weight, int | float) or weight < 0 or math.isnan(weight):
            raise InvalidRequest(f"weight of {target!r} must be a number >= 0", param="variants")
        ref = registry.lookup(target)
        if ref is None:
            raise not_found("variant", target, registry.available(), param="variants")
        resolved[str(ref)] = resolved.get(str(ref), 0.0) + float(weight)
    if sum(resolved.values()) <= 0:
        raise InvalidRequest("variant weights must not all be 0", param="variants")
    limits = Guardrails.of(guardrails)
    return Experiment(resolved, sticky, alpha=alpha, planned_n=planned_n, alias=alias, guardrails=limits)
