"""`switchboard train CONFIG.yaml`: data → LoRA adapter (+ manifest), servable by construction."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .callbacks import CheckpointTrainer, SampleCallback, complete_checkpoints
from .config import TrainConfig
from .data import Dataset, load_dataset

logger = logging.getLogger(__name__)


class TrainError(Exception):
    """Training cannot proceed; the message says why and what to do."""


def _features(dataset: list) -> list[dict[str, list[int]]]:
    return [
        {"input_ids": ex.input_ids, "attention_mask": [1] * len(ex.input_ids), "labels": ex.labels} for ex in dataset
    ]


def _run_fingerprint(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    resolved = config.model_dump(mode="json", exclude={"resume_from", "output_dir"})
    return {"config": resolved, "data_sha256": data.data_hash}


def _resume_point(config: TrainConfig, checkpoint_dir: Path, fingerprint: dict[str, Any]) -> str | None:
    run_file = checkpoint_dir / "run.json"
    if config.resume_from is None:
        return None
    if config.resume_from != "auto":
        path = Path(config.resume_from)
        if not (path / "trainer_state.json").is_file():
            raise TrainError(f"resume_from {path} is not a checkpoint dir (no trainer_state.json)")
        return str(path)
    checkpoints = complete_checkpoints(checkpoint_dir)
    if not checkpoints:
        return None
    if run_file.is_file() and json.loads(run_file.read_text()) == fingerprint:
        print(f"switchboard train: resuming from {checkpoints[-1]}", file=sys.stderr, flush=True)
        return str(checkpoints[-1])
    print(
        f"switchboard train: config or data changed since the checkpoints in {checkpoint_dir} were made; starting over",
        file=sys.stderr,
        flush=True,
    )
    shutil.rmtree(checkpoint_dir)
    return None


def _write_atomic_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import peft
    import transformers
    from switchboard import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "switchboard": __version__,
    }


def config_dataset(config: TrainConfig, tokenizer: Any) -> Dataset:
    """The config's training and eval rows, tokenized; bad rows listed, not raised (up to max_bad_fraction)."""
    return load_dataset(
        config.data_files(),
        tokenizer,
        config.max_seq_len,
        config.eval_split,
        config.seed,
        config.max_bad_fraction,
        config.eval_data,
    )


def lora_model(config: TrainConfig, model_dir: Path, base_info: Any) -> Any:
    """The fp32 base model with trainable LoRA weights: new ones, or `init_adapter`'s to continue."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from switchboard.validation import check_fits, read_adapter
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if config.init_adapter is not None:
        info = read_adapter(config.init_adapter.resolve())
        check_fits(info, base_info, max_rank=10_000)
        if info.rank != config.lora_rank:
            raise TrainError(
                f"init_adapter {config.init_adapter} has rank {info.rank}, but lora_rank is "
                f"{config.lora_rank}; set lora_rank: {info.rank}"
            )
        return PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True)
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # PEFT says int; alpha / r works with any float
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise TrainError(f"target_modules {config.target_modules} do not fit {config.base_model}: {exc}") from exc


def train(config: TrainConfig, *, cache_dir: Path | None = None) -> Path:
    """Train; return the output dir holding the adapter."""
    from switchboard.hardware import cpu_info, training_bf16
    from switchboard.models import default_cache_dir, resolve_model_dir
    from switchboard.validation import base_model_info, check_fits, read_adapter
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        EarlyStoppingCallback,
        TrainingArguments,
        set_seed,
    )

    started = time.perf_counter()
    set_seed(config.seed)
    cache = cache_dir or default_cache_dir()
    try:
        model_dir = resolve_model_dir(config.base_model, cache)
    except FileNotFoundError as exc:
        raise TrainError(str(exc)) from exc
    base_info = base_model_info(model_dir, config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None:
        raise TrainError(f"base model {config.base_model} has no chat template; set one in {model_dir}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = config_dataset(config, tokenizer)
    for row in data.bad:
        print(f"switchboard train: skipping bad row {row}", file=sys.stderr)
    print(
        f"switchboard train: {len(data.train)} training rows, {len(data.eval)} eval rows, {len(data.bad)} bad "
        f"(data sha256 {data.data_hash[:12]})",
        file=sys.stderr,
        flush=True,
    )

    model = lora_model(config, model_dir, base_info)
    output_dir = config.output_dir
    checkpoint_dir = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _run_fingerprint(config, data)
    resume = _resume_point(config, checkpoint_dir, fingerprint)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic_json(checkpoint_dir / "run.json", fingerprint)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(output_dir / "runs")

    has_eval = bool(data.eval)
    cuda = torch.cuda.is_available()
    bf16, why = training_bf16(config.bf16, cuda)
    print(f"switchboard train: {why}", file=sys.stderr, flush=True)
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.save_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        load_best_model_at_end=has_eval,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, min(10, config.save_steps // 2)),
        report_to=["tensorboard"],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not cuda,
        bf16=bf16,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    samples = SampleCallback(tokenizer, config.sample_prompts)
    callbacks: list[Any] = [samples]
    if has_eval and config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = CheckpointTrainer(
        model=model,
        args=args,
        train_dataset=_features(data.train),
        eval_dataset=_features(data.eval) if has_eval else None,
        # the bound method, not the collator: the Trainer saves a collator's `tokenizer` into every checkpoint (Gemma's
        # tokenizer.json is 33 MB; resuming and serving read the base model's)
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100).__call__,
        callbacks=callbacks,
    )
    samples.trainer = trainer
    result = trainer.train(resume_from_checkpoint=resume)
    final_eval = trainer.evaluate() if has_eval else {}

    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".adapter-"))
    try:
        trained: Any = trainer.model  # the PeftModel (transformers types it as a plain Module)
        trained.save_pretrained(staging, safe_serialization=True)
        check_fits(read_adapter(staging), base_info, max_rank=10_000)  # what the server will check
        state = trainer.state
        manifest = {
            "base_model": config.base_model,
            "base_model_hash": base_info.weights_hash,
            "data": data.summary(),
            "config": config.model_dump(mode="json"),
            "metrics": {
                "final_eval_loss": final_eval.get("eval_loss"),
                "best_eval_loss": state.best_metric,
                "best_step": state.best_global_step,
                "train_loss": result.training_loss,
                "steps": state.global_step,
                "epochs": state.epoch,
                "early_stopped": state.global_step < state.max_steps,
                "train_seconds": round(time.perf_counter() - started, 1),
            },
            "machine": {
                "bf16": bf16,
                "cpu": cpu_info().summary(),
                "gpu": torch.cuda.get_device_name() if cuda else None,
            },
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _write_atomic_json(staging / "manifest.json", manifest)
        for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "manifest.json"):
            if (staging / name).exists():
                (staging / name).chmod(0o644)
                os.replace(staging / name, output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        f"switchboard train: adapter written to {output_dir} (eval loss {final_eval.get('eval_loss')}, "
        f"{round(time.perf_counter() - started, 1)}s)",
        file=sys.stderr,
        flush=True,
    )
    return output_dir


def register(url: str, name: str, path: Path) -> str:
    """Register the adapter on a running server (admin key from SWITCHBOARD_ADMIN_KEY); returns its ref."""
    from switchboard.admin_client import AdminClient, AdminError

    key = os.environ.get("SWITCHBOARD_ADMIN_KEY")
    if not key:
        raise TrainError("--register needs the admin key in SWITCHBOARD_ADMIN_KEY")
    try:
        return str(AdminClient(url, key).register(name, path)["ref"])
    except AdminError as exc:
        raise TrainError(f"registration on {url} failed ({exc.status}): {exc.message}") from exc
