"""Graceful drain on SIGTERM with requests in flight (server/switchboard/drain.py): the real server, real streams."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory, wait_for

LONG = {"model": "alpha", "messages": [{"role": "user", "content": "Tell me everything."}], "stream": True,
        "max_tokens": 400, "ignore_eos": True}  # fmt: skip


class Stream(threading.Thread):
    """One streamed chat completion read to its end: its SSE payloads in order."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.started = url, [], threading.Event()

    def run(self) -> None:
        with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=LONG, timeout=120) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(line.removeprefix("data: "))
                    self.started.set()

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    def payloads(self) -> list[dict]:
        return [json.loads(e) for e in self.events if e != "[DONE]"]


def _start(serve: ServerFactory, tiny_long_model_dir: Path, tiny_adapters, drain: float, grace: float):
    env = {"SWITCHBOARD_DRAIN_DELAY_S": str(drain), "SWITCHBOARD_SHUTDOWN_GRACE_S": str(grace)}
    server = serve(model=tiny_long_model_dir, adapters={"alpha": tiny_adapters["alpha"]}, max_model_len=1024, env=env)
    streams = [Stream(server.url) for _ in range(3)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(60)
    assert not any(s.done for s in streams)  # in flight when the signal comes
    server.process.send_signal(signal.SIGTERM)
    return server, streams


def _exits_cleanly(process: subprocess.Popen, log: str) -> None:
    assert process.wait(timeout=60) == 0, log
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


def test_sigterm_drains_then_lets_streams_finish(serve: ServerFactory, tiny_long_model_dir: Path, tiny_adapters):
    server, streams = _start(serve, tiny_long_model_dir, tiny_adapters, drain=3, grace=60)
    wait_for(lambda: httpx.get(f"{server.url}/ready", timeout=5).status_code == 503, 2, "/ready to answer 503")
    refused = httpx.post(f"{server.url}/v1/chat/completions", json={**LONG, "stream": False}, timeout=10)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
    assert refused.headers["retry-after"] == "1"
    for stream in streams:
        stream.join(120)
        assert stream.done, stream.events[-3:]
        payloads = stream.payloads()
        assert payloads[-1]["choices"][0]["finish_reason"] == "length"  # all 400 tokens, nothing cut
        assert all("error" not in p for p in payloads)
    _exits_cleanly(server.process, server.output())
    assert "draining" in server.output()


def test_streams_past_the_grace_period_end_with_an_error_event(
    serve: ServerFactory, tiny_long_model_dir: Path, tiny_adapters
):
    server, streams = _start(serve, tiny_long_model_dir, tiny_adapters, drain=0, grace=0.2)
    started = time.monotonic()
    for stream in streams:
        stream.join(60)
        assert stream.done, stream.events[-3:]
        last = stream.payloads()[-1]
        assert last["error"]["type"] == "server_error", last
    assert time.monotonic() - started < 30
    _exits_cleanly(server.process, server.output())
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)
