"""Every refusal before an adapter is served, through the real admin API: a clear 4xx naming the
problem, and the other adapters keep answering exactly as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch

from .conftest import Server, ServerFactory, make_adapter

ADMIN = {"Authorization": "Bearer sk-admin"}


@pytest.fixture(scope="module")
def setup(serve_module: ServerFactory, tmp_path_factory, tiny_adapters: dict[str, Path]) -> tuple[Server, Path]:
    work = tmp_path_factory.mktemp("validation")
    root = work / "root"
    root.mkdir()
    shutil.copytree(tiny_adapters["beta"], root / "good")
    server = serve_module(
        "--max-lora-rank", "8", adapter_root=root, state_dir=work / "state", admin_key="sk-admin", max_model_len=128
    )
    httpx.post(server.url + "/admin/adapters", json={"name": "good", "path": str(root / "good")}, headers=ADMIN)
    return server, root


def good_answer(server: Server) -> str:
    body = {
        "model": "good",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        "temperature": 0,
        "ignore_eos": True,
    }
    return httpx.post(server.v1 + "/chat/completions", json=body, timeout=60).json()["choices"][0]["message"]["content"]


def register(server: Server, path: str | Path, name: str = "bad") -> httpx.Response:
    return httpx.post(server.url + "/admin/adapters", json={"name": name, "path": str(path)}, headers=ADMIN, timeout=60)


def refused(resp: httpx.Response, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]["message"]
    for word in words:
        assert word in message, message


def copy_good(root: Path, name: str) -> Path:
    dst = root / name
    shutil.copytree(root / "good", dst)
    return dst


def test_refusals_leave_other_adapters_unchanged(setup, tmp_path: Path, tiny_model_dir: Path):
    server, root = setup
    before = good_answer(server)

    refused(register(server, tmp_path), 400, "outside the adapter roots")
    refused(register(server, f"{root}/../{root.name}/good"), 400, "'..'")
    refused(register(server, "relative/path"), 400, "absolute")
    refused(register(server, root / "missing"), 400, "not a directory")

    outside = tmp_path / "outside"
    shutil.copytree(root / "good", outside)
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    refused(register(server, root / "link-out"), 400, "outside the adapter roots")
    partial = root / "file-link"
    partial.mkdir()
    shutil.copy(root / "good" / "adapter_config.json", partial)
    (partial / "adapter_model.safetensors").symlink_to(outside / "adapter_model.safetensors")
    refused(register(server, partial), 400, "links outside")

    empty = root / "empty"
    empty.mkdir()
    refused(register(server, empty), 422, "adapter_config.json")
    no_weights = copy_good(root, "no-weights")
    (no_weights / "adapter_model.safetensors").unlink()
    refused(register(server, no_weights), 422, "adapter_model.safetensors")

    pickled = copy_good(root, "pickled")
    torch.save({"x": torch.zeros(1)}, pickled / "adapter_model.bin")
    refused(register(server, pickled), 422, "pickle", "adapter_model.bin")

    big_rank = root / "big-rank"
    make_adapter(tiny_model_dir, big_rank, 16, ["q_proj"], seed=9)
    refused(register(server, big_rank), 422, "rank 16", "at most 8")

    to_save = copy_good(root, "to-save")
    cfg = json.loads((to_save / "adapter_config.json").read_text())
    (to_save / "adapter_config.json").write_text(json.dumps({**cfg, "modules_to_save": ["lm_head"]}))
    refused(register(server, to_save), 422, "modules_to_save")

    dora = copy_good(root, "dora")
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    refused(register(server, dora), 422, "DoRA")

    other_base = root / "other-base"
    _adapter_for_other_model(tiny_model_dir, other_base)
    refused(register(server, other_base), 422, "does not fit", "q_proj")

    wrong_hash = copy_good(root, "wrong-hash")
    (wrong_hash / "manifest.json").write_text(json.dumps({"base_model": "someone-else", "base_model_hash": "0" * 64}))
    refused(register(server, wrong_hash), 422, "someone-else")

    foreign = copy_good(root, "foreign-module")
    from safetensors.torch import load_file, save_file

    tensors = load_file(foreign / "adapter_model.safetensors")
    renamed = {k.replace("self_attn.q_proj", "self_attn.qkv_fused"): v for k, v in tensors.items()}
    save_file(renamed, foreign / "adapter_model.safetensors")
    refused(register(server, foreign), 422, "qkv_fused")

    refused(register(server, root / "good", name="../evil"), 400, "invalid adapter name")

    listing = httpx.get(server.url + "/admin/adapters", headers=ADMIN).json()
    assert [a["name"] for a in listing["adapters"]] == ["good"]
    assert good_answer(server) == before


def _adapter_for_other_model(tiny_model_dir: Path, out: Path) -> None:
    """An adapter for a model of the same architecture but another width (hidden 96, not 64)."""
    from transformers import AutoConfig, Gemma3ForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size = 96
    model_dir = out.parent / "other-model"
    torch.manual_seed(1)
    Gemma3ForCausalLM(config).save_pretrained(model_dir)
    make_adapter(model_dir, out, 4, ["q_proj", "v_proj"], seed=1)
    shutil.rmtree(model_dir)
