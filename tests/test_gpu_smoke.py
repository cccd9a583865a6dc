"""Checks of deploy/gpu-smoke.sh: valid bash, shellcheck, the flags and settings it uses are real, and the whole
script run on the CPU (hf engine, tiny model) passes, and fails and stops the server when something is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from switchboard.cli import add_settings_flags
from switchboard.config import Settings

from tests.deploy_support import DEPLOY, _tool

SMOKE = DEPLOY / "gpu-smoke.sh"


def test_gpu_smoke_is_valid_bash():
    assert os.access(SMOKE, os.X_OK), "deploy/gpu-smoke.sh must be executable"
    result = subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_gpu_smoke_passes_shellcheck():
    shellcheck = _tool("shellcheck")
    result = subprocess.run([shellcheck, str(SMOKE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_smoke_env_and_flags_are_real(monkeypatch):
    """The flags the script passes to `switchboard serve` parse; the SWITCHBOARD_* names it uses are settings."""
    text = SMOKE.read_text()
    for name in set(re.findall(r"\bSWITCHBOARD_[A-Z_]+", text)):
        assert name.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{name} is no setting"
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text.split("args=(serve", 1)[1].split("\nfi\n", 1)[0]))
    serve = argparse.ArgumentParser()
    serve.add_argument("--config")
    add_settings_flags(serve)
    known = {option for action in serve._actions for option in action.option_strings}
    assert flags and flags <= known, f"not flags of switchboard serve: {sorted(flags - known)}"


def test_gpu_smoke_runs_end_to_end_on_the_cpu(tmp_path, tiny_model_dir, tiny_adapters):
    """The whole script, with SMOKE_REQUIRE_CUDA=0 and the hf engine on the tiny model: the server starts, the
    mixed traffic, the runtime registration and the /metrics checks pass, the figures are written, the server
    is stopped."""
    adapters = tmp_path / "adapters"
    for name, path in tiny_adapters.items():
        shutil.copytree(path, adapters / name)
    out = tmp_path / "out"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SMOKE_"))},
        "SMOKE_ENGINE": "hf",
        "SMOKE_REQUIRE_CUDA": "0",
        "SMOKE_MODEL_DIR": str(tiny_model_dir),
        "SMOKE_ADAPTERS": str(adapters),
        "SMOKE_OUT": str(out),
        "SMOKE_PYTHON": sys.executable,
        "SMOKE_REQUESTS": "8",
        "SMOKE_CONCURRENCY": "4",
        "SMOKE_MAX_TOKENS": "4",
        "SMOKE_READY_TIMEOUT": "240",
    }
    result = subprocess.run(["bash", str(SMOKE)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    figures = json.loads((out / "gpu-smoke.json").read_text())
    assert figures["failures"] == []
    assert figures["mixed"]["ok"] == 8 and figures["after_registration"]["ok"] == 8
    assert figures["metrics"]["alpha@v2"]["requests"] > 0
    assert "output tok/s" in (out / "gpu-smoke.md").read_text()
    assert "gpu-smoke: OK" in result.stdout
    pid = int(re.search(r"server pid (\d+)", result.stdout).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped


@pytest.mark.parametrize("broken", ["adapters", "model"])
def test_gpu_smoke_fails_and_stops_the_server_on_a_failure(tmp_path, tiny_model_dir, tiny_adapters, broken):
    adapters = tmp_path / "adapters"
    for name, path in list(tiny_adapters.items())[: 2 if broken == "adapters" else 3]:
        shutil.copytree(path, adapters / name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "SMOKE_"))},
        "SMOKE_ENGINE": "hf",
        "SMOKE_REQUIRE_CUDA": "0",
        "SMOKE_MODEL_DIR": str(tmp_path / "no-model" if broken == "model" else tiny_model_dir),
        "SMOKE_ADAPTERS": str(adapters),
        "SMOKE_OUT": str(tmp_path / "out"),
        "SMOKE_PYTHON": sys.executable,
        "SMOKE_READY_TIMEOUT": "120",
    }
    result = subprocess.run(["bash", str(SMOKE)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "gpu-smoke: FAIL" in result.stderr
    pids = re.findall(r"server pid (\d+)", result.stdout)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
