"""Hot-swap benchmark: how soon a newly registered adapter answers, and what swapping adapters under load costs.

Starts `switchboard serve` with the admin API on and 2 freshly made PEFT adapter dirs under its adapter root, then
1. on the otherwise idle server, `--registrations` times: POST /admin/adapters (a new name, the dirs alternating)
   and, as soon as it returns 201, one streaming request on it; reports the POST's duration (validate + load) and
   POST returned -> first content chunk (target: median <= 0.3 s; vLLM's CPU build ~90 ms);
2. `--requests` streaming requests from `--concurrency` clients, all on model "swapped": A without swapping, B
   while every `--swap-interval` s a new version of "swapped" (the other dir) is registered and the previous
   version deleted, requests still running on it. A, B interleave per repeat; a fixed number of requests (not a
   fixed duration) gives both the same work, so the median ratio B/A (target >= 0.95) compares like with like.
Exits 1 if any request, registration or swap failed; never asserts a speed.
Usage: `python loadtests/bench_hotswap.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench_batching as bb  # the helpers shared with the batching benchmark
import httpx

SWAPPED = "swapped"  # the adapter of part 2, registered (v1) before timing
SOURCES = bb.ADAPTERS[:2]  # the two adapter dirs; each new version takes the other one
PROBE_TOKENS = 8  # output tokens of each part-1 request: only its first token is timed
SCENARIOS = {"A": "no swapping", "B": "swapping"}


@dataclass
class Registration:
    ref: str
    post_s: float  # POST /admin/adapters sent -> 201 received
    first_token_s: float | None  # 201 received -> first content chunk of a request on the new adapter
    error: str | None = None


@dataclass
class SwapRun(bb.Run):
    swaps: int = 0
    swap_post_s: list[float] = field(default_factory=list)
    swap_errors: list[str] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)  # X-Adapter of the responses -> count


@dataclass
class Current:
    ref: str  # the current version of "swapped"
    source: int  # index into SOURCES of its dir


async def admin_call(
    admin: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None, want: int
) -> tuple[dict[str, Any], float, str | None]:
    """One admin API call: its JSON answer, the seconds it took, and an error (None if it answered `want`)."""
    start = time.perf_counter()
    try:
        resp = await admin.request(method, path, json=body)
    except httpx.HTTPError as exc:
        return {}, time.perf_counter() - start, f"{method} {path}: {type(exc).__name__}: {exc}"
    took = time.perf_counter() - start
    if resp.status_code != want:
        return {}, took, f"{method} {path} {body or ''}: HTTP {resp.status_code}: {resp.text[:200]}"
    return dict(resp.json()), took, None


def add(name: str, path: Path) -> tuple[str, str, dict[str, str], int]:
    return "POST", "/admin/adapters", {"name": name, "path": str(path)}, 201


def delete(ref: str) -> tuple[str, str, None, int]:
    return "DELETE", f"/admin/adapters/{ref}", None, 200


async def registrations(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, n: int, dirs: list[Path]
) -> list[Registration]:
    out: list[Registration] = []
    for i in range(n):
        answer, post_s, error = await admin_call(admin, *add(f"reg-{i}", dirs[i % 2]))
        ref, first = answer.get("ref", f"reg-{i}"), None
        if error is None:  # the gap between the 201 and one_request's clock start is only the JSON parse (µs)
            probe = await bb.one_request(client, "", ref, bb.PROMPTS[i % len(bb.PROMPTS)], PROBE_TOKENS)
            first, error = probe.ttft_s, probe.error
            error = error or (await admin_call(admin, *delete(ref)))[2]  # keep the server small and idle
        out.append(Registration(ref, post_s, first, error))
        first_ms = f"{first * 1000:.0f} ms" if first is not None else error
        print(f"  registration {i + 1}/{n}: POST {post_s * 1000:.0f} ms, first token {first_ms}", file=sys.stderr)
    return out


async def swapper(
    admin: httpx.AsyncClient, dirs: list[Path], cur: Current, run: SwapRun, every: float, stop: asyncio.Event
) -> None:
    """Every `every` s: register a new version of "swapped" from the other dir, then delete the previous one."""
    next_at = time.perf_counter() + every
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.perf_counter()))
            return
        except asyncio.TimeoutError:
            next_at += every
        answer, post_s, error = await admin_call(admin, *add(SWAPPED, dirs[1 - cur.source]))
        if error is None:
            run.swaps += 1
            run.swap_post_s.append(post_s)
            error = (await admin_call(admin, *delete(cur.ref)))[2]  # requests still on cur.ref finish on it
            cur.ref, cur.source = str(answer["ref"]), 1 - cur.source
        if error is not None:
            run.swap_errors.append(error)


async def run_load(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, args: argparse.Namespace, scenario: str, repeat: int,
    dirs: list[Path], cur: Current, served: Counter[str],
) -> SwapRun:  # fmt: skip
    run = SwapRun(scenario, repeat, 0.0, [])
    samples: list[bb.Sample | None] = [None] * args.requests
    jobs = iter(range(args.requests))  # shared by the workers: each takes the next request when it is free
    before = Counter(served)

    async def worker() -> None:
        for i in jobs:
            samples[i] = await bb.one_request(client, "", SWAPPED, bb.PROMPTS[i % len(bb.PROMPTS)], args.max_tokens)

    stop = asyncio.Event()
    swaps = asyncio.create_task(swapper(admin, dirs, cur, run, args.swap_interval, stop)) if scenario == "B" else None
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    run.wall_s = time.perf_counter() - start
    stop.set()
    if swaps is not None:
        await swaps
    run.samples = [s for s in samples if s is not None]
    run.served_by = dict(served - before)
    return run


async def bench(
    args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes], log: Path, key: str, dirs: list[Path]
) -> tuple[list[Registration], list[SwapRun]]:
    served: Counter[str] = Counter()

    async def tag(resp: httpx.Response) -> None:  # which version served each chat request (headers come first)
        if resp.request.url.path == "/v1/chat/completions":
            served[resp.headers.get("x-adapter", "none")] += 1

    limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
    base_url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=600.0, limits=limits, event_hooks={"response": [tag]}) as client,
        httpx.AsyncClient(base_url=base_url, timeout=600.0, headers=auth) as admin,
    ):
        base_id = str((await bb.wait_ready(client, proc, log))["model"])
        answer, _, error = await admin_call(admin, *add(SWAPPED, dirs[0]))
        for target in ("base", SWAPPED):  # warm-up: this first registration and a request on each
            warm = await bb.one_request(client, base_id, target, bb.PROMPTS[0], args.max_tokens)
            error = error or warm.error
        if error:
            raise RuntimeError(f"warm-up failed: {error}")
        regs = await registrations(client, admin, args.registrations, dirs)
        cur = Current(str(answer.get("ref")), 0)
        runs: list[SwapRun] = []
        for repeat in range(args.repeats):
            for scenario in SCENARIOS:
                run = await run_load(client, admin, args, scenario, repeat, dirs, cur, served)
                failed = sum(s.error is not None for s in run.samples) + len(run.swap_errors)
                progress = f"repeat {repeat + 1}/{args.repeats} {scenario}: {run.tokens_per_s:7.1f} tok/s"
                print(f"  {progress} in {run.wall_s:6.1f}s, {run.swaps} swaps, {failed} failed", file=sys.stderr)
                runs.append(run)
        return regs, runs


def ms(values: list[float]) -> tuple[float, float]:
    return bb.pct(values, 50) * 1000, bb.pct(values, 95) * 1000


def summarize(regs: list[Registration], runs: list[SwapRun]) -> dict[str, Any]:
    ok_regs = [r for r in regs if r.error is None]
    out: dict[str, Any] = {
        "registration": {
            "post_ms": ms([r.post_s for r in ok_regs]),
            "first_token_ms": ms([r.first_token_s for r in ok_regs if r.first_token_s is not None]),
            "failed": len(regs) - len(ok_regs),
            "errors": [r.error for r in regs if r.error][:5],
        }
    }
    for key in SCENARIOS:
        mine = [r for r in runs if r.scenario == key]
        samples = [s for r in mine for s in r.samples]
        swap_errors = [e for r in mine for e in r.swap_errors]
        ok = [s for s in samples if s.error is None]
        latency = [s.latency_s for s in ok]
        out[key] = {
            "tok_s_runs": [round(r.tokens_per_s, 2) for r in mine],
            "tok_s": statistics.median(r.tokens_per_s for r in mine),
            "ttft_ms": ms([s.ttft_s for s in ok if s.ttft_s is not None]),
            "latency_s": (bb.pct(latency, 50), bb.pct(latency, 95)),
            "swaps_runs": [r.swaps for r in mine],
            "versions_runs": [len(r.served_by) for r in mine],  # distinct versions that served requests
            "swap_post_ms": ms([t for r in mine for t in r.swap_post_s]),
            "failed": sum(s.error is not None for s in samples) + len(swap_errors),
            "errors": sorted({s.error for s in samples if s.error} | set(swap_errors))[:5],
        }
    return out


def report(args: argparse.Namespace, setting: dict[str, Any], summary: dict[str, Any]) -> str:
    a, b, reg = summary["A"], summary["B"], summary["registration"]
    ratio = b["tok_s"] / a["tok_s"] if a["tok_s"] else math.nan
    failed = reg["failed"] + a["failed"] + b["failed"]
    mark = {True: "met", False: "MISSED"}
    first, post = reg["first_token_ms"], reg["post_ms"]
    lines = [
        f"### Hot swap: registration → first token, throughput while swapping ({setting['date']})",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| B/A: output tok/s while swapping ÷ without | {ratio:.2f} | ≥ 0.95 ({mark[ratio >= 0.95]}) |",
        f"| registration → first token, median / p95 | {first[0]:.0f} / {first[1]:.0f} ms "
        f"| median ≤ 300 ms ({mark[first[0] <= 300]}); vLLM CPU ≈ 90 ms |",
        f"| POST /admin/adapters (validate + load), median / p95 | {post[0]:.0f} / {post[1]:.0f} ms | — |",
        f"| failed requests, registrations and swaps | {failed} | 0 ({mark[failed == 0]}) |",
        "",
        f"| scenario | output tok/s (median of {args.repeats}) | per repeat | TTFT p50 / p95 (ms) "
        "| latency p50 / p95 (s) | swaps | versions served | swap POST p50 / p95 (ms) | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, title in SCENARIOS.items():
        s = summary[key]
        swap_ms = "—" if key == "A" else f"{s['swap_post_ms'][0]:.0f} / {s['swap_post_ms'][1]:.0f}"
        lines.append(
            f"| {key}: {title} | {s['tok_s']:.1f} | {', '.join(f'{v:.1f}' for v in s['tok_s_runs'])} "
            f"| {s['ttft_ms'][0]:.0f} / {s['ttft_ms'][1]:.0f} | {s['latency_s'][0]:.2f} / {s['latency_s'][1]:.2f} "
            f"| {', '.join(map(str, s['swaps_runs']))} | {', '.join(map(str, s['versions_runs']))} "
            f"| {swap_ms} | {s['failed']} |"
        )
    lines += [
        "",
        f"Setting: {setting['cpu']}, {setting['cores']} cores shared by client and server; model {setting['model']}, "
        f"{setting['dtype']}, hf engine; LoRA r=8 on q/k/v/o. Part 1: {args.registrations} registrations (new "
        f"names, 2 dirs alternating) on an idle server, one streaming request each ({PROBE_TOKENS} tokens). "
        f"Part 2: {args.requests} requests per scenario, {args.concurrency} concurrent streaming clients, all on "
        f"model `{SWAPPED}`; prompts {setting['prompt_tokens'][0]}–{setting['prompt_tokens'][1]} tokens (chat "
        f"template), {args.max_tokens} output tokens (ignore_eos), temperature 0; B: a new version every "
        f"{args.swap_interval:g} s, then the previous one deleted; A, B interleaved, {args.repeats} repeat(s); "
        f"load average {setting['loadavg_before_after'][0][0]:.2f} before, "
        f"{setting['loadavg_before_after'][1][0]:.2f} after; commit {setting['commit']}.",
        "",
        f"Command: `{setting['command']}`",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="base model (embedded name or HF dir)")
    parser.add_argument("--dtype", default="bfloat16", choices=["auto", "bfloat16", "float16", "float32"])
    parser.add_argument("--registrations", type=int, help="part 1: registrations timed (default 10; quick 3)")
    parser.add_argument("--requests", type=int, help="part 2: requests per scenario (default 160; quick 96)")
    parser.add_argument("--concurrency", type=int, help="part 2: concurrent clients (default 16; quick 8)")
    parser.add_argument("--max-tokens", type=int, help="part 2: output tokens per request (default 64; quick 8)")
    parser.add_argument("--swap-interval", type=float, help="part 2, B: seconds between swaps (default 2; quick 1)")
    parser.add_argument("--repeats", type=int, help="part 2: rounds of A then B, medians (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: small defaults, finishes in <1 min")
    args = parser.parse_args()
    names = ("registrations", "requests", "concurrency", "max_tokens", "swap_interval", "repeats")
    defaults = dict(zip(names, (3, 96, 8, 8, 1.0, 1) if args.quick else (10, 160, 16, 64, 2.0, 3), strict=True))
    return bb.fill_defaults(args, defaults)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, bb.stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="switchboard-hotswap-") as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "adapters"  # the --adapter-root: registrations must come from under it
        started = time.perf_counter()
        bb.make_adapters_in_child(args.model, root)
        dirs = [(root / name).resolve() for name in SOURCES]
        print(f"made the adapters in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        load_before = os.getloadavg()
        (tmp / "empty").mkdir()  # as --adapter-dir: nothing registered at start
        admin_key = secrets.token_urlsafe(16)
        server_cmd = [sys.executable, "-m", "switchboard.cli", "serve", "--model", args.model, "--dtype", args.dtype]
        server_cmd += ["--admin-key", admin_key, "--adapter-root", str(root), "--adapter-dir", str(tmp / "empty")]
        port = bb.free_port()
        server_cmd += ["--state-dir", str(tmp / "state"), "--port", str(port), "--host", "127.0.0.1"]
        server_cmd += ["--log-level", "warning"]
        with bb.server(server_cmd, tmp / "server.log") as proc:
            regs, runs = asyncio.run(bench(args, port, proc, tmp / "server.log", admin_key, dirs))
    summary = summarize(regs, runs)
    prompt_tokens = [s.prompt_tokens for r in runs for s in r.samples if s.error is None] or [0]
    names = ("model", "dtype", "registrations", "requests", "concurrency", "max_tokens", "swap_interval", "repeats")
    setting = {
        **{k: getattr(args, k) for k in names},
        "date": time.strftime("%Y-%m-%d"),
        "cpu": bb.cpu_model(),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_before_after": (load_before, os.getloadavg()),  # other work on the machine skews the figures
        "prompt_tokens": (min(prompt_tokens), max(prompt_tokens)),
        "command": shlex.join(["python", *sys.argv]),
        "server_command": shlex.join(["python", *server_cmd[1:]]).replace(admin_key, "KEY"),
        "commit": bb.git_commit(),
    }
    print(report(args, setting, summary))
    bb.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = bb.RESULTS_DIR / f"hotswap-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result = {"setting": setting, "summary": summary, "registrations": [asdict(r) for r in regs]}
    out.write_text(json.dumps({**result, "runs": [asdict(r) for r in runs]}, indent=2, ensure_ascii=False))
    print(f"wrote {out.relative_to(bb.REPO)}", file=sys.stderr)
    for key, s in summary.items():
        for error in s["errors"]:
            print(f"failed in {key}: {error}", file=sys.stderr)
    return 1 if sum(s["failed"] for s in summary.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the server was already stopped on the way out
        sys.exit(130)
