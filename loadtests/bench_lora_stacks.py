"""Decode-step time of the hf engine's LoRA forward: stacked (BGMV) vs PEFT's mixed-batch path, side by side.

One process, one model (Gemma 3 270M by default), N loadgen-style adapters (r=8 on q/k/v/o, distinct
random weights). For each mix of the rows' adapters (all base, one adapter, 4, 16) it times `--steps`
decode steps of `--rows` rows after a 64-token prefill, once through PEFT's `adapter_names` forward and
once through the stacks, interleaved, `--repeats` times; prints medians and the ratio PEFT ÷ stacked.
Never asserts a speed. Usage: `python loadtests/bench_lora_stacks.py [--rows 16] [--adapter-cache DIR]`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import harness
import torch
from switchboard.config import load_settings
from switchboard.engine.lora_stacks import BASE_ROW, LoraStacks
from switchboard.models import resolve_model_dir
from transformers import AutoModelForCausalLM, DynamicCache


def step_ms(lora: LoraStacks, names: list[str], steps: int, peft: bool) -> float:
    lora.use_stacks = not peft  # False: every batch through PEFT's adapter_names forward, as before the stacks
    try:
        rows = len(names)
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(100, 5000, (rows, 64), generator=generator)
        mask = torch.ones(rows, 64, dtype=torch.long)
        cache = DynamicCache()
        with torch.inference_mode():
            lora.logits(ids, mask, torch.arange(64).expand(rows, -1), cache, names)
            started = time.perf_counter()
            for step in range(steps):
                mask = torch.cat([mask, torch.ones(rows, 1, dtype=torch.long)], 1)
                lora.logits(ids[:, :1], mask, torch.full((rows, 1), 64 + step), cache, names)
            return 1000 * (time.perf_counter() - started) / steps
    finally:
        lora.use_stacks = True


def main() -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adapter-cache", help="reuse adapters here (loadgen's --adapter-cache works)")
    args = parser.parse_args()
    settings = load_settings(None, model=args.model)
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    names = [f"lg-{i:02d}" for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.adapter_cache).expanduser() / args.model[:16] if args.adapter_cache else Path(tmp)
        harness.adapters(args.model, root, names)  # loadgen-style, made unless cached
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
        lora = LoraStacks(model, torch.bfloat16, torch.device("cpu"))
        for name in names:
            prepared = lora.prepare(root / name)
            lora.attach(name, prepared) if prepared else lora.load(name, root / name)
    mixes = {
        "all base": [BASE_ROW] * args.rows,
        "one adapter": [names[0]] * args.rows,
        "4 adapters": [names[i % 4] for i in range(args.rows)],
        f"{args.rows} adapters": names,
    }
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):
        for mix, rows in mixes.items():
            for peft in (True, False):
                times.setdefault((mix, peft), []).append(step_ms(lora, rows, args.steps, peft))
    print(f"decode step, {args.rows} rows, {model_dir.name} bf16, median of {args.repeats}, torch {torch.__version__}")
    print(f"{'rows use':<14} {'PEFT ms':>9} {'stacked ms':>11} {'PEFT/stacked':>13}")
    for mix in mixes:
        peft, stacked = statistics.median(times[(mix, True)]), statistics.median(times[(mix, False)])
        print(f"{mix:<14} {peft:9.1f} {stacked:11.1f} {peft / stacked:13.2f}")
    return 0


if __name__ == "__main__":
    harness.run_main(main)
