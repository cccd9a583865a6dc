"""Prometheus metrics, labelled per adapter version (and experiment variant), recorded at the edges.

Cardinality stays bounded: labels come only from resolved adapter versions (an unknown name never
becomes a label), and a removed version's series are dropped.

Beside them, the model-server protocol that the Gateway API Inference Extension's endpoint picker scrapes,
in vLLM's names, types and label sets (`ModelServerCollector`), so the stock picker routes to Switchboard
with LoRA affinity unchanged.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .engine.base import SchedulerState
from .hardware import CpuInfo
from .registry.refs import AdapterRef

if TYPE_CHECKING:
    from .routing import Route

LABELS = ("adapter", "version", "experiment", "variant")
# buckets that fit both a 2-core CPU (seconds) and a GPU (milliseconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def adapter_names(keys: Iterable[str]) -> str:
    """Engine keys (`name@version`) as the picker matches them against a request's `model`: the bare adapter
    names, each once, comma-separated without spaces (vLLM's `",".join`). Clients name an adapter by its
    name (`model: sales`), which routes to its current version; a version being drained and its successor are
    one adapter to the picker, so it keeps `sales` requests on the replicas that already serve `sales`."""
    return ",".join(dict.fromkeys(AdapterRef.parse(key)[0] for key in keys))


class ModelServerCollector(Collector):
    """`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` (labels
    model_name, engine) and `vllm:lora_requests_info` (labels max_lora, waiting_lora_adapters,
    running_lora_adapters; value: when that state was last seen, Unix seconds), as vLLM's PrometheusStatLogger
    emits them (vllm/v1/metrics/loggers.py). Values are the engine's state at the last `observe` (each scrape).

    vLLM keeps one lora_requests_info series per label combination it has ever seen, and the picker takes
    the one with the newest timestamp, skipping those with no adapter at all (then it keeps "the last set of
    active adapters"). Here the series are bounded: the current one and, while it is empty, the last one
    that named adapters, which is all the picker reads."""

    def __init__(self) -> None:
        self.model_name = ""
        self.state = SchedulerState()
        self.max_lora = 0
        self._lock = threading.Lock()
        self._lora: dict[tuple[str, str], float] = {("", ""): time.time()}  # (running, waiting) -> last seen

    def observe(self, state: SchedulerState, model_name: str, max_lora: int) -> None:
        running, waiting = adapter_names(state.running_adapters), adapter_names(state.waiting_adapters)
        with self._lock:
            self.state, self.model_name, self.max_lora = state, model_name, max_lora
            current, now = (running, waiting), time.time()
            named = [(seen, key) for key, seen in self._lora.items() if key != current and any(key)]
            self._lora = {current: now}
            if named and not any(current):
                seen, key = max(named)
                self._lora[key] = seen

    def _families(self) -> list[GaugeMetricFamily]:
        per_engine = ["model_name", "engine"]
        return [
            GaugeMetricFamily(
                "vllm:num_requests_running", "Number of requests in model execution batches.", labels=per_engine
            ),
            GaugeMetricFamily(
                "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=per_engine
            ),
            GaugeMetricFamily(
                "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels=per_engine
            ),
            GaugeMetricFamily(
                "vllm:lora_requests_info",
                "Running stats on lora requests.",
                labels=["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
            ),
        ]

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running, waiting, kv, lora_info = self._families()
        with self._lock:
            state, engine = self.state, [self.model_name, "0"]
            lora = sorted(self._lora.items(), key=lambda item: item[1])
            max_lora = str(self.max_lora)
        running.add_metric(engine, state.running)
        waiting.add_metric(engine, state.waiting)
        kv.add_metric(engine, state.kv_cache_usage)
        for (running_adapters, waiting_adapters), seen in lora:
            lora_info.add_metric([max_lora, waiting_adapters, running_adapters], seen)
        yield from (running, waiting, kv, lora_info)


class Metrics:
    """One set of metrics per app (its own CollectorRegistry, so tests can run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "switchboard_requests", "Requests finished, by HTTP status.", [*LABELS, "status"], registry=r
        )
        self.prompt_tokens = Counter("switchboard_prompt_tokens", "Prompt tokens processed.", LABELS, registry=r)
        self.completion_tokens = Counter(
            "switchboard_completion_tokens", "Completion tokens generated.", LABELS, registry=r
        )
        self.ttft = Histogram(
            "switchboard_time_to_first_token_seconds",
            "Request received to first token.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "switchboard_inter_token_latency_seconds",
            "Gap between streamed tokens.",
            LABELS,
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "switchboard_request_latency_seconds",
            "Request received to last token.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "switchboard_queue_time_seconds",
            "Time a request waited before its prefill.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("switchboard_requests_in_flight", "Requests being served.", LABELS, registry=r)
        self.batch_size = Gauge("switchboard_batch_size", "Sequences in the engine's running batch.", registry=r)
        self.pending = Gauge("switchboard_pending_requests", "Requests waiting or running in the engine.", registry=r)
        self.resident = Gauge("switchboard_resident_adapters", "Adapter versions loaded in the engine.", registry=r)
        self.queue_depth = Gauge(
            "switchboard_queue_depth", "Requests accepted by the engine and waiting, not yet running.", registry=r
        )
        self.model_server = ModelServerCollector()
        r.register(self.model_server)
        # the shared registry (--registry postgresql://...); a process on the JSON file reports up, lag 0
        self.store_up = Gauge("switchboard_registry_store_up", "1 while the registry's store is reachable.", registry=r)
        self.store_up.set(1)
        self.sync_lag = Gauge(
            "switchboard_registry_sync_lag_seconds",
            "Seconds from the last registry change's commit (any replica) to this replica seeing it.",
            registry=r,
        )
        self.reconnects = Counter(
            "switchboard_registry_reconnects", "Reconnections to the shared registry after it was lost.", registry=r
        )
        self._reconnects_seen = 0
        self.unavailable = Gauge(
            "switchboard_adapters_unavailable",
            "Adapter versions in the shared registry that this replica cannot serve (listed in /ready).",
            registry=r,
        )
        self.loads = Counter("switchboard_adapter_loads", "Adapter versions loaded into the engine.", registry=r)
        self.evictions = Counter("switchboard_adapter_evictions", "Adapter versions evicted (LRU).", registry=r)
        self.load_time = Histogram(
            "switchboard_adapter_load_seconds", "Time to load an adapter version.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.registry_changes = Counter(
            "switchboard_registry_changes",
            "Registry changes by action: register, remove, alias, experiment.",
            ["action"],
            registry=r,
        )
        self.feedback = Counter("switchboard_feedback", "Feedback scores received.", LABELS, registry=r)
        self.feedback_score = Counter("switchboard_feedback_score", "Sum of feedback scores.", LABELS, registry=r)
        self.guardrail_events = Counter(
            "switchboard_experiment_guardrail_events",
            "Experiment variants cut off by a guardrail (weight 0), by guardrail: error_rate, latency_p95, feedback.",
            ["experiment", "variant", "guardrail"],
            registry=r,
        )
        self.rate_limited = Counter(
            "switchboard_rate_limited",
            "Requests refused (429) by a key's limits, by key name and kind: requests, tokens, streams, fair_share.",
            ["key", "kind"],
            registry=r,
        )
        self.engine_info = Info(
            "switchboard_engine",
            "What computes: engine, device, dtype (auto resolved), quantize, weights (how Linear weights are held), "
            "lm_head, attention, "
            "and the CPU's model, kernel level, "
            "flags, native bf16 and int8 input bits.",
            registry=r,
        )
        self._used: dict[tuple[str, str], set[tuple[str, ...]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._per_request = (
            self.prompt_tokens,
            self.completion_tokens,
            self.ttft,
            self.itl,
            self.latency,
            self.queue,
            self.in_flight,
            self.feedback,
            self.feedback_score,
        )

    def describe_engine(self, engine: dict[str, str], cpu: CpuInfo) -> None:
        """Set switchboard_engine_info: the engine's description (from Engine.describe) and the CPU's."""
        self.engine_info.info(
            {
                **{k: v for k, v in engine.items() if not k.endswith("_reason")},
                "cpu": cpu.model,
                "cpu_kernel": cpu.kernel,
                "cpu_flags": " ".join(cpu.flags),
                "native_bf16": str(cpu.native_bf16).lower(),
                "int8_input_bits": str(cpu.int8_input_bits or 0),
            }
        )

    def labels(self, adapter: str, version: str, experiment: str = "", variant: str = "") -> tuple[str, ...]:
        values = (adapter, version, experiment, variant)
        with self._lock:
            self._used[(adapter, version)].add(values)
        return values

    def observe_scheduler(self, state: SchedulerState, model_name: str, max_lora: int) -> None:
        """The engine's scheduler state, read at scrape time: the model-server protocol and the queue depth."""
        self.queue_depth.set(state.waiting)
        self.model_server.observe(state, model_name, max_lora)

    def observe_store(self, up: bool, sync_lag_s: float, reconnects: int) -> None:
        """The shared registry's health, read at scrape time."""
        self.store_up.set(1 if up else 0)
        self.sync_lag.set(sync_lag_s)
        self.reconnects.inc(max(0, reconnects - self._reconnects_seen))
        self._reconnects_seen = max(reconnects, self._reconnects_seen)

    def route_labels(self, route: Route) -> tuple[str, ...]:
        """The label values of a request served by `route` (the bare base: adapter `base`)."""
        ref = route.ref
        adapter, version = (ref.name, ref.version) if ref is not None else ("base", "")
        return self.labels(adapter, version, route.experiment, route.variant)

    def forget_key(self, name: str) -> None:
        """Drop a revoked key's series."""
        for kind in ("requests", "tokens", "streams", "fair_share"):
            with contextlib.suppress(KeyError):
                self.rate_limited.remove(name, kind)

    def forget(self, adapter: str, version: str) -> None:
        """Drop every series of a removed adapter version."""
        with self._lock:
            used = self._used.pop((adapter, version), set())
        for values in used:
            for metric in self._per_request:
                with contextlib.suppress(KeyError):
                    metric.remove(*values)
            for status in ("200", "400", "404", "429", "499", "503"):
                with contextlib.suppress(KeyError):
                    self.requests.remove(*values, status)
