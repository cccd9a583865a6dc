"""`switchboard serve-ray` on a real local Ray cluster (one per module): 2 engine replicas of the tiny
model, 2 ingress replicas sharing a PostgreSQL registry, 3 adapters, `max_resident_adapters: 2`.

The cluster is started the way KubeRay gives one (`ray start --head`), and `serve-ray` joins it through
RAY_ADDRESS, as it would on Kubernetes. Everything goes through the HTTP API, with real clients.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openai import OpenAI

from .conftest import CACHE_DIR, Server, copy_adapters, free_port, make_adapter, wait_for, wait_ready

try:
    import ray  # noqa: F401 - the extra switchboard[ray]
except ImportError:
    if os.environ.get("SWITCHBOARD_REQUIRE_DEPLOY_TOOLS"):
        raise
    pytest.skip("Ray is not installed: pip install 'switchboard[ray]'", allow_module_level=True)

ADMIN = {"Authorization": "Bearer ray-admin"}
RAY_BIN = Path(sys.executable).with_name("ray")
# Ray 2.60 starts clusters with token authentication, and `ray start --head` wants a token already there
# (~/.ray/auth_token, absent on a fresh machine): the module's cluster and its clients share one by environment
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
ADAPTERS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """A local Ray head (4 logical CPUs on this 2-core machine), stopped with its whole process group."""
    log = tmp_path_factory.mktemp("ray") / "head.log"
    port = free_port()
    cmd = [str(RAY_BIN), "start", "--head", f"--port={port}", "--num-cpus=4", "--object-store-memory=200000000"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", "--block"]
    with open(log, "wb") as out:
        head = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **RAY_ENV}, start_new_session=True
        )
    try:
        wait_for(lambda: "--block" in log.read_text(errors="replace") or head.poll() is not None, 120, "ray start")
        assert head.poll() is None, log.read_text(errors="replace")
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # `ray start --block` stops every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


class RayApp:
    """Starts `switchboard serve-ray` on the module's cluster with the given `ray:` layout; one at a time."""

    def __init__(self, address: str, work: Path, base: dict[str, Any]) -> None:
        self.address, self.work, self.base = address, work, base
        self.server: Server | None = None
        self.runs = 0
        self.port = free_port()  # Serve's HTTP proxy is one per cluster: its first start sets the port

    def start(self, **layout: Any) -> Server:
        self.stop()
        self.runs += 1
        config = self.work / f"ray-{self.runs}.yaml"
        ray_layout = {"replicas": 2, "num_cpus": 1, "ingress_replicas": 2, "max_ongoing_requests": 4, **layout}
        config.write_text(yaml.safe_dump({**self.base, "ray": ray_layout}))
        port = self.port
        log = self.work / f"serve-ray-{self.runs}.log"
        cmd = [sys.executable, "-m", "switchboard.cli", "serve-ray", "--config", str(config)]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, **RAY_ENV, "RAY_ADDRESS": self.address, "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR)}
        with open(log, "wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.server = Server(process, port, log)
        wait_ready(process, self.server.url, log, timeout=300, what="serve-ray")
        return self.server

    def stop(self) -> None:
        if self.server is None:
            return
        process, self.server = self.server.process, None
        process.terminate()  # serve-ray deletes its application from the cluster, which stays up
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def ray_app(ray_cluster, tmp_path_factory, tiny_model_dir, tiny_adapters, postgres_url_module) -> Iterator[RayApp]:
    work = tmp_path_factory.mktemp("serve-ray")
    root = copy_adapters(tiny_adapters, work / "adapters")
    base = {
        "model": str(tiny_model_dir),
        "dtype": "float32",
        "adapter_dir": str(root),
        "state_dir": str(work / "state"),
        "registry": postgres_url_module,
        "admin_key": "ray-admin",
        "max_resident_adapters": 2,
        "max_model_len": 256,
        "log_level": "warning",
    }
    app = RayApp(ray_cluster, work, base)
    app.start()
    yield app
    app.stop()


def test_the_ray_section_lays_out_serve():
    from switchboard.config import load_settings
    from switchboard.ray_serve import build_application, check_layout, engine_replica_options

    fixed = load_settings(None, max_batch_size=8, ray={"replicas": 3, "num_gpus": 1, "num_cpus": 4})
    assert engine_replica_options(fixed) == {
        "ray_actor_options": {"num_cpus": 4, "num_gpus": 1},
        "max_ongoing_requests": 8,
        "num_replicas": 3,
    }
    scaled = load_settings(
        None, ray={"autoscaling": {"min_replicas": 1, "max_replicas": 4}, "max_ongoing_requests": 16}
    )
    options = engine_replica_options(scaled)
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4} and "num_replicas" not in options
    assert options["max_ongoing_requests"] == 16
    assert build_application(scaled) is not None  # builds (runs nothing) with the real Serve classes
    with pytest.raises(ValueError, match="shared by the replicas"):
        check_layout(load_settings(None, ray={"ingress_replicas": 2}))
    check_layout(load_settings(None, registry="postgresql://db/x", ray={"ingress_replicas": 2}))


