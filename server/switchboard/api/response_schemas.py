"""What the endpoints answer, as models for the OpenAPI document only: the handlers build their JSON themselves
(the hot paths skip a second validation), and tests/test_fuzz.py checks every answer against these schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .schemas import Usage

# OpenAPI 3.1: the `schema` of text/event-stream describes one event (3.2 calls it itemSchema)
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "with `stream: true`: one event per chunk (chat.completion.chunk / text_completion), an "
            "error event if generation fails after the first, then `data: [DONE]`",
            "required": ["data"],
            "properties": {
                "data": {"type": "string", "description": "a chunk or an error as JSON text, or [DONE] at the end"},
                "event": {"type": "string"},
            },
        }
    }
}
SERVED_BY = {
    "X-Adapter": {
        "description": "what served it: name@version, or base",
        "schema": {"type": "string"},
        "required": True,
    },
    "X-Request-Id": {
        "description": "the caller's X-Request-Id when it sent a sane one, else the response's id",
        "schema": {"type": "string"},
        "required": True,
    },
    "X-Experiment": {"description": "experiment/variant, when an A/B split chose it", "schema": {"type": "string"}},
}


def text(description: str, *media_types: str) -> dict[str, Any]:
    """A 200 answered in plain text (one schema per media type)."""
    return {"content": {m: {"schema": {"type": "string"}} for m in media_types}, "description": description}


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"]
    function: dict[str, Any] = Field(description="{name, arguments}: arguments is JSON text")


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage
    system_fingerprint: str | None


class ModelCard(BaseModel):
    """OpenAI's model object plus where it comes from; adapters add `version`, aliases `alias_of`, experiments
    `experiment`, the base model `max_model_len`."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    root: str
    parent: str | None
    version: str | None = None
    alias_of: str | None = None
    max_model_len: int | None = None
    experiment: dict[str, Any] | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    cpu: dict[str, Any]
    engine: dict[str, Any] | None = None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "loading"]
    model: str | None = None
    pending: int | None = None
    running: int | None = None
    registry: str | None = None
    unavailable: dict[str, str] | None = None


class FeedbackResult(BaseModel):
    id: str
    adapter: str
    experiment: str | None
    variant: str | None


class AdapterVersion(BaseModel):
    version: str
    ref: str
    path: str
    pinned: bool
    created: float | None
    resident: bool
    in_flight: int
    load_s: float | None
    manifest: dict[str, Any] | None


class AdapterEntry(BaseModel):
    name: str
    current: str | None
    versions: list[AdapterVersion]
    aliases: list[str]


class AdapterList(BaseModel):
    adapters: list[AdapterEntry]
    aliases: dict[str, str]
    alias_history: dict[str, list[str]]
    experiments: list[str]
    resident: list[str]
    max_resident: int
    adapter_roots: list[str]


class Registered(BaseModel):
    ref: str
    name: str
    version: str
    alias: str | None
    pinned: bool
    path: str


class Removed(BaseModel):
    removed: list[str]


class Deleted(BaseModel):
    deleted: str


class AliasSet(BaseModel):
    alias: str
    target: str
    previous: str | None = None


class ExperimentState(BaseModel):
    """An experiment as stored: its variants in order (the first is the control), state and guardrails."""

    experiment: str
    variants: list[dict[str, Any]]
    control: str
    sticky: str
    state: str
    winner: str | None
    alias: str | None


class ExperimentList(BaseModel):
    experiments: list[ExperimentState]


class Concluded(ExperimentState):
    previous: str | None
