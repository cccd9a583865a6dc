"""Per-key limits under load (docs/tenants.md): one key with a requests-per-minute limit hammered by several clients
that never back off, beside an unlimited key, on one server.

Starts `switchboard serve` (the model in --dtype, its bundled adapters left out; the base model answers), creates
two keys through the admin API — `limited` (`--rpm`, and `--max-streams` if given) and `open` (no limits) — and for
--seconds runs --clients clients per key, each sending chat completions of --max-tokens tokens back to back, without
retries.
Reports per key: sent, served (200), refused (429, by reason), other answers, whether every 429 carried
`Retry-After` and the `x-ratelimit-*` headers, and the served count against what the token bucket allows in that
time (rpm at the start, refilled at rpm/60 a second: rpm × (1 + seconds/60)). Exits 1 if the limited key got more
than its bucket allows, the open key was refused anything, or any answer was neither 200 nor 429.

    .venv/bin/python loadtests/bench_ratelimit.py                 # Gemma 3 270M, 60 s, rpm 12
    .venv/bin/python loadtests/bench_ratelimit.py --quick         # 20 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx

ADMIN = "bench-admin"
QUICK = {"seconds": 20.0, "clients": 4, "rpm": 12}
FULL = {"seconds": 60.0, "clients": 8, "rpm": 12}


@dataclass
class Tally:
    sent: int = 0
    served: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    other: Counter[int] = field(default_factory=Counter)
    headers_missing: int = 0
    retry_after: list[int] = field(default_factory=list)
    served_at: list[float] = field(default_factory=list)


async def hammer(client: httpx.AsyncClient, key: str, base: str, args: argparse.Namespace, until: float, t: Tally):
    body = {"model": base, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": args.max_tokens}
    auth = {"Authorization": f"Bearer {key}"}
    while time.monotonic() < until:
        t.sent += 1
        resp = await client.post("/v1/chat/completions", json=body, headers=auth)
        if resp.status_code == 200:
            t.served += 1
            t.served_at.append(time.monotonic())
        elif resp.status_code == 429:
            message = resp.json()["error"]["message"]
            reason = next((r for r in ("per minute", "open", "fair share") if r in message), "other")
            t.refused[reason] += 1
            needed = ("retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
            t.headers_missing += not all(h in resp.headers for h in needed)
            if "retry-after" in resp.headers:
                t.retry_after.append(int(resp.headers["retry-after"]))
                await asyncio.sleep(0.05)  # a client that ignores Retry-After, but does not spin the loop
        else:
            t.other[resp.status_code] += 1


async def drive(args: argparse.Namespace, port: int, proc: Any, log: Path) -> dict[str, Any]:
    async with harness.client(port, connections=4 * args.clients, timeout=300.0) as client:
        ready = await harness.wait_ready(client, proc, log)
        base = str(ready.json()["model"])
        admin = {"Authorization": f"Bearer {ADMIN}"}
        keys = {}
        for name, limits in (("limited", {"rpm": args.rpm, "max_streams": args.max_streams}), ("open", {})):
            created = await client.post("/admin/keys", json={"name": name, **limits}, headers=admin)
            created.raise_for_status()
            keys[name] = created.json()["key"]
        tallies = {name: Tally() for name in keys}
        started = time.monotonic()
        until = started + args.seconds
        await asyncio.gather(
            *(hammer(client, keys[n], base, args, until, tallies[n]) for n in keys for _ in range(args.clients))
        )
        elapsed = time.monotonic() - started
        metrics = (await client.get("/metrics")).text
    allowed = int(args.rpm * (1 + elapsed / 60)) + 1
    return {"elapsed_s": elapsed, "allowed": allowed, "tallies": tallies, "metrics": metrics}


def report(args: argparse.Namespace, out: dict[str, Any], setting: dict[str, Any]) -> tuple[str, int]:
    lines = [
        f"Per-key limits under load: {args.clients} clients per key, no back-off, {out['elapsed_s']:.0f} s; "
        f"key `limited`: rpm {args.rpm}, max_streams {args.max_streams or 'unlimited'}; key `open`: no limits",
        "",
        "| key | sent | served (200) | refused (429): reasons | other | 429s without Retry-After / x-ratelimit-* "
        "| Retry-After s (min-max) | served per minute |",
        "|---|---|---|---|---|---|---|---|",
    ]
    bad = 0
    for name, t in out["tallies"].items():
        reasons = ", ".join(f"{r} {n}" for r, n in t.refused.most_common()) or "none"
        ra = f"{min(t.retry_after)}-{max(t.retry_after)}" if t.retry_after else "-"
        per_min = t.served / out["elapsed_s"] * 60
        lines.append(
            f"| {name} | {t.sent} | {t.served} | {sum(t.refused.values())}: {reasons} | {sum(t.other.values())} "
            f"| {t.headers_missing} | {ra} | {per_min:.1f} |"
        )
        bad += sum(t.other.values()) + t.headers_missing
    limited, open_ = out["tallies"]["limited"], out["tallies"]["open"]
    bad += (limited.served > out["allowed"]) + bool(open_.refused)
    lines += [
        "",
        f"The bucket allows rpm × (1 + {out['elapsed_s']:.0f} s / 60) ≈ {out['allowed']} requests to `limited` in "
        f"this time; it got {limited.served}. `open` was refused {sum(open_.refused.values())}.",
    ]
    counted = [line for line in out["metrics"].splitlines() if line.startswith("switchboard_rate_limited_total{")]
    lines += ["", "```", *counted, "```"]
    lines += harness.footer(setting, "the server", f"{args.model} in {args.dtype}, max_tokens {args.max_tokens}")
    return "\n".join(lines), 1 if bad else 0


def main() -> int:
    parser = harness.parser(__doc__, quick="20 s, 4 clients per key", dtypes=harness.DTYPES)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--max-streams", type=int, default=0, help="the limited key's max_streams (0: unlimited)")
    parser.set_defaults(dtype="auto")
    args = harness.parse(parser, QUICK, FULL, seconds="seconds of load", clients="clients per key", rpm="limit")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        port = harness.free_port()
        cmd = harness.serve_command(sys.executable, args, port, Path(tmp), {}, "--admin-key", ADMIN)
        log = Path(tmp) / "server.log"
        with harness.server(cmd, log) as proc:
            out = asyncio.run(drive(args, port, proc, log))
    text, code = report(args, out, harness.machine(load))
    print(text)
    tallies = {
        name: {**vars(t), "refused": dict(t.refused), "other": dict(t.other)} for name, t in out["tallies"].items()
    }
    harness.write_result("bench_ratelimit", {**{k: v for k, v in out.items() if k != "tallies"}, "tallies": tallies})
    return code


if __name__ == "__main__":
    harness.run_main(main)