def chat(url: str, model: str, max_tokens: int = 8, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": max_tokens}
    return httpx.post(f"{url}/v1/chat/completions", json={**body, **extra}, timeout=120)


def replicas(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/admin/replicas", headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["replicas"]


def test_streaming_chat_reaches_the_client_token_by_token_through_serve(ray_app: RayApp):
    server = ray_app.server
    assert server is not None
    client = OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    chat(server.url, "alpha")  # the version is loaded on a replica before timing
    started = time.perf_counter()
    arrivals: list[float] = []
    stream = client.chat.completions.create(
        model="alpha",
        messages=[{"role": "user", "content": "Tell me about your shop"}],
        max_tokens=64,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - started)
    total = time.perf_counter() - started
    assert len(arrivals) >= 32, arrivals  # 64 tokens, a few merged by the detokenizer at most
    spread = arrivals[-1] - arrivals[0]
    print(
        f"\nthrough Serve: first token {arrivals[0] * 1000:.0f} ms, last {arrivals[-1] * 1000:.0f} ms, "
        f"total {total:.2f} s"
    )
    assert arrivals[0] < 0.5 * arrivals[-1] and spread > 0.2 * total, "tokens arrived together, not as made"


def test_the_ingress_answers_exactly_as_one_process_does(ray_app: RayApp):
    server = ray_app.server
    assert server is not None
    ok = chat(server.url, "beta")
    assert ok.status_code == 200 and ok.headers["x-adapter"] == "beta@v1"
    assert ok.json()["object"] == "chat.completion"
    missing = chat(server.url, "nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    bad = chat(server.url, "beta", temperature=5)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    models = httpx.get(f"{server.v1}/models", timeout=30).json()["data"]
    assert set(ADAPTERS) <= {m["id"] for m in models}
    no_key = httpx.get(f"{server.url}/admin/replicas", timeout=30)
    assert no_key.status_code == 401
    assert len(replicas(server.url)) == 2


def test_a_version_registered_through_the_ingress_serves_from_the_shared_registry(
    ray_app: RayApp, tiny_model_dir: Path
):
    server = ray_app.server
    assert server is not None
    path = make_adapter(tiny_model_dir, ray_app.work / "adapters" / "alpha-v2", 4, ["q_proj", "v_proj"], seed=11)
    made = httpx.post(f"{server.url}/admin/adapters", headers=ADMIN, json={"name": "alpha", "path": str(path)})
    assert made.status_code == 201, made.text
    assert made.json()["ref"] == "alpha@v2"

    # both ingress replicas route by the registry in PostgreSQL: every answer soon names the new version
    def all_new() -> bool:
        return all(chat(server.url, "alpha").headers.get("x-adapter") == "alpha@v2" for _ in range(6))

    wait_for(all_new, 15, "both ingress replicas to route alpha to alpha@v2")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: chat(server.url, "alpha@v2", max_tokens=16), range(16)))
    assert {a.status_code for a in answers} == {200}
    served = {r["replica"]: r["requests"].get("alpha@v2", 0) for r in replicas(server.url)}
    print(f"\nalpha@v2 requests per engine replica: {served}")
    assert sum(served.values()) >= 16 + 6


KILL = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="WARNING")
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
name = next(n for n in names if "EngineReplica" in n and n.endswith(sys.argv[2]))
ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
print("killed", name)
"""


def kill_replica(address: str, replica: str) -> None:
    """Kill the engine replica's actor, as a node failure would (from a driver of its own)."""
    env = {**os.environ, **RAY_ENV}
    done = subprocess.run([sys.executable, "-c", KILL, address, replica], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


def test_a_killed_replica_is_replaced_and_in_flight_requests_elsewhere_finish(ray_app: RayApp, ray_cluster: str):
    server = ray_app.server
    assert server is not None
    chat(server.url, "gamma")
    holder = next(r for r in replicas(server.url) if "gamma@v1" in r["resident"])

    def stream_gamma(_: int) -> tuple[int, str | None]:
        body = {"model": "gamma", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 160}
        body |= {"stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        tokens, reason = 0, None
        with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=120) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                reason = next((c["finish_reason"] for c in chunk["choices"] if c["finish_reason"]), reason)
                tokens = (chunk.get("usage") or {}).get("completion_tokens", tokens)
        return tokens, reason

    with ThreadPoolExecutor(3) as pool:
        streams = [pool.submit(stream_gamma, i) for i in range(3)]
        wait_for(lambda: sum(r.get("running", 0) for r in replicas(server.url)) >= 3, 30, "3 gamma streams")
        victim = next(r for r in replicas(server.url) if r["replica"] != holder["replica"])
        assert victim.get("running", 0) == 0, "affinity should keep gamma's requests on its holder"
        kill_replica(ray_cluster, victim["replica"])
        finished = [s.result(timeout=120) for s in streams]
    assert finished == [(160, "length")] * 3, finished

    def replaced() -> bool:
        ids = {r["replica"] for r in replicas(server.url) if "error" not in r}
        return len(ids) == 2 and victim["replica"] not in ids

    started = time.perf_counter()
    wait_for(replaced, 180, "Serve to replace the killed replica", interval=1)
    print(f"\nreplica replaced in {time.perf_counter() - started:.1f} s")
    for name in (*ADAPTERS, "alpha@v2"):
        response = chat(server.url, name)
        assert response.status_code == 200, (name, response.text)


def _loads(url: str, requests: int) -> tuple[int, list[int]]:
    """Send `requests` chat requests cycling over the 3 adapters, 3 at a time; the adapter loads they caused."""
    before = {r["replica"]: r["loads"] for r in replicas(url)}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: chat(url, ADAPTERS[i % 3]), range(requests)))
    assert {a.status_code for a in answers} == {200}
    per_replica = [r["loads"] - before.get(r["replica"], 0) for r in replicas(url)]
    return sum(per_replica), per_replica


def test_adapter_affinity_loads_far_fewer_adapters_than_plain_load_balancing(ray_app: RayApp):
    requests = 36
    server = ray_app.server  # with affinity, as every test before (the loads counted are this workload's)
    assert server is not None
    affinity, affinity_each = _loads(server.url, requests)
    server = ray_app.start(affinity=False)
    plain, plain_each = _loads(server.url, requests)
    print(
        f"\nadapter loads for {requests} requests over 3 adapters, 2 replicas x 2 resident: "
        f"affinity {affinity} {affinity_each}, Serve's plain load balancing {plain} {plain_each}"
    )
    assert affinity <= 6, affinity_each
    assert plain >= 2 * affinity, (affinity_each, plain_each)
