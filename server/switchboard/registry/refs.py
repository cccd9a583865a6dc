"""What names an adapter version: `AdapterRef` (`name@version`), the bare base's name, the name rule,
and the one "not found; available: …" message every lookup failure uses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import AdapterNotFound, InvalidRequest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BASE = "base"  # the name that routes to the bare base model


@dataclass(frozen=True)
class AdapterRef:
    """One concrete adapter version; prints as `name@version`, the engine's key for it."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> tuple[str, str | None]:
        """`name@version` -> (name, version); `name` -> (name, None)."""
        name, _, version = text.partition("@")
        return name, (version or None)


def served_by(ref: AdapterRef | None) -> str:
    """What a response names as its adapter: `name@version`, or `base` for the bare model."""
    return str(ref) if ref is not None else BASE


def check_name(name: str, what: str = "adapter name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name == BASE:
        raise InvalidRequest(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit (and not '{BASE}')",
            param="name",
        )
    return name


def not_found(what: str, text: str, available: Iterable[str], param: str | None = None) -> AdapterNotFound:
    """The error for a name that resolves to nothing, naming the way out:
    "adapter 'sales@v3' not found; available: sales, sales@v1, sales@v2"."""
    listed = ", ".join(available) or "none"
    shown = text if len(text) <= 100 else text[:100] + "…"  # a 100 KB `model` is not echoed whole
    return AdapterNotFound(f"{what} '{shown}' not found; available: {listed}", param=param)
