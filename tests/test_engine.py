"""The hf engine on a tiny fp32 model: batching is invisible in the results, and rows come and go."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch
from switchboard.engine.base import GenerationRequest, SamplingParams
from switchboard.engine.hf import HFEngine
from switchboard.errors import AdapterIncompatible, Overloaded

PROMPTS = [
    [2, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107],
    [2, 105, 2364, 107, 9259, 236888, 106, 107, 105, 4368, 107],
    [2, 105, 2364, 107, 54593, 786, 496, 3925, 1003, 496, 5866, 236761, 2565, 236761, 106, 107, 105, 4368, 107],
    [2, 105, 2364, 107, 1437, 106, 107, 105, 4368, 107],
]


@pytest.fixture
async def engine(tiny_model_dir: Path, tiny_adapters: dict[str, Path]):
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, max_batch_size=8, max_queue=16)
    eng.load_model()
    for name, path in tiny_adapters.items():
        eng.add_adapter_sync(name, path)
    await eng.start()
    yield eng
    await eng.shutdown()


def greedy(n: int, **kw) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, **kw)


async def run(engine: HFEngine, rid: str, prompt: list[int], adapter: str | None, params: SamplingParams):
    tokens: list[int] = []
    text = ""
    reason = None
    stamps: list[float] = []
    async for out in engine.generate(GenerationRequest(rid, prompt, params, adapter)):
        tokens += out.token_ids
        text += out.text
        stamps.append(time.monotonic())
        reason = out.finish_reason
    return tokens, text, reason, stamps


async def test_mixed_batch_equals_each_adapter_alone(engine: HFEngine):
    adapters = [None, "alpha", "beta", "gamma"]
    alone = [(await run(engine, f"solo-{i}", PROMPTS[i], a, greedy(20)))[0] for i, a in enumerate(adapters)]
    # the adapters really change the output, or this test would prove nothing
    base_on_all = [(await run(engine, f"base-{i}", PROMPTS[i], None, greedy(20)))[0] for i in range(4)]
    assert all(alone[i] != base_on_all[i] for i in (1, 2, 3))
    together = await asyncio.gather(
        *[run(engine, f"mixed-{i}", PROMPTS[i], a, greedy(20)) for i, a in enumerate(adapters)]
    )
    assert [t[0] for t in together] == alone
    assert all(len(t) == 20 for t in alone)


async def test_every_adapter_on_every_prompt_in_one_batch(engine: HFEngine):
    cases = [(p, a) for p in range(4) for a in (None, "alpha", "beta", "gamma")]
    solo = [(await run(engine, f"s{i}", PROMPTS[p], a, greedy(12)))[0] for i, (p, a) in enumerate(cases)]
    mixed = await asyncio.gather(*[run(engine, f"m{i}", PROMPTS[p], a, greedy(12)) for i, (p, a) in enumerate(cases)])
    assert [m[0] for m in mixed] == solo


async def test_prompts_far_apart_in_length_prefill_apart_and_equal_alone(engine: HFEngine):
    from switchboard.engine.batch import length_groups

    prompts = [PROMPTS[1][:5], (PROMPTS[0] * 8)[:120], PROMPTS[2], (PROMPTS[3] * 8)[:90]]
    adapters = [None, "alpha", "beta", None]
    assert len(length_groups([len(p) for p in prompts])) >= 3  # padded together these would cost 4 x 120
    cases = list(enumerate(zip(prompts, adapters, strict=True)))
    alone = [(await run(engine, f"solo-{i}", p, a, greedy(12)))[0] for i, (p, a) in cases]
    together = await asyncio.gather(*[run(engine, f"t-{i}", p, a, greedy(12)) for i, (p, a) in cases])
    assert [t[0] for t in together] == alone


async def test_late_request_joins_running_batch(engine: HFEngine):
    long = asyncio.create_task(run(engine, "long", PROMPTS[0], "alpha", greedy(120, ignore_eos=True)))
    await asyncio.sleep(0)
    # wait until the long request is generating
    while engine.occupancy()["running"] == 0:
        await asyncio.sleep(0.005)
    late_tokens, _, _, late_stamps = await run(engine, "late", PROMPTS[1], "beta", greedy(5, ignore_eos=True))
    long_tokens, _, _, long_stamps = await long
    assert len(long_tokens) == 120 and len(late_tokens) == 5
    assert late_stamps[0] < long_stamps[-1], "the late request waited for the long one to finish"
    # and joining did not change the long request's tokens
    again, _, _, _ = await run(engine, "long-again", PROMPTS[0], "alpha", greedy(120, ignore_eos=True))
    assert again == long_tokens


async def test_stop_token_finishes_with_stop(engine: HFEngine):
    tokens, _, reason, _ = await run(engine, "probe", PROMPTS[2], None, greedy(10, ignore_eos=True))
    assert reason == "length"
    stop_at = next(i for i, t in enumerate(tokens) if t not in tokens[:i] and i >= 3)
    engine.stop_ids = frozenset({tokens[stop_at]})
    got, _, reason, _ = await run(engine, "stopped", PROMPTS[2], None, greedy(10))
    assert reason == "stop"
    assert got == tokens[:stop_at]


async def test_stop_string_cuts_text(engine: HFEngine):
    _, text, _, _ = await run(engine, "probe", PROMPTS[3], "gamma", greedy(16, ignore_eos=True))
    cut = text[len(text) // 2 : len(text) // 2 + 2]
    if not cut.strip():
        pytest.skip("generated text has no usable stop candidate")
    _, stopped, reason, _ = await run(engine, "stop", PROMPTS[3], "gamma", greedy(16, ignore_eos=True, stop=(cut,)))
    assert reason == "stop"
    assert stopped == text[: text.index(cut)]


async def test_seeded_sampling_repeats(engine: HFEngine):
    params = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=7, ignore_eos=True)
    first = await run(engine, "a", PROMPTS[0], "beta", params)
    second = await run(engine, "b", PROMPTS[0], "beta", params)
    other = await run(engine, "c", PROMPTS[0], "beta", SamplingParams(**{**params.__dict__, "seed": 8}))
    assert first[0] == second[0]
    assert first[0] != other[0]


async def test_abort_frees_the_row(engine: HFEngine):
    stream = engine.generate(GenerationRequest("gone", PROMPTS[0], greedy(200, ignore_eos=True), "alpha"))
    got = 0
    async for _ in stream:
        got += 1
        if got == 3:
            break
    await stream.aclose()
    deadline = time.monotonic() + 10
    while any(engine.occupancy().values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert engine.occupancy() == {"pending": 0, "running": 0}


async def test_queue_full_is_overloaded(engine: HFEngine):
    streams = [engine.generate(GenerationRequest(f"q{i}", PROMPTS[0], greedy(200, ignore_eos=True))) for i in range(16)]
    firsts = [asyncio.ensure_future(anext(s)) for s in streams]
    deadline = time.monotonic() + 10
    while engine.occupancy()["pending"] < 16 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await anext(engine.generate(GenerationRequest("extra", PROMPTS[0], greedy(5))))
    for first in firsts:
        first.cancel()
    await asyncio.gather(*firsts, return_exceptions=True)
    for s in streams:
        await s.aclose()


async def test_incompatible_adapter_is_refused_and_others_unchanged(
    engine: HFEngine, tmp_path: Path, default_model_dir: Path
):
    before = (await run(engine, "before", PROMPTS[1], "beta", greedy(8)))[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text(
        '{"peft_type": "LORA", "r": 4, "target_modules": ["no_such_module"], "lora_alpha": 8, "task_type": "CAUSAL_LM"}'
    )
    with pytest.raises(AdapterIncompatible):
        await engine.add_adapter("bad", bad)
    assert "bad" not in engine.resident_adapters()
    after = (await run(engine, "after", PROMPTS[1], "beta", greedy(8)))[0]
    assert after == before


async def test_runtime_adapter_attached_off_thread_equals_peft_loaded(engine: HFEngine, tiny_adapters: dict[str, Path]):
    # "beta" was loaded at start-up by PEFT's own loader; "beta2" (same files) at runtime takes the fast
    # path: modules built in a worker thread, attached between decode steps.
    assert engine.stacks.prepare(tiny_adapters["beta"]) is not None
    background = asyncio.create_task(run(engine, "busy", PROMPTS[0], "alpha", greedy(40)))
    await engine.add_adapter("beta2", tiny_adapters["beta"])
    together = await asyncio.gather(
        run(engine, "peft", PROMPTS[2], "beta", greedy(16)), run(engine, "fast", PROMPTS[2], "beta2", greedy(16))
    )
    assert together[0][0] == together[1][0]
    assert together[0][0] != (await run(engine, "base", PROMPTS[2], None, greedy(16)))[0]
    await background
    await engine.remove_adapter("beta2")
    assert "beta2" not in engine.resident_adapters()
    assert "beta2" not in engine.stacks.model.peft_config
    assert not any("beta2" in layer.lora_A or "beta2" in layer.scaling for layer in engine.stacks._layers.values())
    assert (await run(engine, "still", PROMPTS[2], "beta", greedy(16)))[0] == together[0][0]


async def test_non_plain_lora_config_goes_through_peft(
    engine: HFEngine, tiny_adapters: dict[str, Path], tmp_path: Path
):
    import json
    import shutil

    patterned = tmp_path / "patterned"
    shutil.copytree(tiny_adapters["alpha"], patterned)
    config = json.loads((patterned / "adapter_config.json").read_text())
    config["alpha_pattern"] = {"q_proj": 64}  # a different scaling on q_proj only
    (patterned / "adapter_config.json").write_text(json.dumps(config))
    assert engine.stacks.prepare(patterned) is None
    await engine.add_adapter("patterned", patterned)
    plain = (await run(engine, "plain", PROMPTS[1], "alpha", greedy(12)))[0]
    scaled = (await run(engine, "scaled", PROMPTS[1], "patterned", greedy(12)))[0]
    assert plain != scaled
    await engine.remove_adapter("patterned")


async def test_greedy_tokens_equal_transformers_generate(engine: HFEngine, tiny_adapters: dict[str, Path]):
    # batched-vs-alone equality cannot see an error both share (a position id off by one, say);
    # transformers' own generate() is the reference for the base and for a PEFT adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(engine.model_dir, dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(engine.model_dir, dtype=torch.float32).eval(), str(tiny_adapters["beta"])
    ).eval()
    for name, model in ((None, reference), ("beta", with_adapter)):
        for i, prompt in enumerate(PROMPTS):
            with torch.inference_mode():
                out = model.generate(
                    torch.tensor([prompt]), max_new_tokens=24, do_sample=False, min_new_tokens=24, pad_token_id=0
                )
            expected = out[0, len(prompt) :].tolist()
            got = (await run(engine, f"ref-{name}-{i}", prompt, name, greedy(24, ignore_eos=True)))[0]
            assert got == expected, (name, i)


async def test_removing_every_adapter_then_adding_one_keeps_serving(
    tiny_model_dir: Path, tiny_adapters: dict[str, Path]
):
    """The first adapter wraps the model in PEFT; once it (the active one, and the only one) is removed,
    an adapter added later must serve, not crash the engine thread on PEFT's stale active adapter."""
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, max_batch_size=8, max_queue=16)
    await eng.start()
    try:
        await eng.add_adapter("alpha", tiny_adapters["alpha"])
        alpha = (await run(eng, "a", PROMPTS[0], "alpha", greedy(8)))[0]
        await eng.remove_adapter("alpha")
        await eng.add_adapter("alpha2", tiny_adapters["alpha"])
        again = await asyncio.wait_for(run(eng, "b", PROMPTS[0], "alpha2", greedy(8)), timeout=60)
        assert again[0] == alpha and again[2] == "length"
    finally:
        await eng.shutdown()


async def test_a_stopped_engine_takes_adapters_before_it_starts_again(
    tiny_model_dir: Path, tiny_adapters: dict[str, Path]
):
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, max_batch_size=8, max_queue=16)
    eng.load_model()
    eng.add_adapter_sync("alpha", tiny_adapters["alpha"])
    await eng.start()
    try:
        with pytest.raises(RuntimeError, match="engine is running"):
            eng.add_adapter_sync("beta", tiny_adapters["beta"])
        alpha = (await run(eng, "a", PROMPTS[0], "alpha", greedy(6)))[0]
    finally:
        await eng.shutdown()
    eng.add_adapter_sync("beta", tiny_adapters["beta"])  # stopped: allowed, as before the first start
    await eng.start()
    try:
        assert (await run(eng, "b", PROMPTS[0], "alpha", greedy(6)))[0] == alpha
        assert (await run(eng, "c", PROMPTS[0], "beta", greedy(6)))[2] == "length"
    finally:
        await eng.shutdown()
