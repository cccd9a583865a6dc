"""Replicas benchmark (#15): how fast a change reaches every replica, and what the shared registry costs.

(1) Convergence: three `switchboard serve --registry postgresql://…` replicas; a new adapter is
registered on replica A, and replicas B and C are polled with a 1-token chat request for it; reported:
seconds from A's 201 to the first token of the new version on B and C (median, p95, max).
(2) Throughput: one replica on the JSON file vs one on PostgreSQL, run one after the other (interleaved
per repeat), each serving `--concurrency` streaming clients on an A/B experiment between two adapters
(so experiment statistics record and, on PostgreSQL, flush once a second); reported: output tok/s and
the ratio PostgreSQL ÷ JSON (target >= 0.98: the store must stay off the token path).
Creates and drops its own database on `--postgres`. Never asserts a speed; exits 1 if a request failed.
Usage: `python loadtests/bench_replicas.py [--quick] [--postgres postgresql://postgres@127.0.0.1/test]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness
import httpx
import psycopg
from harness import PROMPTS, Run, Sample

ADAPTERS = ("bench-a", "bench-b")
ADMIN = "sk-bench-admin"
QUICK = {"registrations": 3, "requests": 16, "concurrency": 8, "max_tokens": 8, "repeats": 1}
FULL = {"registrations": 10, "requests": 64, "concurrency": 16, "max_tokens": 32, "repeats": 2}


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of `admin_url`, dropped afterwards."""
    name = f"sb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            head, _, _ = admin_url.rpartition("/")
            yield f"{head}/{name}"
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def replicas(cmds: list[list[str]], tmp: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(harness.server(cmd, tmp / f"replica-{i}.log")) for i, cmd in enumerate(cmds)]


async def first_token_after(client: httpx.AsyncClient, name: str, base_id: str, since: float) -> float:
    """Poll `client`'s replica with 1-token requests for `name` until one streams a token; seconds since `since`."""
    while True:
        sample = Sample(name)
        await harness.stream_chat(client, sample, PROMPTS[0], 1, name, base_id)
        if sample.error is None:
            return time.perf_counter() - since
        if time.perf_counter() - since > 60:
            raise RuntimeError(f"{name} never answered: {sample.error}")
        await asyncio.sleep(0.01)


async def convergence(
    args: argparse.Namespace, ports: list[int], procs: list[Any], tmp: Path, root: Path
) -> list[float]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    clients = [harness.client(port, 4, headers=headers) for port in ports]
    async with contextlib.AsyncExitStack() as stack:
        for c in clients:
            await stack.enter_async_context(c)
        base_id = ""
        for i, (c, proc) in enumerate(zip(clients, procs, strict=True)):
            base_id = str((await harness.wait_ready(c, proc, tmp / f"replica-{i}.log")).json()["model"])
        took: list[float] = []
        for n in range(args.registrations):
            name = f"conv-{n}"
            body = {"name": name, "path": str(root / ADAPTERS[n % 2])}
            resp = await clients[0].post("/admin/adapters", json=body)
            if resp.status_code != 201:
                raise RuntimeError(f"registration failed: {resp.text}")
            since = time.perf_counter()
            took += await asyncio.gather(*(first_token_after(c, name, base_id, since) for c in clients[1:]))
        return took


async def throughput(args: argparse.Namespace, port: int, proc: Any, log: Path, label: str, repeat: int) -> Run:
    async with harness.client(port, args.concurrency + 4, headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        base_id = str((await harness.wait_ready(client, proc, log)).json()["model"])
        experiment = {"variants": {ADAPTERS[0]: 1, ADAPTERS[1]: 1}, "sticky": "none"}
        (await client.put("/admin/experiments/exp", json=experiment)).raise_for_status()
        await harness.one_request(client, base_id, "exp", PROMPTS[0], args.max_tokens)  # warm-up
        wall, samples = await harness.clients(
            args.requests,
            args.concurrency,
            lambda i: harness.one_request(client, base_id, "exp", PROMPTS[i % len(PROMPTS)], args.max_tokens),
        )
        run = Run(label, repeat, wall, samples)
        harness.progress(run, args.repeats)
        return run


def parse_args() -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: small defaults", dtypes=harness.DTYPES)
    parser.add_argument(
        "--postgres", default=os.environ.get("SWITCHBOARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    )
    return harness.parse(
        parser, QUICK, FULL, registrations="registrations timed to every replica", requests="requests per run",
        concurrency="streaming clients", max_tokens="output tokens per request", repeats="runs per store",
    )  # fmt: skip


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="switchboard-replicas-") as tmp_dir, database(args.postgres) as url:
        tmp = Path(tmp_dir)
        root = tmp / "adapters"
        static = harness.adapters(args.model, root, ADAPTERS)
        shared = ["--registry", url, "--adapter-root", str(root), "--admin-key", ADMIN]
        ports = [harness.free_port() for _ in range(3)]
        cmds = [
            harness.serve_command(sys.executable, args, port, tmp, {}, *shared, state=f"state-{i}")
            for i, port in enumerate(ports)
        ]
        with replicas(cmds, tmp) as procs:
            took = asyncio.run(convergence(args, ports, procs, tmp, root))
        runs: list[Run] = []
        for repeat in range(args.repeats):
            for label, extra in (
                ("json", ["--admin-key", ADMIN]),
                ("postgresql", ["--registry", url, "--admin-key", ADMIN]),
            ):
                port = harness.free_port()
                cmd = harness.serve_command(
                    sys.executable, args, port, tmp, static, *extra, "--admin-key", ADMIN, state=f"{label}-{repeat}"
                )
                with harness.server(cmd, tmp / f"{label}.log") as proc:
                    runs.append(asyncio.run(throughput(args, port, proc, tmp / f"{label}.log", label, repeat)))
    summary = {label: harness.summarize([r for r in runs if r.scenario == label]) for label in ("json", "postgresql")}
    ratio = summary["postgresql"]["tok_s"] / summary["json"]["tok_s"] if summary["json"]["tok_s"] else float("nan")
    p50, p95 = harness.p50_p95(took)
    setting = {**{k: getattr(args, k) for k in ("model", "dtype", *QUICK)}, **harness.machine(load_before)}
    lines = [
        f"### Replicas: convergence and the shared registry's cost ({setting['date']})",
        "",
        f"Registration on A → first token of the new version on B and C ({len(took)} samples): "
        f"median {p50:.3f} s, p95 {p95:.3f} s, max {max(took):.3f} s.",
        "",
        "| store | output tok/s (median) | per run | TTFT p50 / p95 (ms) | latency p50 / p95 (s) | failed |",
        "|---|---|---|---|---|---|",
        *(f"| {label} | {harness.cells(summary[label])} | {summary[label]['failed']} |" for label in summary),
        "",
        f"PostgreSQL ÷ JSON: {ratio:.3f} (target ≥ 0.98, {'met' if ratio >= 0.98 else 'MISSED'})",
        *harness.footer(
            setting,
            "replicas",
            f"model {args.model}, {args.dtype}, hf engine; an A/B experiment between two r=8 adapters, "
            f"{args.requests} requests × {args.max_tokens} tokens, {args.concurrency} clients, "
            f"{args.repeats} run(s) per store",
        ),
    ]  # fmt: skip
    print("\n".join(lines))
    harness.write_result(
        "replicas",
        {"setting": setting, "convergence_s": took, "summary": summary, "runs": [asdict(r) for r in runs]},
    )
    return harness.exit_code(summary)


if __name__ == "__main__":
    harness.run_main(main)
