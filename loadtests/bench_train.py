"""Seconds per optimizer step of the bundled training configs, bf16 autocast vs fp32, side by side in one run.

What `bf16: auto` in the trainer decides from (docs/training.md): for each config, the trainer's own LoRA
model (`switchboard_trainer.train.lora_model`) and data (`load_dataset`, the config's batch size and
max_seq_len) take the same batches in each precision, the precisions interleaved per step, after one
warm-up step each: forward with labels, backward, AdamW step, as Trainer does (bf16 = CPU autocast over
fp32 master weights). Prints the median seconds per step and the bf16/fp32 ratio, and what `auto` picks
on this CPU; never asserts a speed. Usage: `python loadtests/bench_train.py [--quick] [--steps N] [CONFIG ...]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness
import torch
from harness import REPO

CONFIGS = [REPO / "adapters" / "configs" / f"{name}.yaml" for name in ("after-sales",)]


def batches(config: Any, tokenizer: Any, count: int) -> list[dict[str, torch.Tensor]]:
    """The config's first `count` training batches, padded as the trainer's collator pads them."""
    from switchboard_trainer.train import _features, config_dataset
    from transformers import DataCollatorForSeq2Seq

    data = config_dataset(config, tokenizer)
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    rows = _features(data.train)
    size = config.batch_size
    return [collate(rows[i * size : (i + 1) * size]) for i in range(count)]


def step(model: Any, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def bench_config(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from switchboard.models import resolve_model_dir
    from switchboard.validation import base_model_info
    from switchboard_trainer.config import load_config
    from switchboard_trainer.train import lora_model
    from transformers import AutoTokenizer

    config = load_config(path, [f"batch_size={args.batch_size}"] if args.batch_size else [])
    model_dir = resolve_model_dir(config.base_model, args.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    work = batches(config, tokenizer, args.steps + 1)
    model = lora_model(config, model_dir, base_model_info(model_dir, config.base_model))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    times: dict[str, list[float]] = {name: [] for name in args.precisions}
    for i, batch in enumerate(work):  # batch 0 warms each precision up
        for name in args.precisions:
            seconds = step(model, optimizer, batch, bf16=name == "bf16")
            print(f"{path.name} step {i} {name}: {seconds:.1f}s", file=sys.stderr, flush=True)
            if i > 0:
                times[name].append(seconds)
    median = {name: statistics.median(v) for name, v in times.items()}
    tokens = [int(b["attention_mask"].sum()) for b in work[1:]]
    out: dict[str, Any] = {
        "config": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "batch_size": config.batch_size,
        "tokens_per_batch": statistics.mean(tokens),
        "seconds": times,
        "median_s": median,
    }
    if {"bf16", "fp32"} <= set(median):
        out["bf16_over_fp32"] = median["bf16"] / median["fp32"]
    cells = ", ".join(f"{name} {s:.2f} s/step" for name, s in median.items())
    ratio = f"; bf16/fp32 time {out['bf16_over_fp32']:.2f}" if "bf16_over_fp32" in out else ""
    print(f"{out['config']} (batch {config.batch_size}, ~{out['tokens_per_batch']:.0f} tokens): {cells}{ratio}")
    return out


def parse_args() -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: one short step, about a minute", model=False)
    parser.add_argument("configs", nargs="*", type=Path, help="training configs (default: the bundled after-sales)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "switchboard")
    parser.add_argument("--steps", type=int, help="timed steps per precision after a warm-up (default 3; quick 1)")
    parser.add_argument("--batch-size", type=int, help="override the configs' batch size (quick: 2)")
    parser.add_argument(
        "--precisions",
        type=lambda s: s.split(","),
        help="fp32,bf16 (default both; quick: what auto picks on this CPU)",
    )
    args = parser.parse_args()
    args.configs = args.configs or CONFIGS
    if args.quick:
        from switchboard.hardware import training_bf16

        auto = "bf16" if training_bf16("auto", torch.cuda.is_available())[0] else "fp32"
        defaults: dict[str, Any] = {"steps": 1, "batch_size": 2, "precisions": [auto]}
    else:
        defaults = {"steps": 3, "batch_size": None, "precisions": ["fp32", "bf16"]}
    return harness.fill_defaults(args, defaults)


def main() -> int:
    from switchboard.hardware import cpu_info, training_bf16

    args = parse_args()
    load_before = os.getloadavg()
    results = [bench_config(path, args) for path in args.configs]
    auto, why = training_bf16("auto", torch.cuda.is_available())
    print(f"bf16: auto -> {'bf16 autocast' if auto else 'fp32'} ({why})")
    result = {
        "configs": results,
        "auto_bf16": auto,
        "setting": {
            "steps": args.steps,
            "precisions": args.precisions,
            **harness.machine(load_before, cpu_facts=cpu_info().as_dict()),
            "torch_threads": torch.get_num_threads(),
        },
    }
    harness.write_result("train", result)
    return 0


if __name__ == "__main__":
    harness.run_main(main)
