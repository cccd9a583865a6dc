"""An A/B experiment's definition: weighted variants (concrete adapter versions) and how a caller
sticks to one. Definitions are their own section of the registry's stored state; changing one goes
through `Services`, like every registry change."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import Conflict, InvalidRequest
from ..registry.refs import check_name, not_found

if TYPE_CHECKING:
    from ..registry import Registry

Sticky = Literal["user", "header", "none"]


@dataclass(frozen=True)
class Experiment:
    """`variants`: `name@version` -> weight (weights need not sum to 1)."""

    variants: dict[str, float]
    sticky: Sticky = "user"
    updated: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"variants": dict(self.variants), "sticky": self.sticky, "updated": self.updated}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        return cls({str(k): float(v) for k, v in data["variants"].items()}, data.get("sticky", "user"), data["updated"])


def define(registry: Registry, name: str, variants: dict[str, float], sticky: Sticky = "user") -> Experiment:
    """Validate a definition against the registry: every variant resolves to one concrete version now
    (a bare name means its current version), so the experiment never moves when a name gets a new one."""
    check_name(name, "experiment name")
    if registry.lookup(name) is not None:
        raise Conflict(f"'{name}' is an adapter or alias; an experiment needs its own name", param="name")
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
    return Experiment(resolved, sticky)
