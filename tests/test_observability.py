"""Tracing, access logs and the header-read deadline, on the real server and the tiny model.

Tracing: the app built in this process (create_app with an in-memory span exporter, the test hook) served by uvicorn
in a thread, so the spans can be read as they end. Logs, the OTLP exporter and the header deadline: `switchboard serve
--log-format json --header-timeout-s 2 --otlp-endpoint URL` as a subprocess, its output read line by line, its spans
received by a small OTLP/HTTP collector in this process."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from openai import OpenAI
from pydantic import SecretStr

from .conftest import Server, ServerFactory, free_port, wait_for

ADMIN = {"Authorization": "Bearer admin-secret"}
HELLO = [{"role": "user", "content": "hello"}]


class Traced:
    """The in-process server and the spans it has finished."""

    def __init__(self, url: str, exporter: Any) -> None:
        self.url, self.exporter = url, exporter

    def span_for(self, request_id: str) -> Any:
        """The request's server span, once it has ended (it ends after the response's last byte is sent)."""

        def find() -> Any:
            return next(
                (
                    s
                    for s in self.exporter.get_finished_spans()
                    if s.attributes.get("switchboard.request_id") == request_id
                ),
                None,
            )

        return wait_for(find, 30, f"the span of {request_id}")

    def children(self, span: Any, name: str) -> list[Any]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.name == name and s.parent is not None and s.parent.span_id == span.context.span_id
        ]


@pytest.fixture(scope="module")
def traced(tmp_path_factory, tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> Iterator[Traced]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from switchboard.app import create_app
    from switchboard.config import Settings

    work = tmp_path_factory.mktemp("traced")
    (work / "empty").mkdir()
    settings = Settings(
        model=str(tiny_model_dir),
        dtype="float32",
        adapter_dir=work / "empty",
        adapters={"alpha": tiny_adapters["alpha"], "beta": tiny_adapters["beta"]},
        state_dir=work / "state",
        max_model_len=256,
        admin_key=SecretStr("admin-secret"),
        trace_engine_steps=1,  # every decode step, so a short request has some
    )
    exporter = InMemorySpanExporter()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, span_exporter=exporter), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="traced-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 240, "the traced server", interval=0.2)
    yield Traced(url, exporter)
    server.should_exit = True
    thread.join(60)


def _chat(url: str, **body: Any) -> httpx.Response:
    headers = body.pop("headers", {})
    body = {"model": "alpha", "messages": HELLO, "max_tokens": 6, **body}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_a_request_span_carries_adapter_version_tokens_queue_time_and_ttft(traced: Traced, caplog):
    caplog.set_level(logging.INFO, logger="switchboard.access")
    response = _chat(traced.url)
    usage = response.json()["usage"]
    span = traced.span_for(response.headers["x-request-id"])
    attrs = span.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.request.model"] == "alpha"
    assert attrs["gen_ai.response.id"] == response.json()["id"]
    assert attrs["switchboard.adapter"] == "alpha" and attrs["switchboard.adapter_version"] == "v1"
    assert attrs["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attrs["switchboard.queue_time_s"] >= 0 and 0 < attrs["switchboard.ttft_s"] < 60
    assert attrs.get("http.response.status_code", attrs.get("http.status_code")) == 200
    assert "switchboard.experiment" not in attrs  # not routed by an experiment
    # the engine's steps for it: its prefill and decode steps are spans in its trace
    assert len(traced.children(span, "switchboard.engine.prefill")) == 1
    decodes = traced.children(span, "switchboard.engine.decode")
    assert decodes and all(d.attributes["switchboard.batch.rows"] >= 1 for d in decodes)
    # its access line names the same trace
    line = next(
        r for r in caplog.records if getattr(r, "fields", {}).get("request_id") == attrs["switchboard.request_id"]
    )
    assert line.fields["trace_id"] == format(span.context.trace_id, "032x")
    assert line.getMessage().startswith("POST /v1/chat/completions 200 ")


def test_a_stream_span_ends_with_the_stream_and_its_token_counts(traced: Traced):
    client = OpenAI(base_url=f"{traced.url}/v1", api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="beta", messages=HELLO, max_tokens=24, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    first_chunk_ns, usage = None, None
    for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content and first_chunk_ns is None:
            first_chunk_ns = time.time_ns()
        usage = chunk.usage or usage
    assert first_chunk_ns is not None and usage is not None and usage.completion_tokens == 24
    span = traced.span_for(raw.headers["x-request-id"])
    assert span.end_time > first_chunk_ns  # not at the headers: when the stream ended
    assert span.attributes["switchboard.adapter"] == "beta"
    assert span.attributes["gen_ai.usage.output_tokens"] == 24
    assert span.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens


def test_an_experiment_routed_request_names_its_experiment_and_variant(traced: Traced):
    body = {"variants": {"alpha": 50, "beta": 50}}
    assert httpx.put(f"{traced.url}/admin/experiments/tone", json=body, headers=ADMIN).status_code == 200
    response = _chat(traced.url, model="tone", user="user-7")
    experiment, variant = response.headers["x-experiment"].split("/")
    attrs = traced.span_for(response.headers["x-request-id"]).attributes
    assert (attrs["switchboard.experiment"], attrs["switchboard.variant"]) == (experiment, variant) == ("tone", variant)
    assert attrs["gen_ai.request.model"] == "tone"
    assert f"{attrs['switchboard.adapter']}@{attrs['switchboard.adapter_version']}" == response.headers["x-adapter"]


def test_a_w3c_traceparent_is_continued_and_its_sampled_flag_followed(traced: Traced):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = _chat(traced.url, headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Request-Id": "tp-1"})
    span = traced.span_for("tp-1")
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id and span.parent.is_remote
    assert response.headers["x-request-id"] == "tp-1"
    # a caller that decided not to sample: no span, though the ratio is 1
    unsampled = "5bf92f3577b34da6a3ce929d0e0e4736"
    _chat(traced.url, headers={"traceparent": f"00-{unsampled}-{parent_id}-00", "X-Request-Id": "tp-2"})
    _chat(traced.url, headers={"X-Request-Id": "tp-3"})
    traced.span_for("tp-3")  # requests end in order here: tp-2's span would have ended by now
    assert not [s for s in traced.exporter.get_finished_spans() if format(s.context.trace_id, "032x") == unsampled]


def test_tracing_is_off_and_opentelemetry_never_needed_unless_configured(monkeypatch, tiny_model_dir: Path):
    from switchboard.app import create_app
    from switchboard.config import Settings
    from switchboard.tracing import Tracing

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for module in [m for m in sys.modules if m.split(".")[0] == "opentelemetry"] + ["opentelemetry"]:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    assert Tracing.configure(Settings()) is None
    create_app(Settings(model=str(tiny_model_dir)))  # builds without it
    with pytest.raises(RuntimeError, match=r"pip install 'switchboard\[otel\]'"):
        Tracing.configure(Settings(otlp_endpoint="http://127.0.0.1:4318"))


# ---------------------------------------------------------------------------------------------- JSON logs
SECRET = "sk-never-in-the-logs-7f3a"
PROMPT = "a-distinctive-prompt-that-must-stay-out-of-logs"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP collector that keeps what it is sent (protobuf bodies of POST /v1/traces)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    collector.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def json_server(serve_module: ServerFactory, tiny_adapters: dict[str, Path], collector: Collector) -> Server:
    """JSON logs, a 2 s header deadline, an API key, and traces sent to `collector` over OTLP/HTTP."""
    return serve_module(
        "--log-format", "json", "--header-timeout-s", "2", "--api-key", SECRET,
        "--otlp-endpoint", f"http://127.0.0.1:{collector.server_port}",
        adapters={"alpha": tiny_adapters["alpha"]}, max_model_len=256, env={"OTEL_BSP_SCHEDULE_DELAY": "200"},
    )  # fmt: skip


def _lines(server: Server) -> list[dict[str, Any]]:
    parsed = []
    for line in server.output().splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON log line: {line!r}")
    return parsed


def test_json_logs_one_parseable_line_each_and_one_access_line_per_request(json_server: Server, collector: Collector):
    auth = {"Authorization": f"Bearer {SECRET}"}
    body = {"model": "alpha", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 5}
    url = f"{json_server.url}/v1/chat/completions"
    kept = httpx.post(url, json=body, headers={**auth, "X-Request-Id": "client-id-1"}, timeout=60)
    ours = httpx.post(url, json={**body, "stream": True}, headers=auth, timeout=60)
    refused = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong", "X-Request-Id": "client-id-2"})
    missing = httpx.get(f"{json_server.url}/v1/models/nope", headers=auth)
    assert (kept.status_code, ours.status_code, refused.status_code, missing.status_code) == (200, 200, 401, 404)
    assert kept.headers["x-request-id"] == "client-id-1" and refused.headers["x-request-id"] == "client-id-2"
    assert ours.headers["x-request-id"].startswith("chatcmpl-") and missing.headers["x-request-id"].startswith("req-")
    ids = [r.headers["x-request-id"] for r in (kept, ours, refused, missing)]

    def access() -> dict[str, dict[str, Any]] | None:
        lines = [e for e in _lines(json_server) if e["logger"] == "switchboard.access"]
        found = {e["request_id"]: e for e in lines if e["request_id"] in ids}
        return found if len(found) == len(ids) else None

    by_id = wait_for(access, 30, "the access lines")
    everything = _lines(json_server)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in everything)
    assert not [e for e in everything if e["logger"] == "uvicorn.access"]  # ours replaces it: one line per request
    for request_id in ids:
        assert sum(e.get("request_id") == request_id for e in everything) == 1
    line = by_id["client-id-1"]
    usage = kept.json()["usage"]
    assert line["method"] == "POST" and line["path"] == "/v1/chat/completions" and line["status"] == 200
    assert line["adapter"] == "alpha@v1" and line["experiment"] is None and line["variant"] is None
    assert (line["prompt_tokens"], line["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert 0 < line["ttft_s"] <= line["latency_s"] and line["queue_s"] >= 0
    assert "key" in line
    # the line names its trace, which reached the collector with the request's attributes
    trace_id = bytes.fromhex(line["trace_id"])
    wanted = (trace_id, b"switchboard.adapter_version", b"gen_ai.usage.output_tokens")

    def request_span() -> bytes | None:  # its spans may reach the collector in more than one export: wait for it
        return next((body for body in list(collector.bodies) if all(part in body for part in wanted)), None)

    wait_for(request_span, 30, "the request's span with its attributes")
    streamed = by_id[ids[1]]
    assert streamed["status"] == 200 and streamed["completion_tokens"] == 5 and streamed["ttft_s"] > 0
    assert by_id["client-id-2"]["status"] == 401 and by_id["client-id-2"]["adapter"] is None
    assert by_id[ids[3]]["status"] == 404 and by_id[ids[3]]["method"] == "GET"
    output = json_server.output()
    assert SECRET not in output and PROMPT not in output


# ----------------------------------------------------------------------------------- header-read deadline
HALF = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: applic"


def _connect(server: Server, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    if send:
        sock.sendall(send)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes `sock` within its timeout (what it still had to send is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_stalled_mid_headers_are_closed_while_others_are_answered(json_server: Server):
    started = time.monotonic()
    stalled = [_connect(json_server, HALF) for _ in range(180)] + [_connect(json_server) for _ in range(20)]
    # meanwhile the server answers others, and a slow client that finishes its headers in time is served
    assert httpx.get(f"{json_server.url}/health", timeout=10).status_code == 200
    slow = _connect(json_server, b"GET /health HTTP/1.1\r\n")
    time.sleep(0.3)
    slow.sendall(b"Host: 127.0.0.1\r\n")
    time.sleep(0.3)
    slow.sendall(b"\r\n")
    assert slow.recv(1024).startswith(b"HTTP/1.1 200")
    # a kept-alive connection that then stalls in its next request's headers is closed too
    slow.sendall(b"GET /health HTTP/1.1\r\nHo")
    for sock in [*stalled, slow]:
        assert _closed_by_server(sock), "a stalled connection was still open after 20 s"
        sock.close()
    elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 20, elapsed  # the 2 s deadline, not at once and not never
