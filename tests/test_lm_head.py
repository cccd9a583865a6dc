"""The shortlisted lm_head (`lm_head: auto|shortlist|full`, engine/lm_head.py): int8 over the vocabulary,
the best 64 of each row scored again exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from switchboard.engine.base import GenerationRequest, SamplingParams
from switchboard.engine.hf import HFEngine
from switchboard.engine.lm_head import KEEP, ShortlistHead, shortlist_decides, shortlist_head, top_indices
from switchboard.engine.quant import kernel_input_bits
from torch import nn

pytestmark = pytest.mark.skipif(kernel_input_bits() is None, reason="needs fbgemm's int8 kernel (x86 torch builds)")


def table(vocab: int = 40_000, hidden: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, hidden, generator=gen).half().float()


def shortlisted(weight: torch.Tensor) -> ShortlistHead:
    full = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    full.weight = nn.Parameter(weight, requires_grad=False)
    return ShortlistHead(weight, full)


def test_the_shortlist_is_exact_and_the_rest_close():
    weight = table()
    head = shortlisted(weight)
    rows = torch.randn(16, 64, generator=torch.Generator().manual_seed(1)) * 3
    exact = rows @ weight.T
    got = head(rows)
    assert got.shape == exact.shape and got.dtype == torch.float32
    # each row's 64 best int8 guesses hold fp32's best, and are fp32's values there
    top = exact.topk(8, dim=-1).indices
    assert torch.equal(got.argmax(dim=-1), exact.argmax(dim=-1))
    assert torch.allclose(got.gather(1, top), exact.gather(1, top), rtol=1e-5, atol=1e-4)
    # the tail: int8-approximate, within a few % of the row's range, never wildly off
    spread = exact.amax(dim=-1, keepdim=True) - exact.amin(dim=-1, keepdim=True)
    assert ((got - exact).abs() / spread).max() < 0.03
    # a row's logits do not depend on the other rows of the batch (up to the order of the additions)
    torch.testing.assert_close(head(rows[3:4]), got[3:4], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("n", [262_144, 40_000, 4_100, 64 * 64, 100])  # runs of 64: many, a remainder, k of them
def test_top_indices_are_topks_set(n: int):
    gen = torch.Generator().manual_seed(n)
    logits = torch.randn(7, n, generator=gen)
    logits[1] = logits[1].sort().values  # the best values all in the last runs
    logits[2, : n // 2] = logits[2].max() + 1.0  # more than k values tied at the top
    got, want = top_indices(logits, KEEP), logits.topk(KEEP, dim=-1).indices
    assert got.shape == (7, KEEP) and bool((got < n).all())
    for row, (g, w) in enumerate(zip(got, want, strict=True)):
        # the same set; where values tie at the k-th, any of them (torch's own choice is arbitrary too)
        assert sorted(logits[row, g].tolist()) == sorted(logits[row, w].tolist()), row
        assert len(set(g.tolist())) == KEEP


def test_batched_shapes_and_dtype_follow_the_input():
    head = shortlisted(table(vocab=5_000))
    hidden = torch.randn(2, 3, 64)
    out = head(hidden)
    assert out.shape == (2, 3, 5_000)
    assert torch.equal(out.reshape(6, -1).argmax(-1), (hidden.reshape(6, 64) @ head.weight.T).argmax(-1))


def test_rows_left_out_of_the_shortlist_get_the_full_product():
    weight = table()
    head = shortlisted(weight)
    rows = torch.randn(5, 64, generator=torch.Generator().manual_seed(2)) * 3
    exact = rows @ weight.T
    which = torch.tensor([True, False, True, False, False])
    got = head(rows, which)
    torch.testing.assert_close(got[~which], exact[~which], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got[which], head(rows[which]), rtol=1e-5, atol=1e-4)
    assert not torch.allclose(got[which], exact[which], atol=1e-3)  # the tail there is int8's
    torch.testing.assert_close(head(rows, torch.zeros(5, dtype=torch.bool)), exact, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("params", "decides"),
    [
        (SamplingParams(8, temperature=0.0), True),
        (SamplingParams(8, temperature=0.0, min_tokens=4, stop_token_ids=(5,)), True),  # masks a few: fine
        (SamplingParams(8, temperature=0.7), False),  # sampling reaches the tail
        (SamplingParams(8, temperature=0.0, logprobs=2), False),  # normalised over the whole vocabulary
        (SamplingParams(8, temperature=0.0, logit_bias=((7, 5.0),)), False),
        (SamplingParams(8, temperature=0.0, repetition_penalty=1.2), False),
        (SamplingParams(8, temperature=0.0, presence_penalty=0.5), False),
        (SamplingParams(8, temperature=0.0, json_schema="{}"), False),
    ],
)
def test_only_rows_the_shortlist_decides_exactly_use_it(params: SamplingParams, decides: bool):
    assert shortlist_decides(params) is decides


def test_choice_follows_the_setting_and_says_why(tiny_model_dir: Path):
    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256)
    eng.load_model()
    info = eng.describe()
    assert info["lm_head"] == "shortlist", info
    assert info["lm_head_reason"] == f"lm_head: int8 over 262144 tokens, the best {KEEP} per row exact"
    full = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, lm_head="full")
    full.load_model()
    assert full.describe()["lm_head"] == "full" and full.stacks.head is None
    # fp32 weights (no fp16-held lm_head): auto keeps the full product, shortlist is refused with the reason
    plain = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=256, weights="dtype")
    plain.load_model()
    assert plain.describe()["lm_head"] == "full"
    assert "not held in fp16" in plain.describe()["lm_head_reason"]
    with pytest.raises(ValueError, match="--lm-head shortlist cannot apply"):
        shortlist_head(plain.model, "shortlist", None)


def test_bf16_tables_shortlist_too_and_amx_caps_the_rows(tiny_model_dir: Path):
    from switchboard.engine.lm_head import AMX_MAX_ROWS
    from switchboard.hardware import cpu_info

    eng = HFEngine(tiny_model_dir, model_id="tiny", dtype="bfloat16", max_model_len=256)
    eng.load_model()
    info, head = eng.describe(), eng.stacks.head
    assert info["lm_head"] == "shortlist" and isinstance(head, ShortlistHead), info
    amx = cpu_info().native_bf16 and "amx_bf16" in cpu_info().flags
    assert head.max_rows == (AMX_MAX_ROWS if amx else None)
    assert info["lm_head_reason"].endswith("(AMX)") is amx, info
    # the shortlist holds the full bf16 product's values (one rounding of an fp32 sum) and its greedy token
    rows = torch.randn(6, head.weight.shape[1], generator=torch.Generator().manual_seed(4)).bfloat16()
    head.max_rows = None
    got, full = head(rows), eng.model.lm_head(rows)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got.argmax(-1), full.argmax(-1))
    top = full.float().topk(8, dim=-1).indices
    torch.testing.assert_close(got.gather(1, top).float(), full.gather(1, top).float(), rtol=8e-3, atol=1e-2)
    # more shortlisted rows than max_rows: the full product, bit for bit, for every row
    head.max_rows = 5
    assert torch.equal(head(rows), full)
    assert torch.equal(head(rows, torch.tensor([True] * 5 + [False]))[:5], head(rows[:5]))


def _greedy(eng: HFEngine, prompts: list[list[int]], adapter: str | None | list[str | None]) -> list[list[int]]:
    """Greedy answers to `prompts`, all in one batch; `adapter`: one for every row, or one per row."""
    adapters = adapter if isinstance(adapter, list) else [adapter] * len(prompts)

    async def one(i: int, prompt: list[int]) -> list[int]:
        tokens: list[int] = []
        params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
        async for out in eng.generate(GenerationRequest(f"r{i}", prompt, params, adapters[i])):
            tokens += out.token_ids
        return tokens

    async def run() -> list[list[int]]:
        await eng.start()
        try:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
        finally:
            await eng.shutdown()  # stopped: adapters can be added before the next start

    return asyncio.run(run())


def test_served_greedy_tokens_are_the_full_heads(tiny_model_dir: Path, tmp_path: Path):
    from .conftest import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "a", rank=4, targets=["q_proj", "v_proj"], seed=3)
    prompts = [[2, *range(1000 + 7 * i, 1010 + 11 * i)] for i in range(6)]
    for dtype in ("float32", "bfloat16"):
        answers = {}
        for mode in ("auto", "full"):
            eng = HFEngine(tiny_model_dir, model_id="tiny", dtype=dtype, max_model_len=256, lm_head=mode)
            eng.load_model()
            assert eng.describe()["lm_head"] == ("shortlist" if mode == "auto" else "full")
            eng.add_adapter_sync("a", adapter)
            answers[mode] = (_greedy(eng, prompts, None), _greedy(eng, prompts, "a"))
        assert answers["auto"] == answers["full"], dtype


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_adapter_with_lora_on_the_lm_head_changes_its_own_rows_only(tiny_model_dir: Path, tmp_path: Path, dtype):
    """The lm_head's LoRA is per row like the other layers' (base rows once got it too), and a shortlisted
    head gives way to PEFT's product while such an adapter is resident (it once left the LoRA out)."""
    from .conftest import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "a", rank=4, targets=["q_proj", "lm_head"], seed=3)
    prompts = [[2, *range(1000 + 7 * i, 1010 + 11 * i)] for i in range(4)]
    answers = {}
    for mode in ("auto", "full"):
        eng = HFEngine(tiny_model_dir, model_id="tiny", dtype=dtype, max_model_len=256, lm_head=mode)
        eng.load_model()
        bare = _greedy(eng, prompts, None)
        eng.add_adapter_sync("a", adapter)
        base, own = _greedy(eng, prompts, None), _greedy(eng, prompts, "a")
        assert base == bare and own != bare, mode
        mixed = _greedy(eng, prompts, [None, "a", None, "a"])
        assert mixed == [base[0], own[1], base[2], own[3]], mode
        answers[mode] = own
    assert answers["auto"] == answers["full"]
