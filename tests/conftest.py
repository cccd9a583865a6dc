"""Shared fixtures: a tiny random Gemma 3 model with the real tokenizer, real PEFT adapters, and real
servers (uvicorn on 127.0.0.1 in a subprocess) for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

CACHE_DIR = Path(os.environ.get("SWITCHBOARD_CACHE_DIR", Path.home() / ".cache" / "switchboard"))
ADAPTER_SPECS = {
    # name: (rank, target modules, seed): different shapes on purpose
    "alpha": (4, ["q_proj", "v_proj"], 1),
    "beta": (8, ["q_proj", "k_proj", "v_proj", "o_proj"], 2),
    "gamma": (2, ["gate_proj", "up_proj", "down_proj"], 3),
}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`figures(text)`: text for the run's summary, printed even when the test passes and even from a pytest-xdist
    worker (whose own output the run does not show): CI's log keeps what a test measured."""
    return lambda text: request.node.user_properties.append(("figures", text))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    texts = [
        value
        for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        for key, value in getattr(report, "user_properties", ())
        if key == "figures"
    ]
    if texts:
        terminalreporter.section("figures")
        for text in texts:
            terminalreporter.write_line(text)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded default model, converted once (cached across runs)."""
    from switchboard.models import resolve_model_dir

    return resolve_model_dir("gemma3-270m", CACHE_DIR)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_dir: Path) -> Path:
    """A 4-layer random Gemma 3 (sliding window 8, so tests cross it) with the real Gemma tokenizer; its weights are
    fp16-exact, so the engine holds them in fp16 as it does the embedded model's."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, GenerationConfig

    out = tmp_path_factory.mktemp("tiny-gemma")
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=[1, 106],
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    with (
        torch.no_grad()
    ):  # fp16-exact values, as the embedded model's GGUF-derived ones: `weights: auto` holds them in fp16
        for param in model.parameters():
            param.copy_(param.half().float())
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_long_model_dir(tmp_path_factory, tiny_model_dir: Path) -> Path:
    """The tiny model with room for 1,024 positions (its config says 256; the random weights do not care how
    far RoPE goes): for tool descriptions and long generations."""
    model = tmp_path_factory.mktemp("tiny-1k") / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))
    return model


