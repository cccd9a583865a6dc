"""Request parsing: what OpenAI clients send is accepted, what we cannot honour is refused clearly."""

from __future__ import annotations

import pytest
from openai.types import completion_create_params as completion_params
from openai.types.chat import completion_create_params as chat_params
from pydantic import ValidationError
from switchboard.api.schemas import IGNORED, ChatCompletionRequest, CompletionRequest
from switchboard.api.tools import prompt_messages

from .test_bad_input import REFUSED_CHAT, REFUSED_COMPLETION

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
# vLLM's sampling extensions that both engines honour (docs/api.md)
VLLM_EXTENSIONS = {
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "ignore_eos",
    "stop_token_ids",
    "skip_special_tokens",
}


def test_content_parts_and_developer_role():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            ],
        }
    )
    expected = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert prompt_messages(req, None) == expected


def test_max_completion_tokens_preferred():
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "max_completion_tokens": 4}
    )
    assert req.requested_max_tokens() == 4


def test_stop_as_string_or_list():
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert ChatCompletionRequest.model_validate({**base, "stop": "\n"}).stop_list() == ["\n"]
    assert ChatCompletionRequest.model_validate({**base, "stop": ["a", "", "b"]}).stop_list() == ["a", "b"]
    assert ChatCompletionRequest.model_validate(base).stop_list() == []


def test_metadata_fields_are_accepted_and_ignored():
    req = ChatCompletionRequest.model_validate(
        {**CHAT, "metadata": {"a": "b"}, "store": True, "service_tier": "auto", "safety_identifier": "u1"}
    )
    assert req.model == "m" and set(IGNORED) <= set(ChatCompletionRequest.model_fields)


def _openai_fields(module) -> set[str]:
    """Every field of the official client's request TypedDicts (base, streaming and non-streaming)."""
    return {
        key
        for name in dir(module)
        if name.startswith("CompletionCreateParams") and isinstance(cls := getattr(module, name), type)
        for key in cls.__annotations__
    }


@pytest.mark.parametrize(
    ("schema", "module"),
    [(ChatCompletionRequest, chat_params), (CompletionRequest, completion_params)],
    ids=["chat", "completions"],
)
def test_every_openai_field_is_classified(schema, module):
    """A field the `openai` package adds fails here until the schema honours, ignores or refuses it."""
    fields = _openai_fields(module)
    assert fields, "the openai package's request TypedDicts were not found"
    missing = fields - set(schema.model_fields)
    assert not missing, f"classify these OpenAI fields in api/schemas.py and docs/api.md: {sorted(missing)}"


def test_schema_fields_are_openai_or_vllm_extensions():
    openai_fields = _openai_fields(chat_params) | _openai_fields(completion_params)
    ours = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
    assert ours - openai_fields == VLLM_EXTENSIONS


def test_unknown_field_is_refused_by_name():
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, "guided_json": {}})
    assert info.value.errors()[0]["loc"] == ("guided_json",)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(("field", "value"), REFUSED_CHAT, ids=[f for f, _ in REFUSED_CHAT])
def test_refused_chat_field_names_itself(field, value):
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, field: value})
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(("field", "value"), REFUSED_COMPLETION, ids=[f for f, _ in REFUSED_COMPLETION])
def test_refused_completion_field_names_itself(field, value):
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"model": "m", "prompt": "x", field: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_refused_fields_with_values_that_ask_for_nothing_are_accepted():
    harmless = {
        "n": 1,
        "logprobs": False,
        "top_logprobs": 0,
        "response_format": {"type": "text"},
        "tools": [],
        "tool_choice": "none",
        "functions": [],
        "function_call": "auto",
        "modalities": ["text"],
        "audio": None,
        "parallel_tool_calls": False,
    }
    ChatCompletionRequest.model_validate({**CHAT, **harmless})
    CompletionRequest.model_validate({"model": "m", "prompt": "x", "n": 1, "best_of": 1, "echo": False, "suffix": ""})


@pytest.mark.parametrize(
    "extra",
    [
        {"presence_penalty": 2.5},
        {"frequency_penalty": -3},
        {"logit_bias": {"x": 1}},
        {"logit_bias": {"5": 101}},
        {"top_k": -2},
        {"min_p": 1.5},
        {"repetition_penalty": 0},
        {"min_tokens": -1},
        {"stop_token_ids": [-1]},
    ],
)
def test_sampling_extension_ranges(extra):
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, **extra})
    assert info.value.errors()[0]["loc"][0] == next(iter(extra))


def test_logit_bias_as_token_pairs():
    req = ChatCompletionRequest.model_validate({**CHAT, "logit_bias": {"17": 5, "3": -100}})
    assert req.bias() == ((17, 5.0), (3, -100.0))


def test_completion_prompt_forms():
    assert CompletionRequest.model_validate({"model": "m", "prompt": ["one"]}).prompt == "one"
    assert CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]}).prompt == [1, 2, 3]
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})


@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty", "min_p", "repetition_penalty"])
def test_nan_is_refused_as_not_finite(field: str):
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, field: float("nan")})
    assert info.value.errors()[0]["loc"] == (field,) and "finite" in info.value.errors()[0]["msg"]
