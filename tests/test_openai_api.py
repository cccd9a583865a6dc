"""End to end: the real server on a tiny model, driven by the official openai client and httpx."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from .conftest import Server, wait_for

MSG = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture(scope="module")
def client(tiny_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.v1, api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def aclient(tiny_server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=tiny_server.v1, api_key="unused", max_retries=0, timeout=60)


def test_models_lists_base_and_adapters_with_parent(client: openai.OpenAI, tiny_server: Server):
    models = {m.id: m for m in client.models.list().data}
    base_id = next(i for i, m in models.items() if getattr(m, "parent", None) is None)
    assert set(models) == {base_id, "alpha", "beta", "gamma"}
    assert all(models[n].parent == base_id for n in ("alpha", "beta", "gamma"))


def test_chat_completion_non_stream(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(
        model="alpha", messages=MSG, max_tokens=7, temperature=0, extra_body={"ignore_eos": True}
    )
    resp = raw.parse()
    assert raw.headers["x-adapter"] == "alpha@v1"
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.role == "assistant"
    assert resp.usage.completion_tokens == 7
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 7


def test_max_completion_tokens_is_honoured(client: openai.OpenAI):
    resp = client.chat.completions.create(
        model="beta", messages=MSG, max_completion_tokens=3, temperature=0, extra_body={"ignore_eos": True}
    )
    assert resp.usage.completion_tokens == 3


def test_streaming_chunks_and_usage(client: openai.OpenAI):
    stream = client.chat.completions.create(
        model="gamma",
        messages=MSG,
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(
        model="gamma", messages=MSG, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
    )
    assert streamed == whole.choices[0].message.content


def test_sse_ends_with_done(tiny_server: Server):
    body = {"model": "alpha", "messages": MSG, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{tiny_server.v1}/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-adapter"] == "alpha@v1"
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert "usage" not in json.loads(lines[0][6:])


async def test_async_client_concurrent_mixed_adapters(aclient: openai.AsyncOpenAI, client: openai.OpenAI):
    models = ["alpha", "beta", "gamma", "alpha", "beta", "gamma"]

    async def one(model: str) -> str:
        r = await aclient.chat.completions.create(
            model=model, messages=MSG, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
        )
        return r.choices[0].message.content

    together = await asyncio.gather(*[one(m) for m in models])
    alone = {
        m: client.chat.completions.create(
            model=m, messages=MSG, max_tokens=8, temperature=0, extra_body={"ignore_eos": True}
        )
        .choices[0]
        .message.content
        for m in set(models)
    }
    assert together == [alone[m] for m in models]
    assert len(set(alone.values())) == 3, "the adapters should answer differently"


def test_mixed_batch_over_http_equals_alone(tiny_server: Server):
    """Base + 3 adapters sent at once give exactly what each gives alone (fp32 server, greedy)."""
    cases = [
        ("base", "Hello"),
        ("alpha", "你好，我的订单在哪里？"),
        ("beta", "Tell me a story"),
        ("gamma", "List three colours please"),
    ]

    def body(text: str) -> dict:
        return {
            "model": "ignored-by-header",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            "temperature": 0,
            "ignore_eos": True,
        }

    async def send(ac: httpx.AsyncClient, adapter: str, text: str) -> tuple[str, str]:
        r = await ac.post("/chat/completions", json=body(text), headers={"X-Adapter": adapter})
        r.raise_for_status()
        return r.headers["x-adapter"], r.json()["choices"][0]["message"]["content"]

    async def main():
        async with httpx.AsyncClient(base_url=tiny_server.v1, timeout=60) as ac:
            alone = [await send(ac, a, t) for a, t in cases]
            together = await asyncio.gather(*[send(ac, a, t) for a, t in cases])
        return alone, together

    alone, together = asyncio.run(main())
    assert together == alone
    assert [h for h, _ in alone] == ["base", "alpha@v1", "beta@v1", "gamma@v1"]


def test_completions_endpoint(client: openai.OpenAI):
    resp = client.completions.create(
        model="beta", prompt="Once upon a time", max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
    )
    assert resp.object == "text_completion"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 5
    stream = client.completions.create(
        model="beta",
        prompt="Once upon a time",
        max_tokens=5,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    assert "".join(c.choices[0].text for c in stream) == resp.choices[0].text


def test_completions_default_max_tokens_is_16(client: openai.OpenAI):
    resp = client.completions.create(model="alpha", prompt="Hi", temperature=0, extra_body={"ignore_eos": True})
    assert resp.usage.completion_tokens == 16


def test_header_beats_model_and_base_forces_bare_model(client: openai.OpenAI):
    via_header = client.chat.completions.with_raw_response.create(
        model="alpha", messages=MSG, max_tokens=4, temperature=0, extra_headers={"X-Adapter": "beta"}
    )
    assert via_header.headers["x-adapter"] == "beta@v1"
    bare = client.chat.completions.with_raw_response.create(
        model="alpha", messages=MSG, max_tokens=4, temperature=0, extra_headers={"X-Adapter": "base"}
    )
    assert bare.headers["x-adapter"] == "base"


def test_name_at_version(client: openai.OpenAI):
    raw = client.chat.completions.with_raw_response.create(model="gamma@v1", messages=MSG, max_tokens=2)
    assert raw.headers["x-adapter"] == "gamma@v1"


def test_unknown_adapter_is_404_naming_available(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=MSG, max_tokens=2)
    body = err.value.body
    assert "nope" in body["message"] and "alpha" in body["message"] and "gamma" in body["message"]
    assert body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="alpha", messages=MSG, max_tokens=2, extra_headers={"X-Adapter": "missing@v9"}
        )


def test_seeded_sampling_is_repeatable(client: openai.OpenAI):
    kwargs = {
        "model": "alpha",
        "messages": MSG,
        "max_tokens": 8,
        "temperature": 0.9,
        "top_p": 0.95,
        "seed": 42,
        "extra_body": {"ignore_eos": True},
    }
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    assert client.chat.completions.create(**kwargs).choices[0].message.content == first


def test_stop_sequence_gives_finish_reason_stop(client: openai.OpenAI):
    full = (
        client.chat.completions.create(
            model="beta", messages=MSG, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
        )
        .choices[0]
        .message.content
    )
    cut = full.strip()[3:5]
    if not cut.strip():
        pytest.skip("no usable stop candidate in this output")
    resp = client.chat.completions.create(
        model="beta", messages=MSG, max_tokens=12, temperature=0, stop=[cut], extra_body={"ignore_eos": True}
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == full[: full.index(cut)]


def test_late_stream_starts_before_early_one_finishes(tiny_server: Server):
    body = {"messages": MSG, "temperature": 0, "stream": True, "ignore_eos": True}
    events: list[tuple[str, str, float]] = []

    async def stream(ac: httpx.AsyncClient, name: str, model: str, max_tokens: int, started: asyncio.Event | None):
        async with ac.stream("POST", "/chat/completions", json={**body, "model": model, "max_tokens": max_tokens}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"content": "' in line:
                    events.append((name, "token", time.monotonic()))
                    if started is not None and not started.is_set():
                        started.set()
        events.append((name, "done", time.monotonic()))

    async def main():
        async with httpx.AsyncClient(base_url=tiny_server.v1, timeout=120) as ac:
            started = asyncio.Event()
            first = asyncio.create_task(stream(ac, "first", "alpha", 150, started))
            await started.wait()
            await stream(ac, "second", "beta", 3, None)
            await first

    asyncio.run(main())
    first_done = next(t for n, k, t in events if n == "first" and k == "done")
    second_token = next(t for n, k, t in events if n == "second" and k == "token")
    assert second_token < first_done


def test_client_disconnect_cancels_row(tiny_server: Server):
    body = {"model": "alpha", "messages": MSG, "max_tokens": 200, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{tiny_server.v1}/chat/completions", json=body, timeout=60) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i > 4:
                break

    def idle() -> bool:
        state = httpx.get(f"{tiny_server.url}/ready", timeout=5).json()
        return state["pending"] == 0 and state["running"] == 0

    wait_for(idle, 15, "the abandoned row to be cancelled")


def test_health_and_ready(tiny_server: Server):
    from importlib.metadata import version

    from switchboard.hardware import cpu_info

    health = httpx.get(f"{tiny_server.url}/health").json()
    assert health["status"] == "ok" and health["cpu"] == cpu_info().as_dict()
    # one version source: the package metadata, in /health and in the OpenAPI info
    assert health["version"] == version("switchboard")
    assert httpx.get(f"{tiny_server.url}/openapi.json").json()["info"]["version"] == version("switchboard")
    assert health["engine"] == {
        "engine": "hf",
        "device": "cpu",
        "dtype": "float32",
        "quantize": "none",
        "dtype_reason": "dtype float32 as configured",
        "weights": "float16",  # the tiny model's weights are fp16-exact: held in fp16, computed in fp32
        "weights_reason": "29 Linear weights held in fp16, fp32 compute",
        "lm_head": "shortlist",  # a 262k vocabulary on fp16-held weights: greedy rows scored int8, then exactly
        "lm_head_reason": "lm_head: int8 over 262144 tokens, the best 64 per row exact",
        "attention": "sdpa",  # fp32 compute: transformers' SDPA as it is
    }
    metrics = httpx.get(f"{tiny_server.url}/metrics").text
    info = next(line for line in metrics.splitlines() if line.startswith("switchboard_engine_info{"))
    assert (
        'dtype="float32"' in info
        and 'weights="float16"' in info
        and 'lm_head="shortlist"' in info
        and 'attention="sdpa"' in info
        and f'cpu_kernel="{cpu_info().kernel}"' in info
    )
    assert f'native_bf16="{str(cpu_info().native_bf16).lower()}"' in info
    ready = httpx.get(f"{tiny_server.url}/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_request_id_header_is_echoed_or_ours(tiny_server: Server):
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    url = f"{tiny_server.v1}/chat/completions"
    theirs = httpx.post(url, json=body, headers={"X-Request-Id": "trace-42"}, timeout=60)
    assert theirs.headers["x-request-id"] == "trace-42" and theirs.json()["id"].startswith("chatcmpl-")
    ours = httpx.post(url, json=body, headers={"X-Request-Id": "x" * 500}, timeout=60)
    assert ours.headers["x-request-id"] == ours.json()["id"]
