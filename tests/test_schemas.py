"""Request parsing: what OpenAI clients send is accepted, what we cannot honour is refused clearly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from switchboard.api.schemas import ChatCompletionRequest, CompletionRequest


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
    assert req.chat() == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


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


def test_unknown_openai_fields_are_ignored():
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 0, "metadata": {"a": "b"}}
    )
    assert req.model == "m"


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"tools": [{"type": "function"}]},
        {"logprobs": True},
        {"temperature": -1},
        {"top_p": 1.5},
        {"stop": ["x"] * 17},
    ],
)
def test_refused(extra):
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})


def test_completion_prompt_forms():
    assert CompletionRequest.model_validate({"model": "m", "prompt": ["one"]}).prompt == "one"
    assert CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]}).prompt == [1, 2, 3]
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})