def make_adapter(model_dir: Path, out: Path, rank: int, targets: list[str], seed: int, scale: float = 1.0) -> Path:
    """A real PEFT LoRA adapter with non-zero B, so it changes the model's output."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(base, config)
    if scale != 1.0:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.mul_(scale)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tmp_path_factory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-adapters")
    return {
        name: make_adapter(tiny_model_dir, root / name, rank, targets, seed)
        for name, (rank, targets, seed) in ADAPTER_SPECS.items()
    }


def copy_adapters(adapters: dict[str, Path], root: Path) -> Path:
    """Copy the fixture adapters into `root` (an adapter root that runtime registration may use)."""
    for name, path in adapters.items():
        shutil.copytree(path, root / name)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_adapters: dict[str, Path]) -> Path:
    """An adapter root holding copies of the fixture adapters (and, later, the tests' own)."""
    return copy_adapters(tiny_adapters, tmp_path_factory.mktemp("adapter-root"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running `switchboard serve` subprocess, with what it was started with (for a restart)."""

    process: subprocess.Popen
    port: int
    log: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    state: Path | None = None
    timeout: float = 240

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float, what: str = "server") -> None:
    """Wait until `url`/ready answers 200; fail at once, with the log's tail, if the process exits."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout, f"the {what} to be ready", interval=0.2)


def start_server(
    args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 240, state: Path | None = None
) -> Server:
    """A plain `switchboard serve <args>` on a free port, logging to `log`; the caller stops it (`stop_server`)."""
    port = free_port()
    cmd = [sys.executable, "-m", "switchboard.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    # each server gets its own registry state unless the test passes --state-dir (or `state`, for a restart)
    state = state or log.with_name(log.stem + "-state")
    full_env = {
        **os.environ,
        "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR),
        "SWITCHBOARD_STATE_DIR": str(state),
        "SWITCHBOARD_DRAIN_DELAY_S": "0",  # stopping a test server need not wait for load balancers
        **(env or {}),
    }
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=full_env)
    server = Server(process, port, log, list(args), dict(env or {}), state, timeout)
    wait_ready(process, server.url, log, timeout)
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


TINY = "tiny"  # `model=TINY`: the tiny model of `tiny_model_dir`


class ServerFactory:
    """Starts `switchboard serve` with the common arguments, each overridable, and stops every server it
    started at `close()` (the `serve` / `serve_module` fixtures call it at teardown).

    `serve(*extra, model=TINY, dtype="float32", adapter_dir=None, adapters=None, adapter_root=None,
    state_dir=None, admin_key=None, config=None, max_model_len=None, env=None, timeout=240)`:
    - model: a model dir, TINY (the default) or None for no `--model` (the embedded default model);
    - dtype: `--dtype`, None for none (auto);
    - adapter_dir: `--adapter-dir`; None: a fresh empty dir;
    - adapters: static adapters, `{name: path}` -> `--adapter name=path`;
    - adapter_root, state_dir, admin_key: `--adapter-root`, `--state-dir`, `--admin-key` when given;
    - config: `--config FILE` alone (the file carries model, dtype and adapter dir);
    - max_model_len: SWITCHBOARD_MAX_MODEL_LEN; env: more environment; extra: more arguments as they are.
    """

    def __init__(self, request: pytest.FixtureRequest, name: str = "server"):
        self.request = request
        self.name = name
        self.servers: list[Server] = []

    def __call__(
        self,
        *extra: str,
        model: Path | str | None = TINY,
        dtype: str | None = "float32",
        adapter_dir: Path | None = None,
        adapters: dict[str, Path] | None = None,
        adapter_root: Path | None = None,
        state_dir: Path | None = None,
        admin_key: str | None = None,
        config: Path | None = None,
        max_model_len: int | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 240,
    ) -> Server:
        work = self.request.getfixturevalue("tmp_path_factory").mktemp(self.name)
        if config is not None:
            args = ["--config", str(config)]
        else:
            if model == TINY:
                model = self.request.getfixturevalue("tiny_model_dir")
            if adapter_dir is None:
                adapter_dir = work / "empty"
                adapter_dir.mkdir()
            args = ["--model", str(model)] if model is not None else []
            args += ["--dtype", dtype] if dtype is not None else []
            args += ["--adapter-dir", str(adapter_dir)]
        for name, path in (adapters or {}).items():
            args += ["--adapter", f"{name}={path}"]
        for flag, value in (("--adapter-root", adapter_root), ("--state-dir", state_dir), ("--admin-key", admin_key)):
            args += [flag, str(value)] if value is not None else []
        env = {**({"SWITCHBOARD_MAX_MODEL_LEN": str(max_model_len)} if max_model_len else {}), **(env or {})}
        server = start_server([*args, *extra], work / "server.log", env=env, timeout=timeout)
        self.servers.append(server)
        return server

    def restart(self, server: Server) -> Server:
        """Stop `server` (if a test has not killed it already) and start it again with the same arguments,
        environment and state, on a new port and log."""
        stop_server(server)
        log = server.log.with_name(f"restart-{len(self.servers)}.log")
        again = start_server(server.args, log, env=server.env, timeout=server.timeout, state=server.state)
        self.servers.append(again)
        return again

    def close(self) -> None:
        for server in self.servers:
            stop_server(server)


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """The server factory for one test: every server it starts is stopped after the test."""
    factory = ServerFactory(request)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def serve_module(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """The same factory for module-scoped server fixtures: its servers are stopped after the module."""
    factory = ServerFactory(request)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def tiny_server(request: pytest.FixtureRequest, tiny_adapters: dict[str, Path]) -> Iterator[Server]:
    """The real server on the tiny model (fp32, so batched and single rows agree exactly)."""
    factory = ServerFactory(request, "tiny-server")
    yield factory(adapters=tiny_adapters, max_model_len=256)
    factory.close()


# PostgreSQL for the shared-registry tests: the server named by SWITCHBOARD_TEST_POSTGRES (default the
# local one: trust auth, database `test`). Each test gets a database of its own, dropped afterwards.
# Unreachable: the tests skip, saying how to run them; in CI (SWITCHBOARD_REQUIRE_POSTGRES=1) they fail.
POSTGRES = os.environ.get("SWITCHBOARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database on the test PostgreSQL server, dropped afterwards (skip or fail if unreachable)."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {POSTGRES} ({exc}); start one or set SWITCHBOARD_TEST_POSTGRES"
        if os.environ.get("SWITCHBOARD_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"sb_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_db(POSTGRES, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url_module() -> Iterator[str]:
    """One database for a whole test module (its replicas share it)."""
    with fresh_database() as url:
        yield url


def _with_db(url: str, name: str) -> str:
    """`url` (postgresql://…/db) pointing at database `name`."""
    head, _, tail = url.rpartition("/")
    query = tail.partition("?")[2]
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(params=["json", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """A maker of registry stores, once per kind: the same rules on both stores, the JSON file (one process)
    and PostgreSQL (replicas; skipped or failed like every PostgreSQL test when the server is unreachable)."""
    from switchboard.registry.store import JsonStore

    if request.param == "json":
        return lambda: JsonStore(tmp_path)
    from switchboard.registry.postgres import PostgresStore

    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)
