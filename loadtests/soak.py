"""Soak test: many streams for minutes, then adapter register/remove cycles, with the server's memory watched.

1. `--streams` clients stream chat completions back to back for `--minutes`, across every served adapter and the
   bare base model (harness.stream_chat: greedy, exactly `--max-tokens` tokens). A request fails unless its stream
   ends with a finish_reason and `data: [DONE]` and its text is not empty. The server's RSS (VmRSS) is sampled every
   `--sample-s` seconds; the first `--warmup` of the time is warm-up (caches, allocator arenas, batch shapes seen
   for the first time). Growth = median RSS of the last tenth of the samples against the median of the tenth
   after warm-up, in percent; the least-squares slope after warm-up in MiB/min says whether it still climbs.
2. `--register-cycles` times: POST /admin/adapters (one name, a copy of `--churn-adapter` under the adapter root)
   then DELETE it; RSS every 100 cycles; growth = end against after the first tenth of the cycles (warm-up) and
   against the start.
Starts `switchboard serve --config adapters/switchboard.yaml` (as `make serve` runs it; `--model` and `--adapter`
override) on a free port, or drives `--base-url` (with `--pid` for its RSS, `--admin-key` for the cycles).
Prints a table, writes loadtests/results/soak-*.json; exits 1 on a failed request or cycle, or growth past
`--max-growth-pct` (soak) or `--max-churn-mib` (cycles). Usage: `python loadtests/soak.py --minutes 5 --streams 64`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import harness
import httpx
from harness import BASE, PROMPTS, Sample, Transcript

CHURN_NAME = "soak-churn"
CHURN_EVERY = 100  # cycles between RSS samples


@dataclass
class SoakResult:
    streams: int
    minutes: float
    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)
    warm_mib: float = 0.0  # median RSS of the tenth of the samples right after warm-up
    end_mib: float = 0.0  # median RSS of the last tenth of the samples
    growth_pct: float = 0.0
    slope_mib_min: float = 0.0  # least-squares slope of RSS after warm-up


@dataclass
class ChurnResult:
    cycles: int
    rss: list[tuple[int, float]] = field(default_factory=list)  # (cycles done, MiB)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    ms_per_cycle: float = 0.0
    growth_mib: float = 0.0  # end against after the warm-up tenth of the cycles
    growth_from_start_mib: float = 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    return float(statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope)


def plateau(samples: list[tuple[float, float]], duration_s: float, warmup: float) -> tuple[float, float, float, float]:
    """(RSS right after warm-up, RSS at the end, growth %, slope MiB/min) of `samples` over `duration_s`: medians
    over a tenth of the samples each, so one noisy reading decides nothing."""
    after = [s for s in samples if s[0] >= warmup * duration_s] or samples
    tenth = max(1, len(after) // 10)
    warm = statistics.median(mib for _, mib in after[:tenth])
    end = statistics.median(mib for _, mib in after[-tenth:])
    return warm, end, 100 * (end - warm) / warm, 60 * slope(after)


async def models(client: httpx.AsyncClient) -> tuple[str, list[str]]:
    """The base model's id and the adapters served at their current version (not aliases, not experiments)."""
    data = (await client.get("/v1/models")).raise_for_status().json()["data"]
    base = next(m["id"] for m in data if m.get("parent") is None)
    adapters = [m["id"] for m in data if m.get("parent") and not m.get("alias_of") and not m.get("experiment")]
    return base, adapters


