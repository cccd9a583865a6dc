"""The OpenAPI document says what the server really answers, so schema-based tools (schemathesis, generated
clients) can check error bodies too: OpenAI's error JSON under every status an operation can return, no
FastAPI 422 (validation errors are 400s, api/errors.py), and the true media types (SSE, Prometheus text).

`install_openapi(app)` rewrites the document once, when it is first asked for, so routers added later get the
same treatment without work of their own. What each operation can return:
- 503 always (the server still starting or draining, an engine failure, and the catch-all for the unexpected);
- 400 when it takes a body or query parameters (validation), 413 when it takes a body (`max_body_bytes`);
- 401 and 403 when it needs the admin key (`AdminKey` security, from `require_admin`), 401 when it takes
  inference keys (`ApiKey`, from `check_inference_key`);
- and what a route declares with `responses=errors(404, 409, ...)` (its own statuses: unknown names, conflicts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

ERROR_REF = "#/components/schemas/ErrorResponse"
STATUS_TEXT = {
    400: "Invalid request: malformed JSON, a wrong type or value, a prompt over the context window",
    401: "Missing or wrong key (`Authorization: Bearer <key>`)",
    403: "Not allowed with this key, or the admin API is off",
    404: "Unknown adapter, model, alias, experiment or completion; the message lists what exists",
    409: "Conflicts with the registry's state (a name taken, nothing to roll back to, an experiment ended)",
    413: "Request body over `max_body_bytes`",
    422: "The adapter cannot be served on this base model (wrong base, shape, or not a PEFT dir)",
    429: "The server is at capacity (`max_queue`); retry after `Retry-After`",
    503: "Not serving: still starting, shutting down, the engine or shared registry unavailable, or an internal "
    "error (never a 500)",
}
# what each security scheme's dependency can refuse with
SECURITY_STATUSES = {"AdminKey": (401, 403), "ApiKey": (401,)}


class ErrorDetail(BaseModel):
    message: str = Field(description="what went wrong and the way out, naming the field or thing at fault")
    type: str = Field(description="OpenAI's error type: invalid_request_error, authentication_error, ...")
    param: str | None = Field(description="the request field at fault (dotted path), if one is")
    code: str | None = Field(
        description="a stable code: invalid_request, model_not_found, context_length_exceeded, ..."
    )


class ErrorResponse(BaseModel):
    """Every error, whatever the status: OpenAI's shape."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error statuses (the common ones are added for every operation)."""
    return {status: {"model": ErrorResponse, "description": STATUS_TEXT[status]} for status in statuses}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def operation_statuses(operation: dict[str, Any]) -> set[int]:
    """The error statuses every operation of this shape can return (see the module docstring)."""
    statuses = {503}
    takes_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
    if "requestBody" in operation:
        statuses |= {400, 413}
    elif takes_query:
        statuses.add(400)
    for requirement in operation.get("security", []):
        for scheme in requirement:
            statuses.update(SECURITY_STATUSES.get(scheme, (401,)))
    return statuses


def describe_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a FastAPI OpenAPI document in place: FastAPI's 422 out, ErrorResponse (as JSON, whatever the
    route's own media type) under every error status each operation can return."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    error_content = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            validation = responses.get("422")
            if validation is not None and "#/components/schemas/HTTPValidationError" in _refs(validation):
                del responses["422"]
            for status in operation_statuses(operation):
                responses.setdefault(str(status), {"description": STATUS_TEXT[status]})
            for status, response in responses.items():
                if int(status) >= 400 and (ERROR_REF in _refs(response) or "content" not in response):
                    response["content"] = dict(error_content)
            operation["responses"] = dict(sorted(responses.items()))
    if "#/components/schemas/HTTPValidationError" not in _refs(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten document at /openapi.json (built on first use, after every router is in)."""
    build: Callable[[], dict[str, Any]] = app.openapi  # FastAPI's: rebuilt when routes change, else cached
    described: list[int] = []

    def openapi() -> dict[str, Any]:
        schema = build()
        if described != [id(schema)]:
            described[:] = [id(describe_errors(schema))]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
