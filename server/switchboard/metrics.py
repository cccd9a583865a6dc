"""Prometheus metrics, labelled per adapter version (and experiment variant), recorded at the edges.

Cardinality stays bounded: labels come only from resolved adapter versions (an unknown name never
becomes a label), and a removed version's series are dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from .hardware import CpuInfo

if TYPE_CHECKING:
    from .routing import Route

LABELS = ("adapter", "version", "experiment", "variant")
# buckets that fit both a 2-core CPU (seconds) and a GPU (milliseconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


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
        self.engine_info = Info(
            "switchboard_engine",
            "What computes: engine, device, dtype (auto resolved), quantize, and the CPU's model, kernel level, "
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
                **{k: v for k, v in engine.items() if k != "dtype_reason"},
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
