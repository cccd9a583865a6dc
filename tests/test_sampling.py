"""Sampling parameters on the hf engine: each does what its definition says (checked against a plain per-row
reference), a row gives the same tokens alone or in a mixed batch, and the server honours them end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
import torch
from switchboard.engine.base import SamplingParams
from switchboard.engine.hf import HFEngine
from switchboard.engine.sampling import RowSampler, adjust_logits, filter_probs, greedy, sample

from .conftest import Server
from .test_engine import PROMPTS, run

VOCAB = 40
EOS = 106  # the tiny model's end of turn
MSG = [{"role": "user", "content": "Say something."}]

ROWS = [  # (params, prompt, generated so far): every parameter, in different rows of one batch
    (SamplingParams(8, temperature=0.7, presence_penalty=1.5, frequency_penalty=0.5), [1, 2], [3, 3, 5, 7]),
    (SamplingParams(8, temperature=1.3, repetition_penalty=1.8, top_k=5), [4, 5, 6, 9, 9], [6, 11, 12]),
    (SamplingParams(8, temperature=1.0, logit_bias=((3, 5.0), (8, -100.0)), min_p=0.2), [1], [2]),
    (SamplingParams(8, temperature=0.9, top_p=0.6, min_tokens=3, frequency_penalty=-1.0), [5], [5, 5]),
    (SamplingParams(8, temperature=1.0, top_k=7, top_p=0.8, min_p=0.05, repetition_penalty=0.6), [1, 2], [2, 8]),
    (SamplingParams(8, temperature=1.1), [3], []),  # nothing: untouched
]
STOPS = frozenset({0, 1})


def reference_logits(x: torch.Tensor, p: SamplingParams, prompt: list[int], out: list[int]) -> torch.Tensor:
    """The definitions, one token at a time (vLLM's order)."""
    x = x.clone().double()
    for token, bias in p.logit_bias:
        x[token] += bias
    if len(out) < p.min_tokens:
        for token in STOPS:
            x[token] = -float("inf")
    for token in set(prompt) | set(out):
        x[token] = x[token] / p.repetition_penalty if x[token] > 0 else x[token] * p.repetition_penalty
    for token in set(out):
        x[token] -= p.frequency_penalty * out.count(token) + p.presence_penalty
    return x


def reference_probs(x: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    probs = torch.softmax(x / p.temperature, dim=-1)
    probs[probs < p.min_p * probs.max()] = 0.0
    ranked = sorted(range(len(probs)), key=lambda t: -float(probs[t]))
    if p.top_k > 0:
        ranked = ranked[: p.top_k]
    total = sum(float(probs[t]) for t in ranked)
    kept, mass = [], 0.0
    for token in ranked:
        if mass >= p.top_p * total:
            break
        kept.append(token)
        mass += float(probs[token])
    result = torch.zeros_like(probs)
    result[kept] = probs[kept]
    return result / result.sum()


def _samplers() -> list[RowSampler]:
    samplers = []
    for params, prompt, out in ROWS:
        sampler = RowSampler(params, prompt, STOPS)
        sampler.penalty_state(VOCAB, torch.device("cpu"))
        for token in out:
            sampler.record(token)
        samplers.append(sampler)
    return samplers


def test_adjusted_logits_and_probabilities_match_the_definitions():
    torch.manual_seed(0)
    logits = torch.randn(len(ROWS), VOCAB) * 3
    samplers = _samplers()
    adjusted = adjust_logits(logits.clone(), samplers)
    probs, order = filter_probs(adjusted, samplers)
    assert order is not None
    probs = torch.zeros_like(probs).scatter_(1, order, probs)
    for i, (params, prompt, out) in enumerate(ROWS):
        expected = reference_logits(logits[i], params, prompt, out)
        assert torch.allclose(adjusted[i].double(), expected, atol=1e-5), f"row {i} logits"
        want = reference_probs(expected, params)
        assert torch.allclose((probs[i] / probs[i].sum()).double(), want, atol=1e-5), f"row {i} probabilities"
    assert torch.equal(adjusted[-1], logits[-1])  # a row without parameters is left alone


def test_draws_follow_the_filtered_distribution():
    """4000 rows with their own seeds in one batch: token frequencies approach the filtered probabilities."""
    torch.manual_seed(1)
    logits = torch.randn(1, 8).repeat(4000, 1)
    params = SamplingParams(4, temperature=0.8, top_k=4, min_p=0.1)
    samplers = [RowSampler(SamplingParams(**{**params.__dict__, "seed": i})) for i in range(4000)]
    tokens = torch.tensor(sample(logits.clone(), samplers))
    frequencies = torch.bincount(tokens, minlength=8).double() / len(tokens)
    assert torch.allclose(frequencies, reference_probs(logits[0].double(), params), atol=0.03)


def test_greedy_rows_see_bias_and_penalties():
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0]] * 3)
    samplers = [
        RowSampler(SamplingParams(1, temperature=0.0)),
        RowSampler(SamplingParams(1, temperature=0.0, logit_bias=((3, 100.0),))),
        RowSampler(SamplingParams(1, temperature=0.0, presence_penalty=2.0, frequency_penalty=2.5)),
    ]
    samplers[2].penalty_state(4, torch.device("cpu"))
    samplers[2].record(1)
    assert sample(logits, samplers) == [1, 3, 2]


