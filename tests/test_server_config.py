"""A server started from a YAML config: route rules, default adapter and inference keys, end to end."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
import yaml

from .conftest import Server, ServerFactory

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def configured(
    serve_module: ServerFactory, tmp_path_factory, tiny_model_dir: Path, tiny_adapters: dict[str, Path]
) -> Server:
    root = tmp_path_factory.mktemp("configured")
    adapter_dir = root / "adapters"
    adapter_dir.mkdir()
    for name, path in tiny_adapters.items():  # an adapter dir: every PEFT dir inside is served by its name
        (adapter_dir / name).symlink_to(path, target_is_directory=True)
    (adapter_dir / "not-an-adapter").mkdir()
    config = root / "switchboard.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "served_model_name": "tiny-base",
                "dtype": "float32",
                "adapter_dir": str(adapter_dir),
                "default_adapter": "gamma",
                "api_keys": ["sk-team-a", "sk-team-b"],
                "routes": [
                    {"adapter": "alpha", "path_prefix": "/scenarios/alpha/"},
                    {"adapter": "beta", "header": "X-Scenario", "value": "beta"},
                    {"adapter": "base", "api_key": "sk-team-b"},
                ],
            }
        )
    )
    return serve_module(config=config, max_model_len=128)


def served(
    server: Server,
    path: str = "/v1/chat/completions",
    key: str = "sk-team-a",
    model: str = "tiny-base",
    headers: dict | None = None,
) -> str:
    resp = httpx.post(
        server.url + path,
        json={"model": model, "messages": MSG, "max_tokens": 2},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.headers["x-adapter"]


def test_adapter_dir_is_served_by_dir_name(configured: Server):
    client = openai.OpenAI(base_url=configured.v1, api_key="sk-team-a", max_retries=0)
    ids = sorted(m.id for m in client.models.list().data)
    assert ids == ["alpha", "beta", "gamma", "tiny-base"]


def test_default_adapter_for_plain_requests(configured: Server):
    assert served(configured) == "gamma@v1"


def test_path_rule(configured: Server):
    assert served(configured, "/scenarios/alpha/v1/chat/completions") == "alpha@v1"
    client = openai.OpenAI(base_url=configured.url + "/scenarios/alpha/v1", api_key="sk-team-a", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="tiny-base", messages=MSG, max_tokens=2)
    assert raw.headers["x-adapter"] == "alpha@v1"


def test_header_rule_and_api_key_rule(configured: Server):
    assert served(configured, headers={"X-Scenario": "beta"}) == "beta@v1"
    assert served(configured, headers={"X-Scenario": "other"}) == "gamma@v1"
    assert served(configured, key="sk-team-b") == "base"


def test_a_key_rule_binds_its_key_against_the_header_and_the_model(configured: Server):
    for headers, model in (({"X-Adapter": "alpha"}, "tiny-base"), ({}, "alpha"), ({"X-Adapter": "alpha"}, "alpha")):
        resp = httpx.post(
            configured.url + "/v1/chat/completions",
            json={"model": model, "messages": MSG, "max_tokens": 2},
            headers={"Authorization": "Bearer sk-team-b", **headers},
            timeout=30,
        )
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_forbidden"
        assert "bound by a route rule to base" in resp.json()["error"]["message"]
    assert served(configured, key="sk-team-b", headers={"X-Adapter": "base"}) == "base"
    assert served(configured, key="sk-team-a", headers={"X-Adapter": "alpha"}) == "alpha@v1"  # other keys: as before


def test_model_name_beats_rules(configured: Server):
    assert served(configured, "/scenarios/alpha/v1/chat/completions", model="beta") == "beta@v1"


def test_inference_keys_required(configured: Server):
    no_key = httpx.post(configured.url + "/v1/chat/completions", json={"model": "tiny-base", "messages": MSG})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    client = openai.OpenAI(base_url=configured.v1, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="tiny-base", messages=MSG, max_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_key_match_is_exact_and_checks_every_candidate():
    from switchboard.api.auth import matches

    assert matches("sk-b", ["sk-a", "sk-b", "sk-c"]) and matches("密钥", ["密钥"])
    assert not matches("sk-", ["sk-a"]) and not matches("sk-ab", ["sk-a"]) and not matches("x", [])
