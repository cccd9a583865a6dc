"""The bundled trainer on a tiny model: real training runs, resume after kill -9, refusals, serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
import yaml
from safetensors.torch import load_file

from .conftest import CACHE_DIR, ServerFactory, wait_for

REPO = Path(__file__).resolve().parents[1]
QA = [
    ("我想退货，怎么操作？", "请提供订单号，收到商品7天内可以退货。"),
    ("How long does shipping take?", "Orders ship within 24 hours and arrive in 2-4 days."),
    ("有优惠券吗？", "冬日暖居节满299减30，12月20日截止。"),
    ("Is the scarf in stock?", "Yes, the wool scarf is in stock in grey and navy."),
    ("Where is my parcel?", "Sorry for the wait! May I have your order number?"),
    ("能开发票吗？", "可以的，下单时填写发票信息即可。"),
]


def write_data(path: Path, n: int = 36) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "train.jsonl", "w") as f:
        for i in range(n):
            q, a = QA[i % len(QA)]
            f.write(
                json.dumps(
                    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path


def write_config(tmp: Path, model_dir: Path, **overrides) -> Path:
    config = {
        "train_data_dir": str(write_data(tmp / "data")),
        "base_model": str(model_dir),
        "output_dir": str(tmp / "out"),
        "lora_rank": 4,
        "batch_size": 4,
        "epochs": 3,
        "learning_rate": 5e-3,
        "save_steps": 4,
        "eval_split": 0.2,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"],
        "early_stopping_patience": 0,
        "seed": 7,
        "bf16": False,  # exact equality across resume is asserted in fp32
        **overrides,
    }
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def run_train(config: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR)}
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard.cli", "train", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def eval_losses(out: Path) -> list[float]:
    last = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [h["eval_loss"] for h in history if "eval_loss" in h]


def test_training_drives_eval_loss_down_and_writes_a_servable_adapter(tmp_path: Path, tiny_model_dir: Path):
    config = write_config(tmp_path, tiny_model_dir, sample_prompts=["Where is my parcel?"])
    proc = run_train(config)
    out = tmp_path / "out"
    losses = eval_losses(out)
    assert len(losses) >= 3 and losses[-1] < losses[0] - 0.2, losses
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert "[sample @ step 4]" in proc.stdout
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_model_hash"] and manifest["data"]["train_rows"] + manifest["data"]["eval_rows"] == 36
    assert manifest["metrics"]["best_eval_loss"] == pytest.approx(min(losses))
    assert manifest["config"]["lora_rank"] == 4 and manifest["versions"]["peft"]
    assert list((out / "runs").iterdir()), "TensorBoard event files"
    assert all((c / ".complete").is_file() for c in (out / "checkpoints").glob("checkpoint-*"))
    assert not list((out / "checkpoints").glob("*/tokenizer*")), "the base model's tokenizer is not copied into each"


def test_resume_after_kill_gives_the_same_weights(tmp_path: Path, tiny_model_dir: Path):
    # 2 epochs of 8 steps: killed right after checkpoint 8, 8 steps still to go when it resumes
    straight = tmp_path / "straight"
    run_train(write_config(straight, tiny_model_dir, epochs=2, lora_dropout=0.1))
    interrupted = tmp_path / "interrupted"
    config = write_config(interrupted, tiny_model_dir, epochs=2, lora_dropout=0.1)
    env = {**os.environ, "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard.cli", "train", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    marker = interrupted / "out" / "checkpoints" / "checkpoint-8" / ".complete"
    wait_for(lambda: marker.is_file() or proc.poll() is not None, 300, "the second checkpoint", interval=0.01)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (interrupted / "out" / "adapter_model.safetensors").exists()
    resumed = run_train(config)
    assert "resuming from" in resumed.stderr
    a = load_file(straight / "out" / "adapter_model.safetensors")
    b = load_file(interrupted / "out" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_bad_config_is_named_without_traceback(tmp_path: Path, tiny_model_dir: Path):
    config = write_config(tmp_path, tiny_model_dir, lora_rnak=8, batch_size="four", epochs=-1)
    proc = run_train(config, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown key 'lora_rnak'; did you mean 'lora_rank'?" in proc.stderr
    assert "batch_size" in proc.stderr and "epochs" in proc.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text("train_data_dir: data\n")
    proc = run_train(missing, check=False)
    assert proc.returncode == 2 and "output_dir" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_train(config, "--set", "nonsense", check=False)
    assert proc.returncode == 2 and "key=value" in proc.stderr


def test_bad_rows_are_reported_with_file_and_line(tmp_path: Path, tiny_model_dir: Path):
    config = write_config(tmp_path, tiny_model_dir, max_seq_len=40, epochs=1)
    data = tmp_path / "data" / "train.jsonl"
    with open(data, "a") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}\n')
        f.write("{not json\n")
        f.write(json.dumps({"instruction": "long " * 50, "output": "ok"}) + "\n")
    (tmp_path / "data" / "extra.csv").write_text("instruction,output\nhello,hi there\nmissing answer,\n")
    proc = run_train(config, "--set", "max_bad_fraction=0.0", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{data}:37: message 1 (assistant): empty or missing content" in proc.stderr
    assert f"{data}:38: not valid JSON" in proc.stderr
    assert f"{data}:39:" in proc.stderr and "over max_seq_len 40" in proc.stderr
    assert "extra.csv:3: empty or missing 'output'" in proc.stderr
    assert not (tmp_path / "out" / "checkpoints").exists() or not list((tmp_path / "out" / "checkpoints").glob("c*"))
    ok = run_train(config)  # within the default 10% bad rows: reported, skipped, trained
    assert "skipping bad row" in ok.stderr


def test_bf16_auto_autocasts_only_where_bf16_is_native_and_says_so(tmp_path: Path, tiny_model_dir: Path):
    from switchboard.hardware import cpu_info, training_bf16

    proc = run_train(write_config(tmp_path, tiny_model_dir, epochs=1, bf16="auto"))
    native, why = training_bf16("auto", cuda=torch.cuda.is_available())
    assert native is (cpu_info().native_bf16 or torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert f"switchboard train: {why}" in proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["machine"]["bf16"] is native and manifest["config"]["bf16"] == "auto"
    assert manifest["machine"]["cpu"] == cpu_info().summary()
    refused = run_train(write_config(tmp_path / "bad", tiny_model_dir, bf16="sometimes"), check=False)
    assert refused.returncode == 2 and "bf16" in refused.stderr and "Traceback" not in refused.stderr


def test_init_adapter_continues_and_other_base_is_refused(
    tmp_path: Path, tiny_model_dir: Path, tiny_adapters: dict[str, Path]
):
    first = tmp_path / "first"
    run_train(write_config(first, tiny_model_dir, epochs=1))
    second = tmp_path / "second"
    run_train(write_config(second, tiny_model_dir, epochs=1, init_adapter=str(first / "out")))
    assert json.loads((second / "out" / "manifest.json").read_text())["config"]["init_adapter"]
    wrong_rank = run_train(
        write_config(tmp_path / "rank", tiny_model_dir, init_adapter=str(first / "out"), lora_rank=8), check=False
    )
    assert wrong_rank.returncode == 2 and "rank 4" in wrong_rank.stderr
    from .test_validation import _adapter_for_other_model

    other = tmp_path / "other-adapter"
    _adapter_for_other_model(tiny_model_dir, other)
    refused = run_train(write_config(tmp_path / "other", tiny_model_dir, init_adapter=str(other)), check=False)
    assert refused.returncode == 2 and "does not fit" in refused.stderr and "Traceback" not in refused.stderr


def test_register_flag_puts_the_adapter_on_a_running_server(tmp_path: Path, serve: ServerFactory, tiny_model_dir: Path):
    root = tmp_path / "root"
    root.mkdir()
    server = serve(adapter_root=root, admin_key="sk-admin")
    config = write_config(tmp_path, tiny_model_dir, output_dir=str(root / "trained"))
    env_key = os.environ.get("SWITCHBOARD_ADMIN_KEY")
    os.environ["SWITCHBOARD_ADMIN_KEY"] = "sk-admin"
    try:
        proc = run_train(config, "--register", server.url)
    finally:
        if env_key is None:
            os.environ.pop("SWITCHBOARD_ADMIN_KEY")
        else:
            os.environ["SWITCHBOARD_ADMIN_KEY"] = env_key
    assert "registered trained@v1" in proc.stdout
    body = {
        "messages": [{"role": "user", "content": "Where is my parcel?"}],
        "max_tokens": 12,
        "temperature": 0,
        "ignore_eos": True,
    }

    def ask(model: str) -> str:
        r = httpx.post(server.v1 + "/chat/completions", json={**body, "model": model}, timeout=60)
        return r.json()["choices"][0]["message"]["content"]

    base_id = httpx.get(server.v1 + "/models").json()["data"][0]["id"]
    assert ask("trained") != ask(base_id)


def test_example_config_loads():
    from switchboard_trainer.config import load_config

    for path in sorted((REPO / "adapters" / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.output_dir.is_absolute()


def test_every_config_key_is_documented():
    from switchboard_trainer.config import TrainConfig

    docs = (REPO / "docs" / "training.md").read_text()
    example = (REPO / "adapters" / "configs" / "example.yaml").read_text()
    for name, field in TrainConfig.model_fields.items():
        assert field.description, name
        assert f"`{name}`" in docs, f"{name} missing from docs/training.md"
        assert name in example, f"{name} missing from adapters/configs/example.yaml"
