"""The OpenAPI document says what the server answers: OpenAI's error body under every error status, no FastAPI
422, the true media types, and the same for a router added later (api/openapi.py). Read from /openapi.json of
an app that is not started (the document needs no model)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from pydantic import BaseModel

ERROR_REF = "#/components/schemas/ErrorResponse"


class KeyBody(BaseModel):
    name: str


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    from switchboard.app import create_app
    from switchboard.config import Settings

    resp = TestClient(create_app(Settings())).get("/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_no_fastapi_422_or_its_schema_anywhere(document: dict[str, Any]):
    assert "HTTPValidationError" not in str(document) and "ValidationError" not in document["components"]["schemas"]
    for method, path, op in operations(document):
        if "422" in op["responses"]:  # only where an adapter is registered: AdapterIncompatible
            assert path in ("/admin/adapters", "/v1/load_lora_adapter"), f"{method} {path}"


def test_every_error_status_of_every_operation_is_the_openai_error_as_json(document: dict[str, Any]):
    assert set(document["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error"}
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}
    for method, path, op in operations(document):
        errors = {s: r for s, r in op["responses"].items() if int(s) >= 400}
        assert "503" in errors, f"{method} {path}"
        if "requestBody" in op:
            assert {"400", "413"} <= set(errors), f"{method} {path}"
        for status, response in errors.items():
            if (path, status) == ("/ready", "503"):
                continue  # "loading": a readiness probe's answer, not an error body
            assert response["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}, f"{method} {path}"


def test_statuses_follow_the_keys_each_operation_takes(document: dict[str, Any]):
    for method, path, op in operations(document):
        schemes = {name for requirement in op.get("security", []) for name in requirement}
        statuses = set(op["responses"])
        if path.startswith("/admin") or path.endswith("_lora_adapter"):
            assert schemes == {"AdminKey"} and {"401", "403"} <= statuses, f"{method} {path}"
        elif path.startswith("/v1"):
            assert schemes == {"ApiKey"} and "401" in statuses, f"{method} {path}"
        else:
            assert not schemes and "401" not in statuses, f"{method} {path}"
    assert {"404", "429"} <= set(document["paths"]["/v1/chat/completions"]["post"]["responses"])
    assert {"404", "409"} <= set(document["paths"]["/admin/aliases/{alias}"]["put"]["responses"])


def test_media_types_are_the_ones_served(document: dict[str, Any]):
    def ok(path: str, method: str = "get") -> set[str]:
        return set(document["paths"][path][method]["responses"]["200"]["content"])

    assert ok("/metrics") == {"text/plain"}
    assert (
        ok("/v1/chat/completions", "post") == ok("/v1/completions", "post") == {"application/json", "text/event-stream"}
    )
    assert ok("/admin/experiments/{name}") == {"application/json", "text/plain", "text/markdown"}
    assert ok("/v1/load_lora_adapter", "post") == {"text/plain"}
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    assert chat["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    assert {"X-Adapter", "X-Request-Id"} <= set(chat["headers"])


def test_every_json_answer_has_a_schema(document: dict[str, Any]):
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                assert schema, f"{method} {path} {status}: an empty schema checks nothing"


def test_a_router_added_later_gets_the_error_schema_without_work_of_its_own():
    """As an /admin/keys router would: it depends on require_admin and takes a body, nothing more."""
    from switchboard.api.auth import require_admin
    from switchboard.app import create_app
    from switchboard.config import Settings

    later = APIRouter(prefix="/admin/keys", dependencies=[Depends(require_admin)])

    @later.post("")
    async def add_key(body: KeyBody) -> dict[str, str]:
        return {"name": body.name}

    app = create_app(Settings())
    app.include_router(later)
    op = TestClient(app).get("/openapi.json").json()["paths"]["/admin/keys"]["post"]
    assert {"400", "401", "403", "413", "503"} <= set(op["responses"]) and "422" not in op["responses"]
    assert op["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}


def test_docs_list_each_operations_error_statuses(document: dict[str, Any]):
    """docs/api.md's per-endpoint table says what /openapi.json declares (503, everywhere, aside)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    table = text.split("| endpoint | error statuses |")[1].split("\n\n")[0].splitlines()[2:]
    documented: dict[str, set[str]] = {}
    for line in table:
        endpoints, statuses = (c.strip() for c in line.strip().strip("|").split("|"))
        for endpoint in re.findall(r"`([A-Z]+ [^`]+)`", endpoints):
            documented[endpoint] = set(re.findall(r"\b\d{3}\b", statuses)) - {"503"}
    for method, path, op in operations(document):
        name = f"{method} {path}".replace("{model_id}", "{id}").replace("{name_ref}", "{name}")
        declared = {s for s in op["responses"] if int(s) >= 400} - {"503"}
        assert documented.get(name) == declared, f"docs/api.md: {name} answers {sorted(declared)}"
