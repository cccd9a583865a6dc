"""RMSNorm as one op for fp32 serving (engine/fused_norms.py): bit-identical outputs, fewer ops."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from switchboard.engine.fused_norms import fuse_norms
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_gemma_logits_are_bit_identical_with_fused_norms(tiny_model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[2, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]])
    before = _logits(model, ids)
    n = fuse_norms(model, torch.float32)
    assert n == 4 * 6 + 1  # four layers of six (around attention and MLP, q and k), and the final norm
    assert torch.equal(_logits(model, ids), before)


def test_llama_logits_are_bit_identical_with_fused_norms():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "LlamaRMSNorm":
                module.weight.normal_()
    ids = torch.arange(1, 20)[None]
    before = _logits(model, ids)
    assert fuse_norms(model, torch.float32) == 2 * 2 + 1
    assert torch.equal(_logits(model, ids), before)


def test_bf16_models_keep_their_own_norms(tiny_model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    assert fuse_norms(model, torch.bfloat16) == 0


def test_a_copy_of_a_fused_norm_follows_its_own_weight(tiny_model_dir: Path):
    """PEFT's modules_to_save trains a deep copy of a module: the copy must compute with its own weight."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    fuse_norms(model, torch.float32)
    norm = model.model.norm
    twin = copy.deepcopy(norm)
    with torch.no_grad():
        twin.weight.add_(1.0)
    x = torch.randn(1, 3, norm.weight.shape[0])
    want = torch.nn.functional.rms_norm(x, norm.weight.shape, 1.0 + twin.weight, norm.eps)
    assert torch.equal(twin(x), want) and not torch.equal(norm(x), want)
