"""The bundled scenario adapters: built from the bundled data, served by the bundled config, and each
showing its scenario's convention."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx
import pytest
from switchboard_trainer.config import load_config
from switchboard_trainer.data import files_hash

from .conftest import Server, ServerFactory

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("pre-sales", "after-sales", "marketing", "shop")
pytestmark = pytest.mark.slow


def rubric():
    spec = importlib.util.spec_from_file_location("rubric", REPO / "adapters" / "datasets" / "rubric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCENARIOS)
def test_adapter_is_built_from_the_bundled_data(name: str):
    """A changed dataset without a rebuild fails here."""
    config = load_config(REPO / "adapters" / "configs" / f"{name}.yaml")
    manifest = json.loads((config.output_dir / "manifest.json").read_text())
    assert manifest["data"]["sha256"] == files_hash(config.data_files()), (
        f"adapters/{name} was trained on other data: rebuild with switchboard train adapters/configs/{name}.yaml"
    )
    assert (config.output_dir / "adapter_model.safetensors").is_file()
    assert manifest["metrics"]["best_eval_loss"] is not None


def test_datasets_are_what_the_generator_writes():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "adapters" / "datasets" / "build_datasets.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def bundled(serve_module: ServerFactory, default_model_dir: Path) -> Server:
    return serve_module(config=REPO / "adapters" / "switchboard.yaml")


def ask(
    server: Server,
    question: str,
    path: str = "/v1/chat/completions",
    headers: dict | None = None,
    model: str = "gemma3-270m",
) -> tuple[str, str]:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 64, "temperature": 0}
    r = httpx.post(server.url + path, json=body, headers=headers or {}, timeout=300)
    assert r.status_code == 200, r.text
    return r.headers["x-adapter"], r.json()["choices"][0]["message"]["content"]


def test_bundled_adapters_are_listed(bundled: Server):
    ids = {m["id"] for m in httpx.get(bundled.v1 + "/models").json()["data"]}
    assert set(SCENARIOS) <= ids


def test_bundled_routes(bundled: Server):
    assert ask(bundled, "你好")[0].startswith("shop@")
    assert ask(bundled, "你好", headers={"X-Scenario": "after-sales"})[0].startswith("after-sales@")
    assert ask(bundled, "你好", path="/scenarios/marketing/v1/chat/completions")[0].startswith("marketing@")
    assert ask(bundled, "你好", model="pre-sales")[0].startswith("pre-sales@")


@pytest.mark.parametrize(
    ("scenario", "question", "check"),
    [
        ("after-sales", "我收到的毯子破了个洞，怎么办？", "order_number"),
        ("marketing", "最近有什么优惠活动吗？", "promotion_named"),
        ("pre-sales", "How much is the Cloud Wool Cardigan?", "language"),
    ],
)
def test_each_adapter_shows_its_convention(bundled: Server, scenario: str, question: str, check: str):
    served, answer = ask(bundled, question, model=scenario)
    result = rubric().score(scenario, question, answer)
    assert result.get(check), (served, answer, result)
