"""The `hf` engine: transformers + PEFT on one base model, with iteration-level batching.

One thread owns the model. Each iteration it (1) applies adapter loads/unloads queued by the API,
(2) prefills waiting requests together and merges them into the running batch, (3) runs one decode
step for every running row, each row with its own adapter (PEFT `adapter_names`, "__base__" for the
bare model), and (4) hands each row's new text to its asyncio collector via call_soon_threadsafe.
Finished and aborted rows leave the batch at once; new ones join at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from ..errors import EngineFailure
from ..hardware import serving_dtype
from ..openmp import to_thread_releasing
from .attention import use_fp32_decode_attention
from .base import GenerationOutput, GenerationRequest, SchedulerState, StepTracer
from .batch import Batch, Row, Submission, left_padded, length_groups
from .bf16_packed import hold_packed_bf16
from .constraints import Grammars, constrain
from .fp16_weights import WeightsMode, fp16_holds_all, fp16_kernel, hold_fp16
from .fused_norms import fuse_norms
from .hf_adapters import AdapterMethods
from .ledger import RequestLedger
from .lm_head import HeadMode, shortlist_head, shortlisted
from .logprobs import step_logprobs
from .lora_stacks import LoraStacks
from .quant import quantize_int8
from .sampling import sample

logger = logging.getLogger(__name__)


class HFEngine(AdapterMethods):
    """Engine over a transformers causal LM with PEFT LoRA adapters."""

    def __init__(
        self,
        model_dir: Path,
        *,
        model_id: str,
        dtype: str = "auto",
        max_batch_size: int = 32,
        max_queue: int = 256,
        max_model_len: int = 4096,
        device: str | None = None,
        quantize: str = "none",
        weights: WeightsMode = "auto",
        lm_head: HeadMode = "auto",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.model_id = model_id
        if quantize not in ("none", "int8"):
            raise ValueError(f"quantize must be 'none' or 'int8', got {quantize!r}")
        self.quantize = quantize
        self.weights = weights  # how Linear weights are held (engine/fp16_weights.py)
        self.lm_head, self.lm_head_held, self.lm_head_reason = lm_head, "", ""  # the serving head (engine/lm_head.py)
        self.attention = "sdpa"  # transformers' SDPA; fp32 at decode for bf16 on the CPU (engine/attention.py)
        # int8 runs on the CPU, the rest of the model in fp32 unless told otherwise (engine/quant.py)
        int8 = quantize == "int8"
        self.weights_held, self.weights_reason = ("int8", "int8 base") if int8 else ("", "")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() and not int8 else "cpu"))
        if int8 and self.device.type != "cpu":
            raise ValueError(f"--quantize int8 runs on the CPU, got device {self.device}")
        if int8 and dtype == "auto":
            self.dtype, self.dtype_reason = torch.float32, "auto: float32 around the int8 base"
        else:
            fp16w = self.device.type == "cpu" and weights != "dtype" and fp16_kernel()
            self.dtype, self.dtype_reason = serving_dtype(dtype, self.device, fp16_weights=fp16w)
        # auto took float32 for fp16-held weights where it would take bf16 without them: if the model's weights
        # are not all exact in fp16, load_model() serves bf16 after all
        self._bf16_unless_fp16_exact = dtype == "auto" and self.dtype != serving_dtype("auto", self.device)[0]
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._max_model_len_cap = max_model_len
        self.max_model_len = max_model_len
        self.tokenizer: Any = None
        self.model: Any = None
        self._inbox: queue.Queue[Submission | None] = queue.Queue()  # None: wake up, a command is waiting
        self._commands: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
        self._aborted: set[str] = set()
        self._aborted_lock = threading.Lock()
        self._ledger = RequestLedger()  # what occupancy() and scheduler_state() read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.stop_ids: frozenset[int] = frozenset()
        self.tracer: StepTracer | None = None  # batch steps as spans, when tracing is on

    # ---------------------------------------------------------------- lifecycle
    def load_model(self) -> None:
        """Load tokenizer and base model (blocking; call from a worker thread)."""
        started = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        int8 = self.quantize == "int8"
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype="auto" if int8 else self.dtype)
        model.to(self.device).eval()
        model.requires_grad_(False)
        embedding = model.get_input_embeddings().weight
        tied = embedding if getattr(model.get_output_embeddings(), "weight", None) is embedding else None
        if int8:
            model = quantize_int8(model, self.dtype)
        else:
            if self._bf16_unless_fp16_exact and self.weights == "auto" and not fp16_holds_all(model):
                model.to(torch.bfloat16)  # `tied` (the same Parameter) is bf16 now too
                self.dtype, self.dtype_reason = serving_dtype("auto", self.device)
                self.dtype_reason += "; its Linear weights are not all exact in fp16"
            if self.dtype == torch.bfloat16:
                self.weights_held, self.weights_reason = hold_packed_bf16(model, self.weights, self.device)
            else:
                self.weights_held, self.weights_reason = hold_fp16(model, self.weights, self.dtype, self.device)
            fuse_norms(model, self.dtype)
        if use_fp32_decode_attention(model, self.dtype, self.device):  # bf16 on the CPU (engine/attention.py)
            self.attention = "sdpa, fp32 at decode"
        self.model = model
        self.stacks = LoraStacks(model, self.dtype, self.device)
        self.stacks.head, self.lm_head_reason = shortlist_head(model, self.lm_head, None if int8 else tied)
        self.lm_head_held = "full" if self.stacks.head is None else "shortlist"
        self.max_model_len = min(
            self._max_model_len_cap, getattr(model.config, "max_position_embeddings", self._max_model_len_cap)
        )
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.stop_ids = frozenset(i for i in eos_ids if i is not None)
        self.grammars = Grammars(self.tokenizer, model.config.get_text_config().vocab_size)
        took = time.perf_counter() - started
        why = f"{self.dtype_reason}; {self.weights_reason}; {self.lm_head_reason}; attention {self.attention}"
        logger.info("loaded base model %s (%s, %s) in %.1fs; %s", self.model_id, self.dtype, self.device, took, why)

    def describe(self) -> dict[str, str]:
        return {
            "engine": "hf",
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "quantize": self.quantize,
            "dtype_reason": self.dtype_reason,
            "weights": self.weights_held,
            "weights_reason": self.weights_reason,
            "lm_head": self.lm_head_held,
            "lm_head_reason": self.lm_head_reason,
            "attention": self.attention,
        }

    async def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        if self.model is None:
            await to_thread_releasing(self.load_model)  # only the engine thread keeps an OpenMP team (openmp.py)
        self._thread = threading.Thread(target=self._loop, name="switchboard-hf-engine", daemon=True)
        self._thread.start()

    async def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
            if not self._thread.is_alive():  # stopped: adapters can be added again before the next start()
                self._thread = None

    async def _call_in_engine(self, fn: Callable[[], Any]) -> Any:
        if self._thread is None or not self._thread.is_alive():
            return await to_thread_releasing(fn)
        fut: Future = Future()
        self._commands.put((fn, fut))
        self._inbox.put(None)  # an idle loop waits on the inbox: run the command now, not at its next poll
        return await asyncio.wrap_future(fut)

    # ---------------------------------------------------------------- requests
    def occupancy(self) -> dict[str, int]:
        return self._ledger.occupancy()

    def scheduler_state(self) -> SchedulerState:
        """KV use: cache slots the running batch holds (rows x cache length, left padding included: it is
        memory held) over the most it can hold, max_batch_size x max_model_len tokens (docs/metrics.md)."""
        return self._ledger.state(kv_capacity=self.max_batch_size * self.max_model_len)

    def abort(self, request_id: str) -> None:
        with self._aborted_lock:
            self._aborted.add(request_id)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        if self._failure is not None or self._thread is None or not self._thread.is_alive():
            raise EngineFailure("the inference engine is not running")
        if request.adapter is not None and request.adapter not in self.stacks.adapters:
            # residency loads every adapter before its requests reach the engine: this is our fault
            raise EngineFailure(f"adapter '{request.adapter}' is not loaded in the engine")
        constraint = await self.grammars.compile(request.params.json_schema)  # in a thread; None: free text
        self._ledger.admit(request.adapter, self.max_queue)
        loop = asyncio.get_running_loop()
        collector: asyncio.Queue[GenerationOutput] = asyncio.Queue()

        def sink(out: GenerationOutput) -> None:
            loop.call_soon_threadsafe(collector.put_nowait, out)

        finished = False
        self._inbox.put((request, sink, constraint))
        try:
            while True:
                out = await collector.get()
                if out.finish_reason is not None:
                    finished = True
                yield out
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request.request_id)

    # ---------------------------------------------------------------- engine thread
    def _loop(self) -> None:
        batch: Batch | None = None
        try:
            with torch.inference_mode():
                while not self._stop.is_set():
                    self._run_commands()
                    new = self._take_new(block=batch is None)
                    if new:
                        joined = self._prefill(new)
                        if joined is not None:
                            if batch is None:
                                batch = joined
                            else:
                                batch.merge(joined)
                    if batch is not None:
                        batch = self._step(batch)
                    self._ledger.publish(batch, [request.adapter for request, _, _ in new])
        except BaseException as exc:  # noqa: BLE001 - fail every request, never hang them
            logger.exception("engine loop failed")
            self._failure = exc
            for row in batch.rows if batch is not None else []:
                self._finish(row, "abort")
            while not self._inbox.empty():  # and the requests still waiting (generate() now refuses new ones)
                item = self._inbox.get_nowait()
                if item is None:
                    continue
                _, sink, _ = item
                self._ledger.release()
                sink(GenerationOutput(text="", finish_reason="abort"))
            self._ledger.publish(None, [])
            self._ledger.clear_waiting()

    def _run_commands(self) -> None:
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(exc)

    def _take_new(self, block: bool) -> list[Submission]:
        items: list[Submission] = []
        if block:
            try:
                first = self._inbox.get(timeout=0.05)
            except queue.Empty:
                return items
            if first is None:  # a command's wake-up: the loop runs it first
                return items
            items.append(first)
        room = self.max_batch_size - self._ledger.running - len(items)
        while room > 0:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                items.append(item)
                room -= 1
        return items

    def _is_aborted(self, request_id: str) -> bool:
        with self._aborted_lock:
            if request_id in self._aborted:
                self._aborted.discard(request_id)
                return True
        return False

    def _prefill(self, items: list[Submission]) -> Batch | None:
        rows: list[Row] = []
        for request, sink, constraint in items:
            if self._is_aborted(request.request_id):
                sink(GenerationOutput(text="", finish_reason="abort"))  # a drain's abort: its stream still waits
                self._ledger.release()
                continue
            if request.adapter is not None and request.adapter not in self.stacks.adapters:
                sink(GenerationOutput(text="", finish_reason="abort"))
                self._ledger.release()
                continue
            room = self.max_model_len - len(request.prompt_ids)
            rows.append(Row.start(request, sink, self.tokenizer, self.stop_ids, room, constraint))
        joined: Batch | None = None
        for group in length_groups([len(r.request.prompt_ids) for r in rows]):  # each padded to its own longest
            batch = self._prefill_rows([rows[i] for i in group])
            if joined is None:
                joined = batch
            elif batch is not None:
                joined.merge(batch)
        return joined

    def _prefill_rows(self, rows: list[Row]) -> Batch | None:
        started_ns = time.time_ns() if self.tracer is not None else 0
        now = time.perf_counter()
        for row in rows:
            row.queue_s = now - row.request.arrival
        ids, mask, positions = left_padded([r.request.prompt_ids for r in rows])
        cache = DynamicCache()
        logits = self.stacks.logits(
            ids, mask, positions, cache, [r.adapter_name for r in rows], shortlisted(self.stacks.head, rows)
        )
        # the Batch holds the position of the token fed next; _emit's advance() moves it past the prompt
        batch = Batch(rows, cache, mask, positions[:, -1], torch.zeros(len(rows), dtype=torch.long))
        if self.tracer is not None:  # before _emit delivers: a request that ends here is still followed
            self.tracer.step("prefill", [r.request.request_id for r in rows], int(mask.sum()), started_ns)
        return self._emit(batch, logits)

    def _step(self, batch: Batch) -> Batch | None:
        started_ns = time.time_ns() if self.tracer is not None else 0
        mask = torch.cat([batch.mask, torch.ones((len(batch), 1), dtype=batch.mask.dtype)], dim=1)
        logits = self.stacks.logits(
            batch.tokens[:, None], mask, batch.positions[:, None], batch.cache, batch.adapter_names(),
            shortlisted(self.stacks.head, batch.rows),
        )  # fmt: skip
        batch.mask = mask
        if self.tracer is not None:
            self.tracer.step("decode", [r.request.request_id for r in batch.rows], len(batch), started_ns)
        return self._emit(batch, logits)

    def _emit(self, batch: Batch, logits: torch.Tensor) -> Batch | None:
        """Sample each row's next token, deliver new text, and drop finished rows."""
        asked = step_logprobs(logits, [r.request.params.logprobs for r in batch.rows])  # before sample() edits
        constrain(logits, [r.constraint for r in batch.rows])  # response_format rows: their grammar's mask
        tokens = sample(logits, [r.sampler for r in batch.rows])
        entries = asked.entries(tokens) if asked is not None else {}
        keep: list[int] = []
        for i, (row, token) in enumerate(zip(batch.rows, tokens, strict=True)):
            if self._is_aborted(row.request.request_id):
                self._finish(row, "abort")
                continue
            if row.max_new <= 0:
                self._finish(row, "length")
                continue
            if token in row.stop_ids:
                self._finish(row, "stop")
                continue
            row.generated += 1
            row.sampler.record(token)
            row.detok.add(token)
            if row.held is not None:
                row.held.add(entries[i], row.detok)
            if row.detok.stopped or (row.constraint is not None and row.constraint.ends(token)):
                self._finish(row, "stop", token)
                continue
            if row.generated >= row.max_new:
                self._finish(row, "length", token)
                continue
            text = row.detok.flush()
            queue_s, row.queue_s = row.queue_s, None
            row.sink(
                GenerationOutput(
                    text=text,
                    token_ids=[token],
                    completion_tokens=row.generated,
                    prompt_tokens=len(row.request.prompt_ids),
                    queue_s=queue_s,
                    logprobs=row.held.release(row.detok) if row.held is not None else None,
                )
            )
            keep.append(i)
        if not keep:
            return None
        batch.advance(tokens)
        batch.keep(keep)
        return batch

    def _finish(self, row: Row, reason: str, token: int | None = None) -> None:
        row.finish_reason = reason
        self._ledger.release()  # before delivering, so a client that immediately sends again finds room
        row.sink(
            GenerationOutput(
                text=row.detok.flush(final=True),
                token_ids=[token] if token is not None else [],
                finish_reason=reason,
                prompt_tokens=len(row.request.prompt_ids),
                completion_tokens=row.generated,
                queue_s=row.queue_s,
                logprobs=row.held.release(row.detok, final=True) if row.held is not None else None,
            )
        )
