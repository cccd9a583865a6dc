"""Deliberate faults, for tests only: `SWITCHBOARD_TEST_FAULTS` (JSON) names adapter versions whose
requests fail or are slow, e.g. `{"beta@v1": {"fail": true}, "gamma@v1": {"delay_s": 0.5}}`, so an
end-to-end test can break one variant of an experiment on the real server and watch a guardrail cut it
off. Read once at start; unset (the default) it does nothing."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

from .errors import EngineFailure

ENV = "SWITCHBOARD_TEST_FAULTS"


@dataclass(frozen=True)
class Fault:
    fail: bool = False
    delay_s: float = 0.0


def load(text: str | None = None) -> dict[str, Fault]:
    """The faults `text` (default: the environment variable) names, by `name@version`."""
    text = os.environ.get(ENV) if text is None else text
    return {ref: Fault(**spec) for ref, spec in json.loads(text).items()} if text else {}


async def inject(faults: dict[str, Fault], ref: str) -> None:
    """Delay, then fail, a request served by `ref` as `faults` say."""
    fault = faults.get(ref)
    if fault is None:
        return
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.fail:
        raise EngineFailure(f"adapter {ref} fails on purpose ({ENV})")