async def soak(
    client: httpx.AsyncClient, pid: int, minutes: float, streams: int, max_tokens: int = 32,
    sample_s: float = 2.0, warmup: float = 0.2,
) -> SoakResult:  # fmt: skip
    """`streams` clients streaming back to back for `minutes` over every adapter and the base, RSS sampled."""
    base, adapters = await models(client)
    targets = [*adapters, BASE]
    result = SoakResult(streams, minutes)
    start = time.monotonic()
    deadline = start + 60 * minutes
    errors: set[str] = set()

    async def stream(worker: int) -> None:
        turn = 0
        while time.monotonic() < deadline:
            target, prompt = targets[(worker + turn) % len(targets)], PROMPTS[(worker * 7 + turn) % len(PROMPTS)]
            sample, transcript = Sample(target), Transcript()
            await harness.stream_chat(client, sample, prompt, max_tokens, target, base, transcript=transcript)
            if sample.error is None and transcript.finish_reason is None:
                sample.error = "no finish_reason"
            if sample.error is None and not transcript.text:
                sample.error = "empty text"
            result.requests += 1
            if sample.error is not None:
                result.failed += 1
                errors.add(f"{target}: {sample.error}")
            turn += 1

    async def sampler() -> None:
        while True:
            result.rss.append((time.monotonic() - start, harness.rss_mib(pid)))
            await asyncio.sleep(sample_s)

    watch = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(stream(i) for i in range(streams)))
    finally:
        watch.cancel()
    result.rss.append((time.monotonic() - start, harness.rss_mib(pid)))
    result.errors = sorted(errors)[:10]
    elapsed = time.monotonic() - start
    result.warm_mib, result.end_mib, result.growth_pct, result.slope_mib_min = plateau(result.rss, elapsed, warmup)
    return result


