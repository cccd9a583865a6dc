"""Incremental detokenization: streamed deltas join to the full text; stop strings never leak."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchboard.engine.detokenize import IncrementalDetokenizer
from transformers import AutoTokenizer

TEXTS = [
    "Hello, world! How are you today?",
    "您好，退货请在收到商品后7天内申请。订单号是多少？",
    "Mixed 中文 and English 🙂 emoji, ✓ done.",
]


@pytest.fixture(scope="module")
def tokenizer(default_model_dir: Path):
    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_join_to_full_text_without_broken_chars(tokenizer, text: str):
    detok = IncrementalDetokenizer(tokenizer)
    parts = []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        detok.add(token)
        delta = detok.flush()
        assert "\ufffd" not in delta
        parts.append(delta)
    parts.append(detok.flush(final=True))
    assert "".join(parts) == text


def test_stop_string_is_cut_and_never_streamed(tokenizer):
    text = "The answer is 42. END of story"
    detok = IncrementalDetokenizer(tokenizer, stop=("END",))
    streamed = []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        detok.add(token)
        streamed.append(detok.flush())
        if detok.stopped:
            break
    streamed.append(detok.flush(final=True))
    assert detok.stopped
    assert "".join(streamed) == "The answer is 42. "


def test_partial_stop_prefix_is_held_back_then_released(tokenizer):
    detok = IncrementalDetokenizer(tokenizer, stop=("STOPWORD",))
    out = []
    for token in tokenizer("a STOP b", add_special_tokens=False)["input_ids"]:
        detok.add(token)
        out.append(detok.flush())
    out.append(detok.flush(final=True))
    assert not detok.stopped
    assert "".join(out) == "a STOP b"


def test_stop_strings_are_looked_for_only_after_min_tokens(tokenizer):
    """As vLLM: the text of the first min_tokens tokens cannot end the completion."""
    ids = tokenizer("END then more, END at last", add_special_tokens=False)["input_ids"]
    first_end = len(tokenizer("END", add_special_tokens=False)["input_ids"])
    detok = IncrementalDetokenizer(tokenizer, stop=("END",), min_tokens=first_end)
    for token in ids:
        detok.add(token)
        if detok.stopped:
            break
    assert detok.stopped and detok.flush(final=True) == "END then more, "
