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
import math
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import PROMPTS, p50_p95

SWAPPED = "swapped"  # the adapter of part 2, registered (v1) before timing
SOURCES = ("bench-a", "bench-b")  # the two adapter dirs; each new version takes the other one
PROBE_TOKENS = 8  # output tokens of each part-1 request: only its first token is timed
SCENARIOS = {"A": "no swapping", "B": "swapping"}
QUICK = {"registrations": 3, "requests": 96, "concurrency": 8, "max_tokens": 8, "swap_interval": 1.0, "repeats": 1}
FULL = {"registrations": 10, "requests": 160, "concurrency": 16, "max_tokens": 64, "swap_interval": 2.0, "repeats": 3}


@dataclass
class Registration:
    ref: str
    post_s: float  # POST /admin/adapters sent -> 201 received
    first_token_s: float | None  # 201 received -> first content chunk of a request on the new adapter
    error: str | None = None


@dataclass
class SwapRun(harness.Run):
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
            probe = await harness.one_request(client, "", ref, PROMPTS[i % len(PROMPTS)], PROBE_TOKENS)
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
    before = Counter(served)
    stop = asyncio.Event()
    swaps = asyncio.create_task(swapper(admin, dirs, cur, run, args.swap_interval, stop)) if scenario == "B" else None
    run.wall_s, run.samples = await harness.clients(
        args.requests,
        args.concurrency,
        lambda i: harness.one_request(client, "", SWAPPED, PROMPTS[i % len(PROMPTS)], args.max_tokens),
    )
    stop.set()
    if swaps is not None:
        await swaps
    run.served_by = dict(served - before)
    return run


async def bench(
    args: argparse.Namespace, port: int, proc: subprocess.Popen[bytes], log: Path, key: str, dirs: list[Path]
) -> tuple[list[Registration], list[SwapRun]]:
    served: Counter[str] = Counter()

    async def tag(resp: httpx.Response) -> None:  # which version served each chat request (headers come first)
        if resp.request.url.path == "/v1/chat/completions":
            served[resp.headers.get("x-adapter", "none")] += 1

    async with (
        harness.client(port, args.concurrency + 4, event_hooks={"response": [tag]}) as client,
        harness.client(port, headers={"Authorization": f"Bearer {key}"}) as admin,
    ):
        base_id = str((await harness.wait_ready(client, proc, log)).json()["model"])
        answer, _, error = await admin_call(admin, *add(SWAPPED, dirs[0]))
        for target in ("base", SWAPPED):  # warm-up: this first registration and a request on each
            warm = await harness.one_request(client, base_id, target, PROMPTS[0], args.max_tokens)
            error = error or warm.error
        if error:
            raise RuntimeError(f"warm-up failed: {error}")
        regs = await registrations(client, admin, args.registrations, dirs)
        cur = Current(str(answer.get("ref")), 0)
        runs: list[SwapRun] = []
        for repeat in range(args.repeats):
            for scenario in SCENARIOS:
                run = await run_load(client, admin, args, scenario, repeat, dirs, cur, served)
                swap_errors = f"{len(run.swap_errors)} failed swaps, " if run.swap_errors else ""
                harness.progress(run, args.repeats, f"{run.swaps} swaps, {swap_errors}")
                runs.append(run)
        return regs, runs


def summarize(regs: list[Registration], runs: list[SwapRun]) -> dict[str, Any]:
    ok_regs = [r for r in regs if r.error is None]
    out: dict[str, Any] = {
        "registration": {
            "post_ms": p50_p95([r.post_s for r in ok_regs], 1000),
            "first_token_ms": p50_p95([r.first_token_s for r in ok_regs if r.first_token_s is not None], 1000),
            "failed": len(regs) - len(ok_regs),
            "errors": [r.error for r in regs if r.error][:5],
        }
    }
    for key in SCENARIOS:
        mine = [r for r in runs if r.scenario == key]
        swap_errors = [e for r in mine for e in r.swap_errors]
        out[key] = harness.summarize(mine)
        out[key].update(
            swaps_runs=[r.swaps for r in mine],
            versions_runs=[len(r.served_by) for r in mine],  # distinct versions that served requests
            swap_post_ms=p50_p95([t for r in mine for t in r.swap_post_s], 1000),
            failed=out[key]["failed"] + len(swap_errors),
            errors=sorted({s.error for r in mine for s in r.samples if s.error} | set(swap_errors))[:5],
        )
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
            f"| {key}: {title} | {harness.cells(s)} | {', '.join(map(str, s['swaps_runs']))} "
            f"| {', '.join(map(str, s['versions_runs']))} | {swap_ms} | {s['failed']} |"
        )
    what = (
        f"model {setting['model']}, {setting['dtype']}, hf engine; LoRA r=8 on q/k/v/o. Part 1: "
        f"{args.registrations} registrations (new names, 2 dirs alternating) on an idle server, one streaming "
        f"request each ({PROBE_TOKENS} tokens). Part 2: {args.requests} requests per scenario, {args.concurrency} "
        f"concurrent streaming clients, all on model `{SWAPPED}`; prompts {setting['prompt_tokens'][0]}–"
        f"{setting['prompt_tokens'][1]} tokens (chat template), {args.max_tokens} output tokens (ignore_eos), "
        f"temperature 0; B: a new version every {args.swap_interval:g} s, then the previous one deleted; A, B "
        f"interleaved, {args.repeats} repeat(s)"
    )
    lines += harness.footer(setting, "server", what)
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: small defaults, finishes in <1 min", dtypes=harness.DTYPES)
    return harness.parse(
        parser, QUICK, FULL, registrations="part 1: registrations timed",
        requests="part 2: requests per scenario", concurrency="part 2: concurrent clients",
        max_tokens="part 2: output tokens per request", swap_interval="part 2, B: seconds between swaps",
        repeats="part 2: rounds of A then B, medians",
    )  # fmt: skip


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-hotswap-") as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "adapters"  # the --adapter-root: registrations must come from under it
        dirs = [path.resolve() for path in harness.adapters(args.model, root, SOURCES).values()]
        load_before = os.getloadavg()
        admin_key = secrets.token_urlsafe(16)
        port = harness.free_port()
        admin = ("--admin-key", admin_key, "--adapter-root", str(root))  # nothing registered at start
        server_cmd = harness.serve_command(sys.executable, args, port, tmp, {}, *admin)
        with harness.server(server_cmd, tmp / "server.log") as proc:
            regs, runs = asyncio.run(bench(args, port, proc, tmp / "server.log", admin_key, dirs))
    summary = summarize(regs, runs)
    prompt_tokens = [s.prompt_tokens for r in runs for s in r.samples if s.error is None] or [0]
    setting = {
        **{k: getattr(args, k) for k in ("model", "dtype", *FULL)},
        **harness.machine(load_before),
        "prompt_tokens": (min(prompt_tokens), max(prompt_tokens)),
        "server_command": shlex.join(["python", *server_cmd[1:]]).replace(admin_key, "KEY"),
    }
    print(report(args, setting, summary))
    result = {"setting": setting, "summary": summary, "registrations": [asdict(r) for r in regs]}
    harness.write_result("hotswap", {**result, "runs": [asdict(r) for r in runs]})
    return harness.exit_code(summary)


if __name__ == "__main__":
    harness.run_main(main)
