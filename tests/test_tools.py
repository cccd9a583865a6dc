"""Tool calling through the real server: forced calls (`required`, a named function) constrained by the tools'
JSON schemas, so even the random tiny model returns valid arguments; streamed calls that the `openai` client and
LangChain assemble; tool messages in the prompt; and `auto`'s parsing of `<tool_call>` blocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field
from switchboard.api.schemas import ChatCompletionRequest
from switchboard.api.tools import ToolPlan, ToolStream, plan, prompt_messages

from .conftest import Server


def function(name: str, parameters: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


WEATHER = obj(
    city={"type": "string", "enum": ["北京", "上海", "Köln"]},
    days={"type": "integer", "minimum": 1, "maximum": 7},
    unit={"type": "string", "enum": ["c", "f"]},
)
ORDER = obj(order_id={"type": "string", "maxLength": 6}, urgent={"type": "boolean"})
TOOLS = [function("get_weather", WEATHER, "Weather forecast"), function("order_status", ORDER, "Look up an order")]
SCHEMAS = {"get_weather": WEATHER, "order_status": ORDER}
ASK = [{"role": "user", "content": "Weather in Köln for 3 days?"}]


@pytest.fixture(scope="module")
def server(tiny_long_model_dir: Path, tiny_adapters: dict[str, Path], serve_module) -> Server:
    return serve_module(model=tiny_long_model_dir, adapters=tiny_adapters, max_model_len=1024)


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="unused", timeout=120)


def _valid(call: Any) -> None:
    jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    assert call.type == "function" and call.id.startswith("call_")


def test_named_function_gives_valid_arguments_in_every_choice(client: openai.OpenAI):
    out = client.chat.completions.create(
        model="alpha",
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        n=3,
        seed=1,
        max_tokens=60,
    )
    assert len(out.choices) == 3
    for choice in out.choices:
        assert choice.finish_reason == "stop" and choice.message.content is None  # OpenAI's reason for a named call
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        _valid(call)


def test_required_calls_one_of_the_tools(client: openai.OpenAI):
    for seed in range(4):
        out = client.chat.completions.create(
            model="alpha", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=seed,
            max_tokens=80,
        )  # fmt: skip
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls", choice.message.content
        assert len(choice.message.tool_calls) == 1  # parallel_tool_calls false: one call
        _valid(choice.message.tool_calls[0])
    out = client.chat.completions.create(
        model="beta", messages=ASK, tools=TOOLS, tool_choice="required", seed=7, max_tokens=200
    )
    assert out.choices[0].finish_reason == "tool_calls" and out.choices[0].message.tool_calls
    for call in out.choices[0].message.tool_calls:
        _valid(call)
    assert len({c.id for c in out.choices[0].message.tool_calls}) == len(out.choices[0].message.tool_calls)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "order_status"}}])
def test_streamed_calls_assemble_to_the_whole_response(client: openai.OpenAI, choice: Any):
    args = dict(model="alpha", messages=ASK, tools=TOOLS, tool_choice=choice, temperature=0, max_tokens=80)
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(**args, stream=True))
    with client.chat.completions.stream(**args) as stream:
        final = stream.get_final_completion().choices[0]
    assert final.finish_reason == whole.finish_reason
    got = [(c.function.name, c.function.arguments) for c in final.message.tool_calls]
    assert got == [(c.function.name, c.function.arguments) for c in whole.message.tool_calls]
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    if isinstance(choice, dict):  # a named call's arguments stream as they are made
        assert len(deltas) > 1 and deltas[0][0].id and deltas[0][0].function.name == "order_status"
        assert all(d[0].index == 0 and d[0].id is None for d in deltas[1:])


def test_tool_choice_none_leaves_the_tools_out_of_the_prompt(client: openai.OpenAI):
    def prompt_tokens(**fields: Any) -> int:
        out = client.chat.completions.create(model="alpha", messages=ASK, max_tokens=1, **fields)
        assert out.choices[0].message.tool_calls is None
        return out.usage.prompt_tokens

    plain = prompt_tokens()
    assert prompt_tokens(tools=TOOLS, tool_choice="none") == plain
    assert prompt_tokens(tools=TOOLS) > plain + 50  # auto: the tools are described


def test_a_conversation_with_calls_and_their_results(client: openai.OpenAI):
    call = {"id": "call_1", "type": "function", "function": {"name": "order_status", "arguments": '{"order_id":"A7"}'}}
    messages = [
        {"role": "user", "content": "Where is order A7?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped, arrives Friday"},
    ]
    out = client.chat.completions.create(model="alpha", messages=messages, tools=TOOLS, max_tokens=4)
    shorter = client.chat.completions.create(model="alpha", messages=messages[:1], tools=TOOLS, max_tokens=4)
    assert out.usage.prompt_tokens > shorter.usage.prompt_tokens + 10


def _past_call(call_id: str, order: str) -> dict[str, Any]:
    arguments = json.dumps({"order_id": order}, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": "order_status", "arguments": arguments}}


def test_prompt_writes_calls_and_results_in_the_hermes_format():
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Order A7 and B8?"},
                {"role": "assistant", "content": None, "tool_calls": [_past_call("c1", "A7"), _past_call("c2", "B8")]},
                {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
                {"role": "tool", "tool_call_id": "c2", "content": "pending"},
            ],
            "tools": TOOLS,
        }
    )  # fmt: skip
    messages = prompt_messages(body, plan(body))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\n") and '"name": "get_weather"' in messages[0]["content"]
    assert messages[2]["content"] == (
        '<tool_call>\n{"name": "order_status", "arguments": {"order_id": "A7"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "order_status", "arguments": {"order_id": "B8"}}\n</tool_call>'
    )
    results = "<tool_response>\nshipped\n</tool_response>\n<tool_response>\npending\n</tool_response>"
    assert messages[3]["content"] == results


def test_auto_without_a_call_streams_the_same_text(client: openai.OpenAI):
    args = dict(model="alpha", messages=ASK, tools=TOOLS, temperature=0, max_tokens=30)
    whole = client.chat.completions.create(**args).choices[0]
    chunks = list(client.chat.completions.create(**args, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.message.tool_calls is None and text == whole.message.content and text
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason


AUTO = ToolPlan("auto", {"order_status": {"parameters": ORDER}, "get_weather": {"parameters": WEATHER}})
CALL = '<tool_call>\n{"name": "order_status", "arguments": {"order_id": "A7", "urgent": false}}\n</tool_call>'


def test_auto_parses_calls_out_of_the_text():
    content, calls, reason = AUTO.parse("Let me check.\n" + CALL, "stop")
    assert content == "Let me check." and reason == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("order_status", {"order_id": "A7", "urgent": False})
    ]
    assert AUTO.parse(CALL + CALL.replace("A7", "B8"), "stop")[1][1]["index"] == 1
    for text in ("No call here.", '<tool_call>{"name": "unknown", "arguments": {}}</tool_call>', "<tool_call>{oops"):
        assert AUTO.parse(text, "stop") == (text, [], "stop")  # not a call of a known tool: plain text
    string_args = '<tool_call>{"name": "get_weather", "arguments": "{\\"days\\": 2}"}</tool_call>'
    assert json.loads(AUTO.parse(string_args, "stop")[1][0]["function"]["arguments"]) == {"days": 2}


@pytest.mark.parametrize("size", [1, 3, 40])
def test_auto_stream_holds_back_only_what_may_begin_a_call(size: int):
    def run(text: str) -> tuple[str, list[dict[str, Any]], str]:
        stream, content = ToolStream(AUTO), ""
        for i in range(0, len(text), size):
            delta = stream.feed(text[i : i + size])
            assert delta is None or "tool_calls" not in delta  # calls come whole, at the end
            content += (delta or {}).get("content", "")
            assert "<tool_call" not in content
        last, reason = stream.finish("stop")
        content += (last or {}).get("content", "")
        return content, (last or {}).get("tool_calls", []), reason

    content, calls, reason = run("Let me check.\n" + CALL)
    assert content == "Let me check.\n" and reason == "tool_calls" and calls[0]["function"]["name"] == "order_status"
    content, calls, reason = run("a <tool box> is <b>not</b> a call")
    assert content == "a <tool box> is <b>not</b> a call" and calls == [] and reason == "stop"


# LangChain's ChatOpenAI pointed at Switchboard: bind_tools and with_structured_output, as agent code uses them
class Forecast(BaseModel):
    """A weather forecast request."""

    city: Literal["北京", "上海", "Köln"]
    days: int = Field(ge=1, le=7)


@pytest.fixture(scope="module")
def chat_model(server: Server) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=server.v1, api_key="unused", model="alpha", max_tokens=60, temperature=0)


def test_langchain_bind_tools_invoke_and_stream(chat_model: Any):
    bound = chat_model.bind_tools([Forecast], tool_choice="Forecast")
    message = bound.invoke("Weather in Köln?")
    (call,) = message.tool_calls
    assert call["name"] == "Forecast" and Forecast.model_validate(call["args"])
    merged = None
    for piece in bound.stream("Weather in Köln?"):
        merged = piece if merged is None else merged + piece
    assert merged is not None and merged.tool_calls[0]["args"] == call["args"]


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_with_structured_output(chat_model: Any, method: str):
    result = chat_model.with_structured_output(Forecast, method=method).invoke("Weather in Köln?")
    assert isinstance(result, Forecast)
