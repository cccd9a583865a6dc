"""Shared fixtures: a tiny random Gemma 3 model with the real tokenizer, real PEFT adapters, and real
servers (uvicorn on 127.0.0.1 in a subprocess) for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded default model, converted once (cached across runs)."""
    from switchboard.models import resolve_model_dir

    return resolve_model_dir("gemma3-270m", CACHE_DIR)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_dir: Path) -> Path:
    """A 4-layer random Gemma 3 (sliding window 8, so tests cross it) with the real Gemma tokenizer."""
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
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=[1, 106], pad_token_id=0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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
    """A running `switchboard serve` subprocess."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 240) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "switchboard.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    # each server gets its own registry state unless the test passes --state-dir
    state = log.with_name(log.stem + "-state")
    full_env = {
        **os.environ,
        "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR),
        "SWITCHBOARD_STATE_DIR": str(state),
        **(env or {}),
    }
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=full_env)
    server = Server(process, port, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout, "the server to be ready", interval=0.2)
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory, tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> Iterator[Server]:
    """The real server on the tiny model (fp32, so batched and single rows agree exactly)."""
    logdir = tmp_path_factory.mktemp("tiny-server")
    (logdir / "empty").mkdir()
    args = ["--model", str(tiny_model_dir), "--dtype", "float32", "--adapter-dir", str(logdir / "empty")]
    for name, path in tiny_adapters.items():
        args += ["--adapter", f"{name}={path}"]
    server = start_server(args, logdir / "server.log", env={"SWITCHBOARD_MAX_MODEL_LEN": "256"})
    yield server
    stop_server(server)
