"""Bad input gets a 4xx in OpenAI's error shape, never a 500, and the server keeps serving."""

from __future__ import annotations

import httpx
import pytest

from .conftest import Server

OK = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

CASES = [
    ("malformed json", b'{"model": "alpha", "messages": [', 400),
    ("not an object", b"[1, 2, 3]", 400),
    ("empty body", b"", 400),
    ("missing messages", {"model": "alpha"}, 400),
    ("empty messages", {"model": "alpha", "messages": []}, 400),
    ("messages wrong type", {"model": "alpha", "messages": "hello"}, 400),
    ("message without role", {"model": "alpha", "messages": [{"content": "x"}]}, 400),
    ("unknown role", {"model": "alpha", "messages": [{"role": "wizard", "content": "x"}]}, 400),
    ("tool role", {"model": "alpha", "messages": [{"role": "tool", "content": "x"}]}, 400),
    ("null content", {"model": "alpha", "messages": [{"role": "user", "content": None}]}, 400),
    ("image part", {"model": "alpha", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400),
    ("only system", {"model": "alpha", "messages": [{"role": "system", "content": "x"}]}, 400),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, 400),
    ("model wrong type", {**OK, "model": 12}, 400),
    ("negative max_tokens", {**OK, "max_tokens": -5}, 400),
    ("zero max_tokens", {**OK, "max_tokens": 0}, 400),
    ("huge max_tokens", {**OK, "max_tokens": 10**9}, 400),
    ("max_tokens string", {**OK, "max_tokens": "many"}, 400),
    ("temperature too high", {**OK, "temperature": 5}, 400),
    ("top_p zero", {**OK, "top_p": 0}, 400),
    ("n over max_batch_size", {**OK, "n": 10_000}, 400),
    ("n zero", {**OK, "n": 0}, 400),
    ("stop wrong type", {**OK, "stop": 5}, 400),
    ("logprobs not a bool", {**OK, "logprobs": 3}, 400),
    ("top_logprobs over 20", {**OK, "logprobs": True, "top_logprobs": 21}, 400),
    ("top_logprobs without logprobs", {**OK, "top_logprobs": 2}, 400),
    ("prompt too long", {**OK, "messages": [{"role": "user", "content": "word " * 400}]}, 400),
    ("unknown adapter", {**OK, "model": "nobody"}, 404),
]


# OpenAI fields refused with a value that asks for something the server does not do (docs/api.md)
REFUSED_CHAT = [
    ("response_format", {"type": "grammar", "grammar": 'root ::= "x"'}),
    ("functions", [{"name": "f"}]),
    ("function_call", {"name": "f"}),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("reasoning_effort", "low"),
    ("verbosity", "low"),
    ("web_search_options", {}),
    ("moderation", {"model": "omni-moderation-latest"}),
]
F = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
# tools sent wrong: a 400 naming the field (param is the path to the value at fault)
BAD_TOOLS = [
    ("tools.0.function.name", {"tools": [{"type": "function", "function": {"name": "bad name!"}}]}),
    ("tools.0.type", {"tools": [{"type": "custom", "function": {"name": "f"}}]}),
    ("tools", {"tools": [F, F]}),
    ("tool_choice", {"tool_choice": "required"}),
    ("tool_choice", {"tools": [F], "tool_choice": "sometimes"}),
    ("tool_choice", {"tools": [F], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
    ("tool_choice", {"tools": [F], "tool_choice": "required", "response_format": {"type": "json_object"}}),
    ("tools", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}],
               "tool_choice": "required"}),
    ("messages.0", {"messages": [{"role": "tool", "content": "42"}]}),
]  # fmt: skip
REFUSED_COMPLETION = [("best_of", 3), ("echo", True), ("suffix", "end")]


def _post(server: Server, body, path: str = "/v1/chat/completions", headers: dict | None = None) -> httpx.Response:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(
        server.url + path, headers={"content-type": "application/json", **(headers or {})}, timeout=30, **kwargs
    )


