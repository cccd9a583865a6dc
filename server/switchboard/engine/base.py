"""The engine protocol: what the API layer may ask of an engine. No HTTP, headers or experiments here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens: OpenAI's parameters and vLLM's extensions, with their semantics (docs/api.md).
    temperature 0 means greedy; the penalties, logit_bias and min_tokens apply to greedy rows too."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    presence_penalty: float = 0.0  # subtracted once from each token generated so far
    frequency_penalty: float = 0.0  # subtracted per occurrence in the generated tokens
    repetition_penalty: float = 1.0  # tokens of prompt or output: positive logits divided, negative multiplied
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    top_k: int = 0  # 0: off
    min_p: float = 0.0  # drop tokens below min_p x the most likely one's probability
    min_tokens: int = 0  # end-of-sequence and stop_token_ids are masked until this many tokens are out
    stop_token_ids: tuple[int, ...] = ()  # more tokens that end the sequence (not emitted), even with ignore_eos
    skip_special_tokens: bool = True  # leave special tokens out of the text
    logprobs: int | None = None  # None: none; k: each token's logprob and the k most likely tokens' (k <= 20)
    json_schema: str | None = None  # response_format: the output must be JSON matching this schema (serialized)


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate. `adapter` is the engine key of a loaded adapter, None for the bare base."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None
    arrival: float = field(default_factory=time.perf_counter)  # for the queue-time metric


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log probability and the most likely alternatives at its step, most likely first.
    The distribution is the model's raw one, log_softmax of its logits in fp32 before logit_bias, penalties,
    temperature and the top-k/top-p/min-p filters (vLLM v1's default `logprobs_mode`, 'raw_logprobs')."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), the `logprobs` most likely


@dataclass
class GenerationOutput:
    """An increment of one request's output; the last one has `finish_reason` set."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "abort"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_s: float | None = None  # on the first output: seconds from arrival to the start of prefill
    # when the request asked for logprobs: one entry per token whose text is in this output's `text` (a token
    # whose text is held back, e.g. a possible stop string's start, has its entry delivered with that text)
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler's state at one instant, for the model-server metrics an inference gateway scrapes
    (vLLM's `vllm:num_requests_*`, `vllm:kv_cache_usage_perc`, `vllm:lora_requests_info`; docs/metrics.md).

    Adapters are engine keys (`name@version`), each listed once, for requests that use an adapter (the bare
    base model is counted in `waiting`/`running` but never listed), as vLLM lists its LoRA requests' names."""

    waiting: int = 0  # accepted by the engine, not yet in the running batch
    running: int = 0  # in the running batch
    waiting_adapters: tuple[str, ...] = ()
    running_adapters: tuple[str, ...] = ()
    kv_cache_usage: float = 0.0  # 0..1: the KV cache held ÷ what the engine may hold (per engine: docs/metrics.md)
    max_loras: int | None = None  # most distinct adapters in one batch; None: no limit of its own


class StepTracer(Protocol):
    """Told of each batch step, on the engine thread, when tracing is on (switchboard.tracing.Tracing)."""

    def step(self, kind: str, request_ids: Sequence[str], tokens: int, started_ns: int) -> None:
        """The forward pass of a "prefill" or "decode" step, begun at `started_ns` (time.time_ns()), has ended:
        `tokens` went through the model for the rows of `request_ids` (their new tokens are not yet delivered)."""
        ...


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

    def scheduler_state(self) -> SchedulerState:
        """Waiting and running requests, their adapters and the KV cache's use, read at scrape time (any
        thread; never blocks on the engine)."""
        ...

    def describe(self) -> dict[str, str]:
        """What computes: engine, device, dtype (as resolved from auto), quantize; for /health and metrics."""
        ...
