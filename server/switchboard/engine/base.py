"""The engine protocol: what the API layer may ask of an engine. No HTTP, headers or experiments here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate. `adapter` is the engine key of a loaded adapter, None for the bare base."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None
    arrival: float = field(default_factory=time.perf_counter)  # for the queue-time metric


@dataclass
class GenerationOutput:
    """An increment of one request's output; the last one has `finish_reason` set."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_s: float | None = None  # on the first output: seconds from arrival to the start of prefill


class Engine(Protocol):
    """One base model plus many LoRA adapters, with batched generation. The rest of Switchboard is
    typed against this protocol; `hf.HFEngine` and `vllm_engine.VLLMEngine` implement it."""

    model_id: str
    model_dir: Path
    max_model_len: int
    tokenizer: Any
    model: Any  # None until load_model() (or start()) has run

    def load_model(self) -> None:
        """Load the tokenizer and the base model (blocking: call it from a worker thread)."""
        ...

    async def start(self) -> None:
        """Start generating (loading the model first if load_model() has not run)."""
        ...

    async def shutdown(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        """Stream the outputs of `request`; closing the iterator aborts the request."""
        ...

    def abort(self, request_id: str) -> None: ...

    async def add_adapter(self, key: str, path: Path) -> None:
        """Load the PEFT adapter at `path` under `key`; raises AdapterIncompatible if it does not fit."""
        ...

    async def remove_adapter(self, key: str) -> None: ...

    def resident_adapters(self) -> list[str]: ...

    def occupancy(self) -> dict[str, int]:
        """Requests `pending` (accepted, not finished) and `running` (in the batch), for /ready and metrics."""
        ...

    def describe(self) -> dict[str, str]:
        """What computes: engine, device, dtype (as resolved from auto), quantize; for /health and metrics."""
        ...
