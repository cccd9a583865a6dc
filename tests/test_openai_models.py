"""GET /v1/models and /v1/models/{id} on the real server, with the official openai client: every id that
/v1/models lists (and `name@version`) retrieves as the same object, anything else is a 404, and both
answer under a route prefix, so a client whose base_url carries the prefix can list models."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from .conftest import Server, ServerFactory

BASE_ID = "acme/tiny-base"  # a slash on purpose: the client sends it as %2F
ADMIN = {"Authorization": "Bearer sk-admin"}
ROUTE = "{adapter: alpha, path_prefix: /scenarios/alpha/}"


@pytest.fixture(scope="module")
def models_server(serve_module: ServerFactory, tmp_path_factory, root: Path) -> Server:
    """The tiny model served as BASE_ID, a path rule, and `live` at two versions with an alias on v1."""
    server = serve_module(
        "--served-model-name", BASE_ID, "--route", ROUTE,
        adapters={"alpha": root / "alpha"}, adapter_root=root, admin_key="sk-admin", max_model_len=128,
    )  # fmt: skip
    for src in ("beta", "gamma"):
        resp = httpx.post(f"{server.url}/admin/adapters", json={"name": "live", "path": str(root / src)}, headers=ADMIN)
        assert resp.status_code == 201, resp.text
    resp = httpx.put(f"{server.url}/admin/aliases/prod", json={"target": "live@v1"}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return server


def client_at(server: Server, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}{prefix}/v1", api_key="unused", max_retries=0, timeout=30)


def test_every_listed_model_retrieves_as_its_list_entry(models_server: Server):
    client = client_at(models_server)
    listed = {m.id: m.model_dump() for m in client.models.list().data}
    assert list(listed) == [BASE_ID, "alpha", "live", "prod"]
    for model_id, entry in listed.items():
        assert client.models.retrieve(model_id).model_dump() == entry
    assert listed["live"]["version"] == "v2" and listed["prod"]["alias_of"] == "live@v1"
    assert listed[BASE_ID]["parent"] is None and listed[BASE_ID]["object"] == "model"


def test_name_at_version_retrieves_that_version(models_server: Server):
    client = client_at(models_server)
    old = client.models.retrieve("live@v1").model_dump()
    current = client.models.retrieve("live").model_dump()
    assert old["id"] == "live@v1" and old["version"] == "v1" and old["parent"] == BASE_ID
    assert old["root"] != current["root"]
    assert set(old) == set(current)  # the same fields as a list entry
    assert client.models.retrieve("live@v2").model_dump() == {**current, "id": "live@v2"}


@pytest.mark.parametrize("missing", ["nope", "live@v9", "acme", "base"])
def test_unknown_model_is_404_in_openai_error_json_naming_the_available(models_server: Server, missing: str):
    with pytest.raises(openai.NotFoundError) as caught:
        client_at(models_server).models.retrieve(missing)
    error = caught.value.response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("not_found_error", "model", "model_not_found")
    assert error["message"].startswith(f"model '{missing}' not found; available: {BASE_ID}, alpha, live, prod")


@pytest.mark.parametrize("prefix", ["/scenarios/alpha", "/any/other/prefix"])
def test_models_answer_under_a_route_prefix(models_server: Server, prefix: str):
    plain, prefixed = client_at(models_server), client_at(models_server, prefix)
    assert prefixed.models.list().model_dump() == plain.models.list().model_dump()
    assert prefixed.models.retrieve(BASE_ID).model_dump() == plain.models.retrieve(BASE_ID).model_dump()
    assert prefixed.models.retrieve("live@v1").id == "live@v1"
    with pytest.raises(openai.NotFoundError):
        prefixed.models.retrieve("nope")


def test_prefixed_base_url_lists_then_chats_through_its_rule(models_server: Server):
    """What a frontend configured with the prefixed base URL does: list, pick the base model, chat."""
    client = client_at(models_server, "/scenarios/alpha")
    base = next(m.id for m in client.models.list().data if getattr(m, "parent", "") is None)
    raw = client.chat.completions.with_raw_response.create(
        model=base, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert raw.headers["x-adapter"] == "alpha@v1"


def test_prefixed_forms_stay_out_of_the_openapi_schema(models_server: Server):
    paths = httpx.get(f"{models_server.url}/openapi.json").json()["paths"]
    assert {p for p in paths if "/models" in p} == {"/v1/models", "/v1/models/{model_id}"}
