"""Prefill groups (engine/batch.py length_groups): prompts padded together only when that costs little."""

from __future__ import annotations

import random

from switchboard.engine.batch import PAD_TOKENS_PER_FORWARD, length_groups


def padded(lengths: list[int], groups: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in group) * len(group) for group in groups)


def test_short_prompts_are_not_padded_to_a_long_one():
    lengths = [20] * 8 + [128] * 8
    groups = length_groups(lengths)
    assert [sorted(lengths[i] for i in g) for g in groups] == [[20] * 8, [128] * 8]
    assert padded(lengths, groups) == sum(lengths)  # one forward padded to 128 would compute 2048


def test_close_lengths_share_a_forward_and_every_prompt_is_in_one_group():
    lengths = [100, 101, 103, 102, 100, 104]
    assert length_groups(lengths) == [[0, 4, 1, 3, 2, 5]]  # shortest first
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 300) for _ in range(rng.randint(0, 40))]
        groups = length_groups(lengths)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        # no group pays more pad than one more forward would have cost, per member it took in
        for group in groups:
            longest = max(lengths[i] for i in group)
            assert sum(longest - lengths[i] for i in group) <= PAD_TOKENS_PER_FORWARD * len(group)
    assert length_groups([]) == []
