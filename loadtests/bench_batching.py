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
import json
import math
import multiprocessing
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "loadtests" / "results"
ADAPTERS = ("bench-a", "bench-b", "bench-c")
BASE = "base"  # X-Adapter value that forces the bare base model
MAX_BATCH_SIZE = 32
READY_DEADLINE_S = 300.0
PROMPTS = [  # short and varied, English and Chinese; request i gets PROMPTS[i % 16] in every scenario
    "Write a haiku about the sea.", "Explain what a hash table is in two sentences.",
    "List three tips for staying focused while studying.", "What is the capital of Australia, and why not Sydney?",
    "Translate 'good morning, how are you?' into French.", "Give me a short recipe for scrambled eggs.",
    "Why is the sky blue? Answer for a ten-year-old.", "Summarize the plot of Romeo and Juliet in one paragraph.",
    "请用一句话介绍长城。", "给我三个提高睡眠质量的建议。", "解释一下什么是机器学习。", "写一首关于秋天的短诗。",
    "How do I reverse a list in Python?", "Suggest a name for a friendly robot.",
    "我的订单还没有到，应该怎么办？", "What are the pros and cons of working from home?",
]  # fmt: skip


@dataclass
class Sample:
    target: str
    ttft_s: float | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class Run:
    scenario: str
    repeat: int
    wall_s: float
    samples: list[Sample]

    @property
    def tokens_per_s(self) -> float:
        return sum(s.completion_tokens for s in self.samples if s.error is None) / self.wall_s


SCENARIOS = {"a": "one adapter, concurrent", "b": "3 adapters + base, concurrent", "c": "3 adapters + base, serial"}


def make_adapters(model: str, out: Path, names: Sequence[str] = ADAPTERS) -> None:
    """Real LoRA adapters (q/k/v/o, r=8; seed = index in `names`) with random B scaled down, so outputs stay
    plausible text. Defaults to the three of this benchmark."""
    import torch
    from peft import LoraConfig, get_peft_model
    from switchboard.config import load_settings
    from switchboard.models import resolve_model_dir
    from transformers import AutoModelForCausalLM

    settings = load_settings(None, model=model)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir(settings.model, settings.cache_dir))
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False
        )
        peft_model = get_peft_model(base, config)
        with torch.no_grad():
            for pname, param in peft_model.named_parameters():
                if "lora_B" in pname:
                    param.mul_(0.05)
        peft_model.save_pretrained(out / name)
        base = peft_model.unload()  # drop the LoRA layers again before the next seed


def make_adapters_in_child(model: str, out: Path, names: Sequence[str] = ADAPTERS) -> None:
    """`make_adapters` in a child process: keeps torch and the model out of the client process."""
    maker = multiprocessing.get_context("spawn").Process(target=make_adapters, args=(model, out, tuple(names)))
    maker.start()
    maker.join()
    if maker.exitcode != 0:
        raise RuntimeError(f"making the adapters failed (exit code {maker.exitcode})")


