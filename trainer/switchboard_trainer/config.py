"""The trainer's YAML config, in the style of lora-scripts, validated into one typed model.

Every problem in a file is reported at once, each naming the key, what was expected and what was
found; unknown keys get a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    """A config that cannot be used; the message lists every problem."""


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the lora-scripts keys
    train_data_dir: Path = Field(description="Dir with the training data (*.jsonl / *.csv files).")
    metadata_path: Path | list[Path] | None = Field(
        default=None,
        description="Data file(s) (JSONL or CSV, relative to train_data_dir) instead of every file in train_data_dir.",
    )
    base_model: str = Field(
        default="gemma3-270m", description="Embedded model name (gemma3-270m, smollm2-135m) or a local HF dir."
    )
    task_type: Literal["text-generation"] = Field(default="text-generation", description="Only text-generation.")
    lora_rank: int = Field(default=8, ge=1, le=256, description="LoRA rank r.")
    batch_size: int = Field(default=4, ge=1, le=512, description="Examples per optimizer step.")
    epochs: float = Field(
        default=15, gt=0, le=1000, description="Passes over the training data (early stopping may end sooner)."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="AdamW learning rate.")
    output_dir: Path = Field(description="Where the adapter, checkpoints/ and runs/ (TensorBoard) are written.")
    save_steps: int = Field(default=50, ge=1, description="Evaluate, checkpoint and sample every this many steps.")
    # extras
    lora_alpha: float | None = Field(default=None, gt=0, description="LoRA alpha (default: 2 x lora_rank).")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that get LoRA weights.",
    )
    max_seq_len: int = Field(
        default=512, ge=16, le=32768, description="Longest example in tokens; longer rows are bad rows."
    )
    eval_split: float = Field(default=0.1, ge=0, lt=0.9, description="Fraction of rows held out for eval loss.")
    eval_data: Path | None = Field(default=None, description="A separate eval file instead of eval_split.")
    early_stopping_patience: int = Field(
        default=3, ge=0, description="Stop after this many evaluations without a better eval loss (0 = never)."
    )
    sample_prompts: list[str] = Field(default_factory=list, description="Prompts answered at every save_steps.")
    seed: int = Field(default=42, description="Seed for the split, shuffling, init and dropout.")
    resume_from: Path | Literal["auto"] | None = Field(
        default="auto", description="Checkpoint dir to resume from; auto = the last complete one in output_dir."
    )
    init_adapter: Path | None = Field(
        default=None, description="Continue training this adapter (same rank, same base)."
    )
    bf16: bool | Literal["auto"] = Field(
        default="auto",
        description="bf16 autocast (fp32 master weights); auto = on where bf16 is native (GPUs with bf16, CPUs with "
        "avx512_bf16 or AMX), off elsewhere: emulated on an AVX2-only CPU it is many times slower than fp32.",
    )
    keep_checkpoints: int = Field(default=3, ge=1, description="How many recent checkpoints to keep (plus the best).")
    max_bad_fraction: float = Field(default=0.1, ge=0, le=1, description="Stop before training if more rows are bad.")

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("target_modules must name at least one module, e.g. [q_proj, v_proj]")
        return value

    @model_validator(mode="after")
    def _default_alpha(self) -> TrainConfig:
        if self.lora_alpha is None:
            self.lora_alpha = 2.0 * self.lora_rank
        return self

    def data_files(self) -> list[Path]:
        if self.metadata_path is not None:
            paths = self.metadata_path if isinstance(self.metadata_path, list) else [self.metadata_path]
            return [p if p.is_absolute() else self.train_data_dir / p for p in paths]
        return sorted(p for p in self.train_data_dir.glob("*") if p.suffix in (".jsonl", ".csv"))


def _coerce(raw: str) -> Any:
    return yaml.safe_load(raw) if raw.strip() else raw


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply `key=value` overrides, validate; relative paths are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        data[key.strip()] = _coerce(value)
    problems = []
    known = list(TrainConfig.model_fields)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            problems.append(f"unknown key '{key}'{hint}")
    clean = {k: v for k, v in data.items() if k in known}
    for key in ("train_data_dir", "output_dir", "eval_data", "init_adapter"):  # metadata_path: see data_files
        given = clean.get(key)
        if isinstance(given, str) and given and not Path(given).is_absolute():
            clean[key] = str((path.parent / given).resolve())
    if (
        isinstance(clean.get("base_model"), str)
        and "/" in clean["base_model"]
        and not Path(clean["base_model"]).is_absolute()
    ):
        clean["base_model"] = str((path.parent / clean["base_model"]).resolve())
    try:
        config = TrainConfig.model_validate(clean)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            got = err.get("input")
            got_text = f" (got {got!r})" if not isinstance(got, dict) else ""
            problems.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{got_text}")
        config = None
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    assert config is not None
    return config
