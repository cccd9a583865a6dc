"""What structured outputs cost the hf engine per decode step, apart from the model: for a batch of --batch
constrained rows (the formats of loadgen_formats.py in turn), the engine's own calls on the real tokenizer
(262,144 tokens) and fp32 logits:
- fill: each row's matcher fills its row of the int32 bitmask (llguidance);
- apply: every row's logits outside its mask set to -inf (`mask_row`; fill then apply is `constrain()`);
- consume: each matcher advances past the row's token (`Constraint.ends`).
Rows walk their grammar greedily on seeded random logits (masked, then argmax); a finished document starts again,
so every run with the same seed and tokenizer takes the same walk. Apply is also reported per mask density (share
of the vocabulary allowed), where its cost differs most. Medians over --steps steps x --repeats; never asserts a
speed. To compare two versions of the engine, run this script with each on PYTHONPATH, alternately.
Usage: `python loadtests/bench_constrain.py [--quick] [--batch 16] [--steps 200] [--repeats 3]`.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import harness
import loadgen_formats
import numpy as np
import torch

DENSITY = {"≤ 1% allowed": 0.01, "1–99% allowed": 0.99, "≥ 99% allowed": 1.01}  # bucket: upper bound (exclusive)


def walk(grammars: Any, batch: int, steps: int, seed: int) -> dict[str, list[float]]:
    """Seconds per step of fill, apply and consume for `batch` rows, and of apply per row by mask density."""
    from llguidance.torch import fill_next_token_bitmask
    from switchboard.engine.constraints import mask_row, schema_text

    schemas = [schema_text(loadgen_formats.response_format(loadgen_formats.FORMATS[i % 5])) for i in range(batch)]
    rows = [grammars.constraint(s) for s in schemas]
    vocab = grammars.n_vocab
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"fill": [], "apply": [], "consume": [], **{k: [] for k in DENSITY}}
    for _ in range(steps):
        logits = torch.randn(batch, vocab, generator=generator)
        bitmask = torch.zeros((batch, (vocab + 31) // 32), dtype=torch.int32)
        started = time.perf_counter()
        for i, row in enumerate(rows):
            fill_next_token_bitmask(row.matcher, bitmask, i)
        filled = time.perf_counter()
        allowed = np.bitwise_count(bitmask.numpy().view(np.uint32)).sum(axis=1) / vocab
        for i, density in enumerate(allowed):
            row_started = time.perf_counter()
            mask_row(logits[i], bitmask[i].numpy())
            out[next(k for k, bound in DENSITY.items() if density < bound)].append(time.perf_counter() - row_started)
        applied = time.perf_counter()
        tokens = logits.argmax(dim=-1).tolist()
        consume_started = time.perf_counter()
        ends = [row.ends(token) for row, token in zip(rows, tokens, strict=True)]
        out["fill"].append(filled - started)
        out["apply"].append(applied - filled)  # includes the density count, a few µs per row
        out["consume"].append(time.perf_counter() - consume_started)
        rows = [grammars.constraint(s) if end else row for row, end, s in zip(rows, ends, schemas, strict=True)]
    return out


def main() -> int:
    parser = harness.parser(__doc__, quick="a smoke run: batch 4, 20 steps, 1 repeat")
    args = harness.parse(
        parser, quick={"batch": 4, "steps": 20, "repeats": 1}, full={"batch": 16, "steps": 200, "repeats": 3},
        batch="constrained rows per step", steps="steps per repeat", repeats="repeats (all steps pooled)",
    )  # fmt: skip
    from switchboard.config import load_settings
    from switchboard.engine.constraints import Grammars
    from switchboard.models import resolve_model_dir
    from transformers import AutoConfig, AutoTokenizer

    load_before = os.getloadavg()
    settings = load_settings(None, model=args.model)
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    grammars = Grammars(AutoTokenizer.from_pretrained(model_dir), AutoConfig.from_pretrained(model_dir).vocab_size)
    grammars.start().result()
    pooled: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for key, values in walk(grammars, args.batch, args.steps, seed=repeat).items():
            pooled.setdefault(key, []).extend(values)
    setting = harness.machine(load_before)
    lines = [
        f"| per step, {args.batch} constrained rows | median (ms) | mean (ms) | p95 (ms) |",
        "|---|---|---|---|",
    ]
    for key, values in pooled.items():
        if values:
            what = key if key in ("fill", "apply", "consume") else f"apply, one row with {key} ({len(values)} rows)"
            lines.append(f"| {what} | {statistics.median(values) * 1e3:.2f} | {statistics.fmean(values) * 1e3:.2f} "
                         f"| {harness.pct(values, 95) * 1e3:.2f} |")  # fmt: skip
    from switchboard.engine import constraints  # which engine: this script may run against another checkout

    setting["engine"] = str(Path(constraints.__file__).resolve().parents[2])
    what = f"engine from {setting['engine']}; torch {torch.__version__}; {args.steps} steps x {args.repeats}"
    lines += harness.footer(setting, "nothing else (no server)", what)
    print("\n".join(lines))
    harness.write_result("constrain", {"setting": setting, "seconds": pooled})
    return 0


if __name__ == "__main__":
    harness.run_main(main)
