"""The stacked LoRA forward: every row computes with its own adapter's A and B from per-layer stacks.

PEFT's own mixed-batch forward is the reference: same adapters, same rows, logits must agree; and the
stacks must survive what the registry does to them (growth past their capacity, removal, slot reuse).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from switchboard.engine.lora_stacks import BASE_ROW, LoraStacks
from transformers import AutoModelForCausalLM, DynamicCache

from .conftest import make_adapter

PROMPT = [2, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107]


@pytest.fixture
def lora(tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> LoraStacks:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    lora = LoraStacks(model, torch.float32, torch.device("cpu"))
    for name, path in tiny_adapters.items():
        load(lora, name, path)
    return lora


def load(lora: LoraStacks, key: str, path: Path) -> None:
    prepared = lora.prepare(path)
    if prepared is None:
        lora.load(key, path)
    else:
        lora.attach(key, prepared)


def logits(lora: LoraStacks, names: list[str], peft: bool = False) -> torch.Tensor:
    """Last-position logits of PROMPT for each row's adapter; `peft` forces PEFT's mixed-batch forward."""
    rows = len(names)
    ids = torch.tensor([PROMPT] * rows)
    positions = torch.arange(len(PROMPT)).expand(rows, -1)
    lora.use_stacks = not peft
    try:
        with torch.inference_mode():
            return lora.logits(ids, torch.ones_like(ids), positions, DynamicCache(), names)
    finally:
        lora.use_stacks = True


@pytest.mark.parametrize("masked", [True, False], ids=["masked-few-slots", "gathered-many-slots"])
def test_stacked_rows_equal_peft_mixed_batch(lora: LoraStacks, monkeypatch, masked: bool):
    import switchboard.engine.lora_stacks as lora_stacks

    # few slots x rank: the mixed batch masks every slot's A and sums one fused B; past the limit, gathered
    assert (lora._capacity * lora._rank <= lora_stacks.MASKED_COLUMNS) is True
    if not masked:
        monkeypatch.setattr(lora_stacks, "MASKED_COLUMNS", 0)
    names = [BASE_ROW, "alpha", "beta", "gamma", "beta", BASE_ROW]
    assert (lora._rows_for(names).mask is not None) == masked  # type: ignore[union-attr]
    reference = logits(lora, names, peft=True)

    def refuse(*args, **kwargs):
        raise AssertionError("PEFT's mixed-batch forward ran for adapters that are in the stacks")

    monkeypatch.setattr(LoraLinear, "_mixed_batch_forward", refuse)
    stacked = logits(lora, names)
    torch.testing.assert_close(stacked, reference, rtol=1e-5, atol=1e-5)
    # the adapters differ from one another and from the base, so the comparison above means something
    assert not torch.allclose(stacked[0], stacked[1]) and not torch.allclose(stacked[1], stacked[2])
    torch.testing.assert_close(stacked[0], stacked[5], rtol=1e-5, atol=1e-5)
    # one adapter on every row takes two plain matmuls; each row still equals its mixed-batch self
    for i, name in enumerate(names):
        alone = logits(lora, [name, name])
        torch.testing.assert_close(alone[0], stacked[i], rtol=1e-5, atol=1e-5)


def test_peft_modules_are_views_of_the_stacks(lora: LoraStacks):
    checked = 0
    for name, layer in lora._layers.items():
        stack = lora._stacks[name]
        for key in stack.keys:
            weight = layer.lora_A[key].weight
            assert weight.untyped_storage().data_ptr() == stack.a.untyped_storage().data_ptr()
            assert layer.lora_B[key].weight.untyped_storage().data_ptr() == stack.b.untyped_storage().data_ptr()
            checked += 1
    assert checked >= 3


def test_growth_removal_and_slot_reuse(lora: LoraStacks, tiny_model_dir: Path, tmp_path: Path):
    names = ["alpha", "beta", "gamma"]
    before = logits(lora, names)
    capacity = lora._capacity
    extra = {}
    for i in range(capacity):  # past the current capacity: the stacks are reallocated and views re-pointed
        extra[f"x{i}"] = make_adapter(tiny_model_dir, tmp_path / f"x{i}", 4, ["q_proj", "v_proj"], 100 + i)
        load(lora, f"x{i}", extra[f"x{i}"])
    assert lora._capacity > capacity
    torch.testing.assert_close(logits(lora, names), before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        logits(lora, names + list(extra)), logits(lora, names + list(extra), peft=True), rtol=1e-5, atol=1e-5
    )

    slot = lora._slots["beta"]
    logits(lora, ["beta", "beta"])  # one adapter on every row: its scaled B is built (and must not outlive it)
    lora.discard("beta")
    assert "beta" not in lora._slots and slot in lora._free
    assert all(float(stack.a[slot].abs().sum()) == 0 and "beta" not in stack.keys for stack in lora._stacks.values())
    # a new adapter takes the freed slot; the others are unchanged
    again = make_adapter(tiny_model_dir, tmp_path / "again", 8, ["q_proj", "k_proj", "v_proj", "o_proj"], 7)
    load(lora, "beta-again", again)
    assert lora._slots["beta-again"] == slot
    after = logits(lora, ["alpha", "beta-again", "gamma"])
    torch.testing.assert_close(after[0], before[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after[2], before[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after[1], logits(lora, ["beta-again"], peft=True)[0], rtol=1e-5, atol=1e-5)
    alone = logits(lora, ["beta-again", "beta-again"])
    torch.testing.assert_close(alone[0], after[1], rtol=1e-5, atol=1e-5)


def test_higher_rank_restacks_every_adapter(lora: LoraStacks, tiny_model_dir: Path, tmp_path: Path):
    names = ["alpha", "beta", "gamma"]
    before = logits(lora, names)
    rank = lora._rank
    wide = make_adapter(tiny_model_dir, tmp_path / "wide", 2 * rank, ["q_proj", "v_proj"], 11)
    load(lora, "wide", wide)
    assert lora._rank == 2 * rank
    torch.testing.assert_close(logits(lora, names), before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        logits(lora, ["wide", "alpha"]), logits(lora, ["wide", "alpha"], peft=True), rtol=1e-5, atol=1e-5
    )


def test_adapter_with_lora_bias_is_served_by_peft(lora: LoraStacks, tiny_model_dir: Path, tmp_path: Path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(5)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_bias=True, init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():  # a non-zero bias, so the output shows whether it was applied
        for name, param in model.named_parameters():
            if "lora_B" in name and name.endswith("bias"):
                param.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "biased")
    assert json.loads((tmp_path / "biased" / "adapter_config.json").read_text())["lora_bias"]
    load(lora, "biased", tmp_path / "biased")
    assert "biased" in lora.adapters and "biased" not in lora._slots
    names = ["biased", "alpha", BASE_ROW]
    mixed = logits(lora, names)  # a batch naming it falls back to PEFT for every row
    torch.testing.assert_close(mixed, logits(lora, names, peft=True), rtol=0, atol=0)
    assert not torch.allclose(mixed[0], mixed[2])
    stacked_alpha = logits(lora, ["alpha"])[0]
    torch.testing.assert_close(mixed[1], stacked_alpha, rtol=1e-5, atol=1e-5)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_reading_an_adapter_again_and_again_keeps_no_memory(lora: LoraStacks, tiny_adapters: dict[str, Path], tmp_path):
    """Issue #20: every registration reads the adapter's weights; safetensors' mmap'd readers (load_file, safe_open)
    kept ~60 bytes per tensor per read for good, which a register/remove loop added up. 2,000 tensors read 300
    times kept ~35 MiB that way; a read must keep nothing (its tensors' names match no layer, so prepare reads them
    all, then declines)."""
    from safetensors.torch import save_file

    many = tmp_path / "many"
    many.mkdir()
    (many / "adapter_config.json").write_text((tiny_adapters["alpha"] / "adapter_config.json").read_text())
    save_file({f"nowhere{i}.lora_A.weight": torch.zeros(1, 4) for i in range(2000)}, many / "adapter_model.safetensors")
    for _ in range(50):  # warm-up: the allocator's pools
        assert lora.prepare(many) is None
    before = rss_mib()
    for _ in range(300):
        lora.prepare(many)
    assert rss_mib() - before < 8.0
