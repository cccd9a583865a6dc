"""The KV cache that appends in place (engine/kv_cache.py): the same keys, values and logits as DynamicCache."""

from __future__ import annotations

from pathlib import Path

import torch
from switchboard.engine.kv_cache import SPARE, GrowingCache, GrowingLayer
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.cache_utils import DynamicLayer


def test_a_layer_holds_what_dynamic_layer_holds_and_copies_only_when_full_or_replaced():
    grow, plain = GrowingLayer(), DynamicLayer()
    gen = torch.Generator().manual_seed(0)
    first = torch.randn(3, 1, 5, 8, generator=gen), torch.randn(3, 1, 5, 8, generator=gen)
    grow.update(*first)
    plain.update(*first)
    buffer = grow._key_buffer
    for step in range(SPARE + 3):
        k, v = torch.randn(3, 1, 1, 8, generator=gen), torch.randn(3, 1, 1, 8, generator=gen)
        got, want = grow.update(k, v), plain.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        if step < SPARE:
            assert grow._key_buffer is buffer  # appended in place
    assert grow._key_buffer is not buffer  # full: a new buffer, the old keys copied over
    # the batch replaces the tensors (a row left): the next update starts a buffer from them
    grow.keys, grow.values = grow.keys[1:, :, 2:], grow.values[1:, :, 2:]
    plain.keys, plain.values = plain.keys[1:, :, 2:], plain.values[1:, :, 2:]
    k, v = torch.randn(2, 1, 1, 8, generator=gen), torch.randn(2, 1, 1, 8, generator=gen)
    got, want = grow.update(k, v), plain.update(k, v)
    assert (
        torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and grow.get_seq_length() == 5 + SPARE + 3 - 2 + 1
    )


def test_decoding_gives_dynamic_caches_logits(tiny_model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[2, 1000, 2000, 3000, 4000, 5000], [2, 7, 70, 700, 7000, 70000]])
    out = {}
    for name, cache in (("growing", GrowingCache()), ("dynamic", DynamicCache())):
        logits = []
        with torch.inference_mode():
            step = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
            for _ in range(12):  # past the sliding window (8)
                token = step.argmax(-1, keepdim=True)
                logits.append(step)
                step = model(input_ids=token, past_key_values=cache, use_cache=True).logits[:, -1]
        out[name] = torch.stack(logits)
    torch.testing.assert_close(out["growing"], out["dynamic"], rtol=1e-5, atol=1e-5)