def test_greedy_is_argmax_ties_nan_and_inf_included():
    torch.manual_seed(3)
    logits = torch.randn(9, 64 * 40)
    logits[1, 5] = logits[1, 700] = logits[1, 2000] = 50.0  # ties in three runs: the first index
    logits[2, 63] = logits[2, 64] = 50.0  # a tie across a run boundary
    logits[3, 130] = float("nan")  # NaN is the max for argmax, as for amax
    logits[3, 1500] = float("nan")
    logits[4] = -float("inf")  # every value -inf: index 0
    logits[5, -1] = float("inf")
    logits[6, :] = 1.0  # all equal
    logits[7, 64 * 39 :] = 99.0  # the last run holds the max
    assert torch.equal(greedy(logits), logits.argmax(dim=-1))
    assert greedy(logits).tolist()[1:8] == [5, 63, 130, 0, 64 * 40 - 1, 0, 64 * 39]
    odd = torch.randn(3, 1000)  # not a multiple of the run: argmax itself
    assert torch.equal(greedy(odd), odd.argmax(dim=-1))


def test_seeded_row_draws_the_same_alone_or_with_others():
    torch.manual_seed(2)
    logits = torch.randn(5, VOCAB)
    seeded = SamplingParams(8, temperature=1.0, top_p=0.9, seed=11)
    alone = [RowSampler(seeded)]
    mixed = [RowSampler(SamplingParams(8, temperature=t, top_k=3)) for t in (0.5, 1.5)]
    mixed.insert(1, RowSampler(seeded))
    mixed += [RowSampler(SamplingParams(8, temperature=0.0)), RowSampler(SamplingParams(8, min_p=0.3))]
    for _ in range(20):
        step = torch.randn(5, VOCAB)
        assert sample(step[1:2].clone(), alone) == [sample(step.clone(), mixed)[1]]
    del logits


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tiny_adapters: dict[str, Path]):
    """One engine for the module (its thread serves each test's event loop: generate() binds the caller's)."""
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, max_batch_size=8, max_queue=16)
    eng.load_model()
    for name, path in tiny_adapters.items():
        eng.add_adapter_sync(name, path)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())


SEEDED = SamplingParams(10, temperature=1.0, top_k=20, min_p=0.02, seed=5, repetition_penalty=1.3, ignore_eos=True)
GREEDY = SamplingParams(10, temperature=0.0, presence_penalty=1.0, frequency_penalty=0.7, ignore_eos=True)