def _assert_openai_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and "Traceback" not in error["message"]
    return error


@pytest.mark.parametrize(("name", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_chat_request(tiny_server: Server, name: str, body, status: int):
    _assert_openai_error(_post(tiny_server, body), status)


def test_error_names_the_field(tiny_server: Server):
    error = _assert_openai_error(_post(tiny_server, {**OK, "max_tokens": -1}), 400)
    assert error["param"] == "max_tokens"
    error = _assert_openai_error(_post(tiny_server, {**OK, "max_tokens": 10**9}), 400)
    assert error["code"] == "context_length_exceeded" and "max_tokens" in error["message"]


def test_oversized_body_is_413(tiny_server: Server):
    big = {**OK, "messages": [{"role": "user", "content": "x" * 3_000_000}]}
    _assert_openai_error(_post(tiny_server, big), 413)


def test_oversized_chunked_body_is_413(tiny_server: Server):
    def chunks():
        yield b'{"model": "alpha", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 100_000
        yield b'"}]}'

    resp = httpx.post(
        tiny_server.url + "/v1/chat/completions",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _assert_openai_error(resp, 413)


@pytest.mark.parametrize(
    "body",
    [
        {"model": "alpha", "prompt": ""},
        {"model": "alpha", "prompt": ["a", "b"]},
        {"model": "alpha", "prompt": [-1, 5]},
        {"model": "alpha", "prompt": [10**9]},
        {"model": "alpha", "prompt": "x", "echo": True},
        {"model": "alpha"},
    ],
)
def test_bad_completion_request(tiny_server: Server, body):
    _assert_openai_error(_post(tiny_server, body, "/v1/completions"), 400)


@pytest.mark.parametrize(("field", "value"), REFUSED_CHAT, ids=[f for f, _ in REFUSED_CHAT])
def test_refused_chat_field_is_400_naming_it(tiny_server: Server, field: str, value):
    error = _assert_openai_error(_post(tiny_server, {**OK, field: value}), 400)
    assert error["param"] == field and error["message"].startswith(f"{field}: ")


@pytest.mark.parametrize(("param", "fields"), BAD_TOOLS, ids=[f"{i}-{p}" for i, (p, _) in enumerate(BAD_TOOLS)])
def test_bad_tools_are_400_naming_the_field(tiny_server: Server, param: str, fields: dict):
    error = _assert_openai_error(_post(tiny_server, {**OK, **fields}), 400)
    assert error["param"] == param, error


@pytest.mark.parametrize(("field", "value"), REFUSED_COMPLETION, ids=[f for f, _ in REFUSED_COMPLETION])
def test_refused_completion_field_is_400_naming_it(tiny_server: Server, field: str, value):
    body = {"model": "alpha", "prompt": "x", "max_tokens": 2, field: value}
    error = _assert_openai_error(_post(tiny_server, body, "/v1/completions"), 400)
    assert error["param"] == field


@pytest.mark.parametrize(
    ("field", "body", "path"),
    [
        ("guided_json", {**OK, "guided_json": {}}, "/v1/chat/completions"),
        ("tools", {"model": "alpha", "prompt": "x", "tools": []}, "/v1/completions"),
        ("logit_bias", {**OK, "logit_bias": {str(10**7): 5}}, "/v1/chat/completions"),
        ("stop_token_ids", {**OK, "stop_token_ids": [10**7]}, "/v1/chat/completions"),
        ("min_tokens", {**OK, "min_tokens": 5}, "/v1/chat/completions"),
        ("min_tokens", {"model": "alpha", "prompt": "x", "min_tokens": 17}, "/v1/completions"),
        ("stream_options.include_chunks", {**OK, "stream_options": {"include_chunks": True}}, "/v1/chat/completions"),
    ],
    ids=["unknown field", "chat-only field", "bias off vocab", "stop id off vocab", "min>max", "min>default", "nested"],
)
def test_unknown_or_out_of_range_field_is_400_naming_it(tiny_server: Server, field: str, body: dict, path: str):
    error = _assert_openai_error(_post(tiny_server, body, path), 400)
    assert error["param"] == field, error


def test_unknown_route_and_method(tiny_server: Server):
    _assert_openai_error(httpx.get(tiny_server.url + "/v1/nothing-here"), 404)
    _assert_openai_error(httpx.get(tiny_server.url + "/v1/chat/completions"), 405)


def test_server_keeps_serving_after_bad_input(tiny_server: Server):
    for _, body, _ in CASES:
        _post(tiny_server, body)
    resp = _post(tiny_server, OK)
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"


def test_a_huge_model_name_is_not_echoed_whole(tiny_server: Server):
    resp = _post(tiny_server, {**OK, "model": "x" * 100_000})
    error = _assert_openai_error(resp, 404)
    assert len(resp.content) < 2_000 and error["message"].startswith("adapter 'xxx")


def test_nan_temperature_is_named_as_not_finite(tiny_server: Server):
    body = b'{"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    error = _assert_openai_error(_post(tiny_server, body), 400)
    assert error["param"] == "temperature" and "finite" in error["message"]


def test_too_many_messages_are_refused_before_tokenizing(tiny_server: Server):
    body = {**OK, "messages": [{"role": "user", "content": ""}] * 60_000}
    error = _assert_openai_error(_post(tiny_server, body), 400)
    assert error["param"] == "messages" and "2048" in error["message"]


# pydantic's own wording named a union branch ("messages.0.content.str") or left out what was sent
MESSAGES = [
    ({**OK, "messages": [{"role": "user", "content": 5}]}, "messages.0.content",
     "expected a string or a list, got a number (5)"),
    ({**OK, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0", "needs its text"),
    ({**OK, "messages": [{"role": "user", "content": None}]}, "messages.0", "content is required in a user message"),
    ({**OK, "stop": 5}, "stop", "expected a string or a list, got a number (5)"),
    ({**OK, "max_tokens": "many"}, "max_tokens", 'expected an integer, got a string ("many")'),
    ({**OK, "temperature": 5}, "temperature", "must be less than or equal to 2, got 5"),
    ({**OK, "messages": "hello"}, "messages", 'expected a list, got a string ("hello")'),
    ({**OK, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "got 21"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model", "model: this field is required"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param", "words"), MESSAGES, ids=[m[1] + "-" + str(i) for i, m in enumerate(MESSAGES)]
)
def test_validation_message_names_the_field_what_it_takes_and_what_came(tiny_server: Server, body, param, words):
    error = _assert_openai_error(_post(tiny_server, body), 400)
    assert error["param"] == param and words in error["message"], error
    assert ".str" not in error["message"] and "Input should" not in error["message"]


def test_body_that_is_not_utf8_or_missing_says_so(tiny_server: Server):
    assert "UTF-8" in _assert_openai_error(_post(tiny_server, b"\xff\xfe{"), 400)["message"]
    assert "request body is required" in _assert_openai_error(_post(tiny_server, b""), 400)["message"]


def test_more_problems_are_counted_in_words(tiny_server: Server):
    error = _assert_openai_error(_post(tiny_server, {**OK, "top_p": 0, "n": 0}), 400)
    assert error["message"].endswith("(and 1 more problem)")


def test_405_names_the_allowed_methods_and_keeps_allow(tiny_server: Server):
    resp = httpx.delete(tiny_server.url + "/health")
    error = _assert_openai_error(resp, 405)
    assert resp.headers["allow"] == "GET" and "use GET" in error["message"]


def test_feedback_score_is_bounded_so_sums_stay_finite(tiny_server: Server):
    error = _assert_openai_error(_post(tiny_server, {"id": "x", "score": 1e300}, "/v1/feedback"), 400)
    assert error["param"] == "score"
