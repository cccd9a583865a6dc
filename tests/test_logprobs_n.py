"""Logprobs and n > 1: the hf engine's logprobs are the model's raw log_softmax (checked against the tiny model
run directly in fp32), each delivered with its token's text; the server returns them, and n choices, in
OpenAI's shapes, typed by the official `openai` client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
import torch
from switchboard.engine.base import GenerationRequest, SamplingParams, TokenLogprob
from switchboard.engine.hf import HFEngine
from switchboard.engine.vllm_engine import vllm_logprobs

from .conftest import Server
from .test_engine import PROMPTS

MSG = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, max_batch_size=8, max_queue=16)
    eng.load_model()
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())


async def outputs(engine: HFEngine, rid: str, prompt: list[int], params: SamplingParams) -> list:
    return [out async for out in engine.generate(GenerationRequest(rid, prompt, params))]


def reference_logprobs(model_dir: Path, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """log_softmax of the tiny model's logits (fp32, plain transformers) after each prefix: [len(tokens), vocab]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1)


async def test_logprobs_are_the_raw_log_softmax_for_each_prefix(engine: HFEngine, tiny_model_dir: Path):
    greedy = SamplingParams(6, temperature=0.0, ignore_eos=True, logprobs=5)
    # a sampled row with a bias that changes what it picks, but not the (raw) logprobs reported
    biased = SamplingParams(6, temperature=1.0, seed=3, logit_bias=((9259, 4.0),), ignore_eos=True, logprobs=2)
    plain = SamplingParams(6, temperature=0.0, ignore_eos=True)  # asks for none: gets none
    runs = await asyncio.gather(
        outputs(engine, "g", PROMPTS[0], greedy),
        outputs(engine, "b", PROMPTS[1], biased),
        outputs(engine, "p", PROMPTS[2], plain),
    )
    assert all(out.logprobs is None for out in runs[2])
    for (prompt, params), outs in zip([(PROMPTS[0], greedy), (PROMPTS[1], biased)], runs[:2], strict=False):
        entries: list[TokenLogprob] = [e for out in outs for e in out.logprobs]
        tokens = [t for out in outs for t in out.token_ids]
        assert [e.token_id for e in entries] == tokens and len(tokens) == 6
        ref = reference_logprobs(tiny_model_dir, prompt, tokens)
        for j, e in enumerate(entries):
            assert abs(e.logprob - float(ref[j, e.token_id])) < 1e-4
            assert len(e.top) == params.logprobs
            want = ref[j].topk(params.logprobs)
            assert torch.allclose(torch.tensor([lp for _, lp in e.top]), want.values, atol=1e-4)
            if params.temperature == 0.0:
                assert e.top[0] == (e.token_id, e.logprob)  # the greedy token is the most likely one


async def test_entries_wait_for_their_tokens_text(engine: HFEngine):
    """With a stop string, text is held back while it could be a stop string's start; so are its entries."""
    free = [
        t for out in await outputs(engine, "f", PROMPTS[3], SamplingParams(12, temperature=0.0)) for t in out.token_ids
    ]
    text = engine.tokenizer.decode(free)
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    params = SamplingParams(12, temperature=0.0, stop=(stop,), logprobs=0)
    emitted, released = "", []
    for out in await outputs(engine, "s", PROMPTS[3], params):
        emitted += out.text
        released += [e.token_id for e in out.logprobs]
        if out.finish_reason is None:
            assert emitted.startswith(engine.tokenizer.decode(released))
    assert released == free[: len(released)] and stop in engine.tokenizer.decode(released)
    assert emitted == text[: text.index(stop)]


def test_vllm_outputs_map_to_entries():
    lp = lambda value, rank: SimpleNamespace(logprob=value, rank=rank)  # noqa: E731 - vLLM's Logprob
    piece = SimpleNamespace(
        token_ids=[7, 9], logprobs=[{7: lp(-0.1, 1), 3: lp(-2.5, 2)}, {9: lp(-3.0, 4), 1: lp(-0.2, 1)}]
    )
    assert vllm_logprobs(piece, 1) == [TokenLogprob(7, -0.1, ((7, -0.1),)), TokenLogprob(9, -3.0, ((1, -0.2),))]
    assert vllm_logprobs(piece, None) is None


@pytest.fixture(scope="module")
def client(tiny_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.v1, api_key="unused")


def test_chat_logprobs_in_openai_shape(client: openai.OpenAI):
    resp = client.chat.completions.create(
        model="alpha", messages=MSG, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = resp.choices[0].logprobs.content
    assert len(content) == resp.usage.completion_tokens
    assert "".join(c.token for c in content) == resp.choices[0].message.content
    for c in content:
        assert len(c.top_logprobs) == 3 and c.top_logprobs[0].token == c.token
        assert c.top_logprobs[0].logprob == c.logprob <= 0.0
        assert bytes(c.bytes).decode("utf-8", errors="replace") == c.token
    assert resp.choices[0].logprobs.refusal is None
    plain = client.chat.completions.create(model="alpha", messages=MSG, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_in_openai_shape(client: openai.OpenAI):
    resp = client.completions.create(model="beta", prompt="Hi", max_tokens=4, temperature=0, logprobs=2)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == resp.usage.completion_tokens
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:j]) for j in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) <= 3 and top[token] == logprob == max(top.values())  # greedy: the sampled token leads


def test_n_choices_in_one_request_with_summed_usage_and_seeds(client: openai.OpenAI):
    kwargs = {"model": "gamma", "messages": MSG, "max_tokens": 6, "temperature": 1.0, "seed": 7}
    resp = client.chat.completions.create(n=3, extra_body={"ignore_eos": True}, **kwargs)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert resp.usage.completion_tokens == 18
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 18
    texts = [c.message.content for c in resp.choices]
    assert len(set(texts)) > 1  # seed + i: distinct draws
    again = client.chat.completions.create(n=3, extra_body={"ignore_eos": True}, **kwargs)
    assert [c.message.content for c in again.choices] == texts
    single = client.chat.completions.create(extra_body={"ignore_eos": True}, **kwargs)
    assert single.choices[0].message.content == texts[0]


def test_streamed_n_choices_assemble_by_index(client: openai.OpenAI):
    kwargs = {"model": "alpha", "messages": MSG, "max_tokens": 5, "temperature": 0.9, "seed": 11, "n": 2}
    whole = client.chat.completions.create(logprobs=True, extra_body={"ignore_eos": True}, **kwargs)
    texts, tokens, reasons, usage = ["", ""], [[], []], [None, None], None
    stream = client.chat.completions.create(
        stream=True, logprobs=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True}, **kwargs
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.logprobs is not None:
                tokens[choice.index] += [c.token for c in choice.logprobs.content]
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.message.content for c in whole.choices]
    assert tokens == [[c.token for c in ch.logprobs.content] for ch in whole.choices]
    assert reasons == ["length", "length"] and usage.completion_tokens == 10


def test_n_request_counts_once_in_metrics(client: openai.OpenAI, tiny_server: Server):
    def served() -> float:
        lines = httpx.get(f"{tiny_server.url}/metrics", timeout=10).text.splitlines()
        picked = [ln for ln in lines if ln.startswith("switchboard_requests_total{") and 'status="200"' in ln]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in picked if 'adapter="beta"' in ln)

    before = served()
    client.completions.create(model="beta", prompt="Hi", max_tokens=2, n=4)
    assert served() == before + 1


def test_n_over_max_batch_size_is_400(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="alpha", messages=MSG, max_tokens=2, n=1000)
    assert info.value.body["param"] == "n"