@pytest.mark.parametrize("params", [GREEDY, SEEDED], ids=["greedy+penalties", "seeded"])
async def test_row_in_a_mixed_batch_equals_it_alone(engine: HFEngine, params: SamplingParams):
    alone = await run(engine, "alone", PROMPTS[0], "beta", params)
    others = [
        SamplingParams(12, temperature=0.8, top_p=0.9, ignore_eos=True),
        SamplingParams(12, temperature=0.0, repetition_penalty=1.5, ignore_eos=True),
        SamplingParams(12, temperature=1.2, logit_bias=((9259, 3.0),), frequency_penalty=1.0, ignore_eos=True),
    ]
    results = await asyncio.gather(
        run(engine, "row", PROMPTS[0], "beta", params),
        *(
            run(engine, f"o{i}", PROMPTS[i + 1], a, p)
            for i, (a, p) in enumerate(zip(["alpha", None, "gamma"], others, strict=True))
        ),
    )
    assert results[0][0] == alone[0]
    assert len(alone[0]) == 10


async def test_min_tokens_holds_back_end_of_turn(engine: HFEngine):
    forced_eos = ((EOS, 100.0),)
    tokens, _, reason, _ = await run(engine, "a", PROMPTS[1], None, SamplingParams(8, logit_bias=forced_eos))
    assert (tokens, reason) == ([], "stop")
    params = SamplingParams(8, temperature=0.0, logit_bias=forced_eos, min_tokens=3)
    tokens, _, reason, _ = await run(engine, "b", PROMPTS[1], None, params)
    assert len(tokens) == 3 and EOS not in tokens and reason == "stop"


async def test_stop_token_ids_end_the_completion_even_with_ignore_eos(engine: HFEngine):
    params = SamplingParams(8, temperature=0.0, logit_bias=((9259, 100.0),), stop_token_ids=(9259,), ignore_eos=True)
    tokens, text, reason, _ = await run(engine, "a", PROMPTS[2], "alpha", params)
    assert (tokens, text, reason) == ([], "", "stop")


async def test_skip_special_tokens(engine: HFEngine):
    forced = ((105, 100.0),)  # <start_of_turn>
    params = SamplingParams(2, temperature=0.0, logit_bias=forced, ignore_eos=True)
    _, skipped, _, _ = await run(engine, "a", PROMPTS[3], None, params)
    kept = await run(engine, "b", PROMPTS[3], None, SamplingParams(**{**params.__dict__, "skip_special_tokens": False}))
    assert skipped == "" and kept[1] == "<start_of_turn><start_of_turn>"


@pytest.fixture(scope="module")
def client(tiny_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.v1, api_key="unused")


def test_logit_bias_forces_a_token_over_http(client: openai.OpenAI, tiny_model_dir: Path):
    from transformers import AutoTokenizer

    word = AutoTokenizer.from_pretrained(tiny_model_dir).decode([9259])
    resp = client.chat.completions.create(
        model="alpha",
        messages=MSG,
        max_tokens=4,
        temperature=0,
        logit_bias={"9259": 100},
        extra_body={"ignore_eos": True},
    )
    assert resp.choices[0].message.content == word * 4
    text = client.completions.create(model="beta", prompt="Hi", max_tokens=3, logit_bias={"9259": 100})
    assert text.choices[0].text == word * 3


def test_seeded_request_with_every_parameter_repeats_over_http(client: openai.OpenAI):
    kwargs = {
        "model": "gamma",
        "messages": MSG,
        "max_tokens": 12,
        "temperature": 1.0,
        "top_p": 0.95,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.3,
        "seed": 1234,
        "extra_body": {"top_k": 50, "min_p": 0.01, "repetition_penalty": 1.2, "min_tokens": 4, "ignore_eos": True},
    }
    first = client.chat.completions.create(**kwargs)
    again = client.chat.completions.create(**kwargs)
    other = client.chat.completions.create(**{**kwargs, "seed": 4321})
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert first.usage.completion_tokens == 12