@contextmanager
def server(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run the server (with `env` added to the environment) for the block; stop it (this pid only) on the way out,
    also on Ctrl-C or errors."""
    full_env = {**os.environ, **env} if env else None
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=full_env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            resp = await client.get("/ready", timeout=2.0)
            if resp.status_code == 200:
                return dict(resp.json())
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError(f"server not ready after {READY_DEADLINE_S:.0f}s:\n{log.read_text()[-3000:]}")


async def one_request(client: httpx.AsyncClient, base_id: str, target: str, prompt: str, max_tokens: int) -> Sample:
    body = {
        "model": base_id if target == BASE else target,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"X-Adapter": BASE} if target == BASE else {}
    sample = Sample(target)
    done = False  # a complete stream ends with `data: [DONE]`
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
            if resp.status_code != 200:
                sample.error = f"HTTP {resp.status_code}: {(await resp.aread()).decode(errors='replace')[:200]}"
            else:
                async for line in resp.aiter_lines():
                    done = done or line == "data: [DONE]"
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        sample.error = str(chunk["error"].get("message"))[:200]
                    elif chunk.get("usage"):
                        sample.prompt_tokens = chunk["usage"]["prompt_tokens"]
                        sample.completion_tokens = chunk["usage"]["completion_tokens"]
                    elif sample.ttft_s is None and any(c["delta"].get("content") for c in chunk["choices"]):
                        sample.ttft_s = time.perf_counter() - start
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.latency_s = time.perf_counter() - start
    if sample.error is None and not done:
        sample.error = "stream ended without data: [DONE]"
    if sample.error is None and sample.completion_tokens != max_tokens:
        sample.error = f"got {sample.completion_tokens} output tokens, expected {max_tokens}"
    return sample


async def run_scenario(
    client: httpx.AsyncClient, base_id: str, scenario: str, repeat: int, n: int, concurrency: int, max_tokens: int
) -> Run:
    mixed = [*ADAPTERS, BASE]  # b and c: the same requests, round-robin over the adapters and the base
    targets = [ADAPTERS[0] if scenario == "a" else mixed[i % len(mixed)] for i in range(n)]
    samples: list[Sample | None] = [None] * n
    jobs = iter(range(n))  # shared by the workers: each takes the next request when it is free

    async def worker() -> None:
        for i in jobs:
            samples[i] = await one_request(client, base_id, targets[i], PROMPTS[i % len(PROMPTS)], max_tokens)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(1 if scenario == "c" else concurrency)))
    return Run(scenario, repeat, time.perf_counter() - start, [s for s in samples if s is not None])


async def bench(args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes], log: Path) -> list[Run]:
    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=600.0, limits=limits) as client:
        base_id = str((await wait_ready(client, proc, log))["model"])
        for target in [*ADAPTERS, BASE]:  # warm-up: one request per adapter and the base
            warm = await one_request(client, base_id, target, PROMPTS[0], args.max_tokens)
            if warm.error:
                raise RuntimeError(f"warm-up on {target} failed: {warm.error}")
        runs: list[Run] = []
        for repeat in range(args.repeats):
            for scenario in SCENARIOS:
                run = await run_scenario(
                    client, base_id, scenario, repeat, args.requests, args.concurrency, args.max_tokens
                )
                failed = sum(s.error is not None for s in run.samples)
                progress = f"repeat {repeat + 1}/{args.repeats} {scenario}: {run.tokens_per_s:7.1f} tok/s"
                print(f"  {progress} in {run.wall_s:6.1f}s, {failed} failed", file=sys.stderr)
                runs.append(run)
        return runs


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile; nan when empty."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in SCENARIOS:
        mine = [r for r in runs if r.scenario == key]
        ok = [s for r in mine for s in r.samples if s.error is None]
        ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
        latency = [s.latency_s for s in ok]
        out[key] = {
            "tok_s_runs": [round(r.tokens_per_s, 2) for r in mine],
            "tok_s": statistics.median(r.tokens_per_s for r in mine),
            "ttft_ms": (pct(ttft, 50) * 1000, pct(ttft, 95) * 1000),
            "latency_s": (pct(latency, 50), pct(latency, 95)),
            "failed": sum(s.error is not None for r in mine for s in r.samples),
            "errors": sorted({s.error for r in mine for s in r.samples if s.error})[:5],
        }
    return out


def git_commit() -> str:
    cmd = ["git", "describe", "--always", "--dirty", "--abbrev=7"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


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
    ]
    for key, title in SCENARIOS.items():
        s = summary[key]
        runs = ", ".join(f"{v:.1f}" for v in s["tok_s_runs"])
        lines.append(
            f"| {key}: {title} | {s['tok_s']:.1f} | {runs} | {s['ttft_ms'][0]:.0f} / {s['ttft_ms'][1]:.0f} "
            f"| {s['latency_s'][0]:.2f} / {s['latency_s'][1]:.2f} | {s['failed']} |"
        )
    lines += [
        "",
        f"Setting: {setting['cpu']}, {setting['cores']} cores shared by client and server; model {setting['model']}, "
        f"{setting['dtype']}, hf engine, max batch {MAX_BATCH_SIZE}; {setting['requests']} requests per scenario, "
        f"concurrency {setting['concurrency']} (c: 1); 3 LoRA adapters r=8 on q/k/v/o; prompts "
        f"{setting['prompt_tokens'][0]}–{setting['prompt_tokens'][1]} tokens (chat template), "
        f"{setting['max_tokens']} output tokens (ignore_eos), temperature 0; scenarios interleaved, "
        f"{args.repeats} repeat(s); commit {setting['commit']}.",
        "",
        f"Command: `{setting['command']}`",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="base model (embedded name or HF dir)")
    parser.add_argument("--dtype", default="bfloat16", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--requests", type=int, help="requests per scenario (default 32; quick 8)")
    parser.add_argument("--concurrency", type=int, help="concurrent clients in a and b (default 16; quick 8)")
    parser.add_argument("--max-tokens", type=int, help="output tokens per request (default 64; quick 8)")
    parser.add_argument("--repeats", type=int, help="repeats per scenario, median reported (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: small defaults, finishes in <1 min")
    args = parser.parse_args()
    defaults = {"requests": 8, "concurrency": 8, "max_tokens": 8, "repeats": 1} if args.quick else {
        "requests": 32, "concurrency": 16, "max_tokens": 64, "repeats": 3
    }  # fmt: skip
    return fill_defaults(args, defaults)


def fill_defaults(args: argparse.Namespace, defaults: dict[str, Any]) -> argparse.Namespace:
    """Options left unset (None) take the mode's default (quick or full)."""
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the server is stopped and the temp dir removed


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        started = time.perf_counter()
        make_adapters_in_child(args.model, tmp / "adapters")
        adapters = {name: tmp / "adapters" / name for name in ADAPTERS}
        print(f"made {len(adapters)} adapters in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        load_before = os.getloadavg()
        (tmp / "empty").mkdir()  # as --adapter-dir: serve only the bench adapters, not the bundled ones
        server_cmd = [sys.executable, "-m", "switchboard.cli", "serve", "--model", args.model, "--dtype", args.dtype]
        server_cmd += [arg for name, path in adapters.items() for arg in ("--adapter", f"{name}={path}")]
        server_cmd += ["--adapter-dir", str(tmp / "empty"), "--state-dir", str(tmp / "state"), "--host", "127.0.0.1"]
        port = free_port()
        server_cmd += ["--port", str(port), "--max-batch-size", str(MAX_BATCH_SIZE), "--log-level", "warning"]
        with server(server_cmd, tmp / "server.log") as proc:
            runs = asyncio.run(bench(args, port, proc, tmp / "server.log"))
    summary = summarize(runs)
    prompt_tokens = [s.prompt_tokens for r in runs for s in r.samples if s.error is None] or [0]
    setting = {
        **{k: getattr(args, k) for k in ("model", "dtype", "requests", "concurrency", "max_tokens", "repeats")},
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_before_after": (load_before, os.getloadavg()),  # other work on the machine skews the figures
        "prompt_tokens": (min(prompt_tokens), max(prompt_tokens)),
        "command": shlex.join(["python", *sys.argv]),
        "server_command": shlex.join(["python", *server_cmd[1:]]),
        "commit": git_commit(),
    }
    print(report(args, setting, summary))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"batching-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result = {"setting": setting, "summary": summary, "runs": [asdict(r) for r in runs]}
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {out.relative_to(REPO)}", file=sys.stderr)
    failed = sum(s["failed"] for s in summary.values())
    for key, s in summary.items():
        for error in s["errors"]:
            print(f"failed in {key}: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was already stopped on the way out
        sys.exit(130)
