"""Batching benchmark: what mixing LoRA adapters in one batch costs, and what batching buys.

Starts `switchboard serve` with 3 freshly made PEFT adapters and measures output tok/s, side by side, for
(a) `--concurrency` streaming clients all on one adapter, (b) the same clients round-robin over the 3 adapters
plus the bare base, (c) the requests of (b) one at a time. Scenarios interleave per repeat (a, b, c, a, ...);
medians and the ratios b/a (target >= 0.90) and b/c (target >= 5) are reported. Exits 1 if any request failed;
never asserts a speed. Usage: `python loadtests/bench_batching.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import BASE, PROMPTS, Run

ADAPTERS = ("bench-a", "bench-b", "bench-c")
MAX_BATCH_SIZE = 32
SCENARIOS = {"a": "one adapter, concurrent", "b": "3 adapters + base, concurrent", "c": "3 adapters + base, serial"}
QUICK = {"requests": 8, "concurrency": 8, "max_tokens": 8, "repeats": 1}
FULL = {"requests": 32, "concurrency": 16, "max_tokens": 64, "repeats": 3}


async def run_scenario(
    client: httpx.AsyncClient, base_id: str, scenario: str, repeat: int, n: int, concurrency: int, max_tokens: int
) -> Run:
    mixed = [*ADAPTERS, BASE]  # b and c: the same requests, round-robin over the adapters and the base
    targets = [ADAPTERS[0] if scenario == "a" else mixed[i % len(mixed)] for i in range(n)]
    wall, samples = await harness.clients(
        n,
        1 if scenario == "c" else concurrency,
        lambda i: harness.one_request(client, base_id, targets[i], PROMPTS[i % len(PROMPTS)], max_tokens),
    )
    return Run(scenario, repeat, wall, samples)


async def bench(args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes], log: Path) -> list[Run]:
    async with harness.client(port, args.concurrency + 4) as client:
        base_id = str((await harness.wait_ready(client, proc, log)).json()["model"])
        for target in [*ADAPTERS, BASE]:  # warm-up: one request per adapter and the base
            warm = await harness.one_request(client, base_id, target, PROMPTS[0], args.max_tokens)
            if warm.error:
                raise RuntimeError(f"warm-up on {target} failed: {warm.error}")
        runs: list[Run] = []
        for repeat in range(args.repeats):
            for scenario in SCENARIOS:
                run = await run_scenario(
                    client, base_id, scenario, repeat, args.requests, args.concurrency, args.max_tokens
                )
                harness.progress(run, args.repeats)
                runs.append(run)
        return runs


def report(args: argparse.Namespace, setting: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    b_a = summary["b"]["tok_s"] / summary["a"]["tok_s"] if summary["a"]["tok_s"] else math.nan
    b_c = summary["b"]["tok_s"] / summary["c"]["tok_s"] if summary["c"]["tok_s"] else math.nan
    mark = {True: "met", False: "MISSED"}
    lines = [
        f"### Batching: mixed adapters vs one adapter vs serial ({setting['date']})",
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| b/a: mixed ÷ one adapter | {b_a:.2f} | ≥ 0.90 ({mark[b_a >= 0.90]}) |",
        f"| b/c: mixed concurrent ÷ mixed serial | {b_c:.2f} | ≥ 5 ({mark[b_c >= 5]}) |",
        "",
        f"| scenario | output tok/s (median of {args.repeats}) | per repeat | TTFT p50 / p95 (ms) "
        "| latency p50 / p95 (s) | failed |",
        "|---|---|---|---|---|---|",
        *(f"| {key}: {title} | {harness.cells(summary[key])} | {summary[key]['failed']} |"
          for key, title in SCENARIOS.items()),
        *harness.footer(
            setting,
            "server",
            f"model {setting['model']}, {setting['dtype']}, hf engine, max batch {MAX_BATCH_SIZE}; "
            f"{setting['requests']} requests per scenario, concurrency {setting['concurrency']} (c: 1); 3 LoRA "
            f"adapters r=8 on q/k/v/o; prompts {setting['prompt_tokens'][0]}–{setting['prompt_tokens'][1]} tokens "
            f"(chat template), {setting['max_tokens']} output tokens (ignore_eos), temperature 0; scenarios "
            f"interleaved, {args.repeats} repeat(s)",
        ),
    ]  # fmt: skip
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: small defaults, finishes in <1 min", dtypes=harness.DTYPES)
    return harness.parse(
        parser, QUICK, FULL, requests="requests per scenario", concurrency="concurrent clients in a and b",
        max_tokens="output tokens per request", repeats="repeats per scenario, median reported",
    )  # fmt: skip


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        adapters = harness.adapters(args.model, tmp / "adapters", ADAPTERS)
        load_before = os.getloadavg()
        port = harness.free_port()
        server_cmd = harness.serve_command(
            sys.executable, args, port, tmp, adapters, "--max-batch-size", str(MAX_BATCH_SIZE)
        )
        with harness.server(server_cmd, tmp / "server.log") as proc:
            runs = asyncio.run(bench(args, port, proc, tmp / "server.log"))
    summary = {key: harness.summarize([r for r in runs if r.scenario == key]) for key in SCENARIOS}
    prompt_tokens = [s.prompt_tokens for r in runs for s in r.samples if s.error is None] or [0]
    setting = {
        **{k: getattr(args, k) for k in ("model", "dtype", "requests", "concurrency", "max_tokens", "repeats")},
        **harness.machine(load_before),
        "prompt_tokens": (min(prompt_tokens), max(prompt_tokens)),
        "server_command": shlex.join(["python", *server_cmd[1:]]),
    }
    print(report(args, setting, summary))
    harness.write_result("batching", {"setting": setting, "summary": summary, "runs": [asdict(r) for r in runs]})
    return harness.exit_code(summary)


if __name__ == "__main__":
    harness.run_main(main)