async def churn(client: httpx.AsyncClient, pid: int, cycles: int, path: Path, admin_key: str) -> ChurnResult:
    """Register `path` as CHURN_NAME and remove it, `cycles` times, RSS every CHURN_EVERY cycles."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    result = ChurnResult(cycles, rss=[(0, harness.rss_mib(pid))])
    errors: set[str] = set()
    started = time.perf_counter()
    for done in range(1, cycles + 1):
        added = await client.post("/admin/adapters", json={"name": CHURN_NAME, "path": str(path)}, headers=headers)
        removed = await client.delete(f"/admin/adapters/{CHURN_NAME}", headers=headers)
        for resp, want in ((added, 201), (removed, 200)):
            if resp.status_code != want:
                result.failed += 1
                errors.add(f"{resp.request.method} {resp.status_code}: {resp.text[:200]}")
        if done % CHURN_EVERY == 0 or done == cycles:
            result.rss.append((done, harness.rss_mib(pid)))
            print(f"  cycle {done}: RSS {result.rss[-1][1]:.1f} MiB", file=sys.stderr)
    result.ms_per_cycle = 1000 * (time.perf_counter() - started) / max(1, cycles)
    result.errors = sorted(errors)[:10]
    warm = next((mib for n, mib in result.rss if n >= cycles / 10), result.rss[0][1])
    result.growth_mib = result.rss[-1][1] - warm
    result.growth_from_start_mib = result.rss[-1][1] - result.rss[0][1]
    return result


def table(label: str, s: SoakResult | None, c: ChurnResult | None) -> str:
    """The figures as markdown tables (one row each)."""
    lines = []
    if s is not None:
        lines += [
            "| model | streams | minutes | requests | failed | RSS after warm-up | RSS at end | growth | slope after "
            "warm-up |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {label} | {s.streams} | {s.minutes:g} | {s.requests} | {s.failed} | {s.warm_mib:.0f} MiB | "
            f"{s.end_mib:.0f} MiB | {s.growth_pct:+.1f} % | {s.slope_mib_min:+.2f} MiB/min |",
        ]
    if c is not None:
        lines += [
            *([""] if lines else []),
            "| model | register/remove cycles | failed | ms per cycle | RSS start | growth after warm-up | growth from "
            "start |",
            "|---|---|---|---|---|---|---|",
            f"| {label} | {c.cycles} | {c.failed} | {c.ms_per_cycle:.0f} | {c.rss[0][1]:.0f} MiB | "
            f"{c.growth_mib:+.1f} MiB | {c.growth_from_start_mib:+.1f} MiB |",
        ]
    return "\n".join(lines)


def verdict(s: SoakResult | None, c: ChurnResult | None, max_growth_pct: float, max_churn_mib: float) -> list[str]:
    """What failed, in words (empty: the run passed)."""
    out = []
    if s is not None and s.failed:
        out.append(f"{s.failed} of {s.requests} requests failed: {'; '.join(s.errors)}")
    if s is not None and s.growth_pct > max_growth_pct:
        out.append(f"RSS grew {s.growth_pct:.1f} % after warm-up (bound {max_growth_pct:g} %)")
    if c is not None and c.failed:
        out.append(f"{c.failed} register/remove calls failed: {'; '.join(c.errors)}")
    if c is not None and c.growth_mib > max_churn_mib:
        out.append(f"RSS grew {c.growth_mib:.1f} MiB over {c.cycles} cycles (bound {max_churn_mib:g} MiB)")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="how long to stream (0: no soak)")
    p.add_argument("--streams", type=int, default=64, help="concurrent streaming clients")
    p.add_argument("--max-tokens", type=int, default=32, help="output tokens of each request")
    p.add_argument("--register-cycles", type=int, default=0, help="register/remove cycles after the soak")
    bundled = str(harness.REPO / "adapters" / "switchboard.yaml")
    p.add_argument("--config", default=bundled, help="server config, as `make serve` uses it ('' for none)")
    p.add_argument("--model", help="override the config's model (embedded name or HF dir)")
    p.add_argument("--dtype", help="override the config's dtype")
    p.add_argument("--adapter", action="append", default=[], help="NAME=DIR, more adapters to serve")
    p.add_argument("--churn-adapter", default=str(harness.REPO / "adapters" / "shop"), help="adapter dir to cycle")
    p.add_argument("--base-url", help="drive this server instead of starting one (e.g. http://127.0.0.1:8000)")
    p.add_argument("--pid", type=int, help="with --base-url: the server's pid, for its RSS")
    p.add_argument("--admin-key", help="with --base-url: the admin key, for the register/remove cycles")
    p.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of the soak that is warm-up")
    p.add_argument("--max-growth-pct", type=float, default=5.0, help="RSS growth after warm-up allowed (%%)")
    p.add_argument("--max-churn-mib", type=float, default=20.0, help="RSS growth over the cycles allowed (MiB)")
    p.add_argument("--label", help="the model's name in the table (default: --model, or the config's)")
    return p.parse_args(argv)


async def drive(args: argparse.Namespace, url: str, pid: int, admin_key: str | None, churn_path: Path) -> int:
    load_before = os.getloadavg()
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=httpx.Limits(max_connections=None)) as client:
        s = None
        if args.minutes > 0:
            s = await soak(client, pid, args.minutes, args.streams, args.max_tokens, args.sample_s, args.warmup)
        c = None
        if args.register_cycles:
            if admin_key is None:
                raise SystemExit("--register-cycles with --base-url needs --admin-key")
            c = await churn(client, pid, args.register_cycles, churn_path, admin_key)
    label = args.label or args.model or Path(args.config).name
    print(table(label, s, c))
    setting = harness.machine(load_before)
    cpu = f"{setting['cpu']} [{' '.join(setting['cpu_flags'])}], {setting['cores']} cores"
    print(f"\nSetting: {cpu}; load average {setting['loadavg_before_after'][1][0]:.2f} at the end.")
    harness.write_result("soak", {"setting": setting, "soak": s and asdict(s), "churn": c and asdict(c)})
    problems = verdict(s, c, args.max_growth_pct, args.max_churn_mib)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.base_url:
        if args.pid is None:
            raise SystemExit("--base-url needs --pid (the server's process id) for its RSS")
        return asyncio.run(drive(args, args.base_url, args.pid, args.admin_key, Path(args.churn_adapter)))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name:
        tmp = Path(tmp_name)
        churn_path = shutil.copytree(args.churn_adapter, tmp / "root" / "churn")
        admin_key, port = secrets.token_urlsafe(16), harness.free_port()
        cmd = [sys.executable, "-m", "switchboard.cli", "serve", *(["--config", args.config] if args.config else []),
               "--host", "127.0.0.1",
               "--port", str(port), "--state-dir", str(tmp / "state"), "--adapter-root", str(tmp / "root"),
               "--admin-key", admin_key, "--log-level", "warning"]  # fmt: skip
        (tmp / "empty").mkdir()
        cmd += [] if args.config else ["--adapter-dir", str(tmp / "empty")]  # no config: only the --adapter ones
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--dtype", args.dtype] if args.dtype else []
        cmd += [flag for spec in args.adapter for flag in ("--adapter", spec)]
        log = tmp / "server.log"
        with harness.server(cmd, log) as proc:

            async def ready() -> None:
                async with harness.client(port) as client:
                    await harness.wait_ready(client, proc, log)

            asyncio.run(ready())
            return asyncio.run(drive(args, f"http://127.0.0.1:{port}", proc.pid, admin_key, churn_path))


if __name__ == "__main__":
    harness.run_main(main)
