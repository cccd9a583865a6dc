"""What every benchmark and `loadgen.py` share: their adapters (`adapters`, made by synthetic_adapters.py); a server
started and stopped (`serve_command`, `free_port`, `server`, `wait_ready`, `client`) and its memory (`rss_mib`); ONE
streaming chat client (`stream_chat`; `one_request` and `clients` on it); the machine's facts (`machine`: CPU model
and the flags that decide dtypes, load, command, commit); their options (`parser`, `parse`: quick or full defaults);
their results (`summarize`, `footer`, `write_result`, `exit_code` into RESULTS_DIR); `run_main` (SIGTERM and Ctrl-C
unwind, so servers stop and temp dirs go).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import httpx
from synthetic_adapters import adapters  # noqa: F401 - the benchmarks call harness.adapters

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "loadtests" / "results"
BASE = "base"  # X-Adapter value (and adapter name in traces) that forces the bare base model
DTYPES = ("auto", "bfloat16", "float16", "float32")
READY_DEADLINE_S = 300.0
# the flags that decide dtypes and kernels: switchboard.hardware.FLAGS, read here without importing torch
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
PROMPTS = [  # short and varied, English and Chinese; request i gets PROMPTS[i % 16] in every scenario
    "Write a haiku about the sea.", "Explain what a hash table is in two sentences.",
    "List three tips for staying focused while studying.", "What is the capital of Australia, and why not Sydney?",
    "Translate 'good morning, how are you?' into French.", "Give me a short recipe for scrambled eggs.",
    "Why is the sky blue? Answer for a ten-year-old.", "Summarize the plot of Romeo and Juliet in one paragraph.",
    "请用一句话介绍长城。", "给我三个提高睡眠质量的建议。", "解释一下什么是机器学习。", "写一首关于秋天的短诗。",
    "How do I reverse a list in Python?", "Suggest a name for a friendly robot.",
    "我的订单还没有到，应该怎么办？", "What are the pros and cons of working from home?",
]  # fmt: skip
T = TypeVar("T")


# --- the server ---
def serve_command(
    python: str, args: argparse.Namespace, port: int, tmp: Path, adapter_dirs: Mapping[str, Path],
    *extra: str, state: str = "state",
) -> list[str]:  # fmt: skip
    """`switchboard serve` of args.model in args.dtype with exactly `adapter_dirs` (an empty --adapter-dir keeps
    the bundled ones out), its state under tmp/`state`, on 127.0.0.1:`port`, logging warnings only."""
    (tmp / "empty").mkdir(exist_ok=True)
    flags = [arg for name, path in adapter_dirs.items() for arg in ("--adapter", f"{name}={path}")]
    return [python, "-m", "switchboard.cli", "serve", "--model", args.model, "--dtype", args.dtype, *flags,
            "--adapter-dir", str(tmp / "empty"), "--state-dir", str(tmp / state), "--host", "127.0.0.1",
            "--port", str(port), *extra, "--log-level", "warning"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


KEEPALIVE_S = 4.0  # below the shortest server keep-alive (llama-server: 5 s); it did not end all of its disconnects


def client(port: int, connections: int | None = None, timeout: float = 600.0, **kw: Any) -> httpx.AsyncClient:
    """An httpx client for the server on 127.0.0.1:`port`, with room for `connections` at once."""
    if connections is not None:  # idle connections are dropped before llama-server's 5 s keep-alive closes them
        kw["limits"] = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_S
        )
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout, **kw)


async def wait_ready(
    client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path, path: str = "/ready",
    deadline_s: float = READY_DEADLINE_S, name: str = "server",
) -> httpx.Response:  # fmt: skip
    """Poll `path` until it answers 200 (that answer is returned); raise if the server exits or the deadline passes,
    with the end of its log."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            resp = await client.get(path, timeout=2.0)
            if resp.status_code == 200:
                return resp
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{name} not ready after {deadline_s:.0f}s:\n{log.read_text(errors='replace')[-3000:]}")


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` (VmRSS of /proc/PID/status), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


# --- the client ---
class Record(Protocol):
    """Where `stream_chat` writes what it reads (a `Sample`, loadgen's `Outcome`)."""

    ttft_s: float | None
    latency_s: float | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None


@dataclass
class Sample:
    target: str  # the adapter, or BASE
    ttft_s: float | None = None
    latency_s: float | None = None
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


def chat_request(
    adapter: str, base_model: str, prompt: str, max_tokens: int, response_format: dict[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:  # fmt: skip
    """Body and headers of a greedy streaming chat request of exactly `max_tokens` output tokens (ignore_eos: vLLM's
    extension, taken by Switchboard, the naive server and llama-server); X-Adapter: Switchboard serves the base even
    with routes. With a `response_format` the request ends when its document is complete, so it may yield fewer
    tokens. `extra` fields replace or add to the body's (llama-server: `model` and the adapter's `lora`)."""
    body = {"model": base_model if adapter == BASE else adapter, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True}  # fmt: skip
    if response_format is not None:
        body["response_format"] = response_format
    body.update(extra or {})
    return body, ({"X-Adapter": BASE} if adapter == BASE else {})


@dataclass
class Transcript:
    """What a streamed completion said, kept when the caller checks it (structured outputs): its text and the
    finish_reason of its choice."""

    text: str = ""
    finish_reason: str | None = None


async def stream_chat(
    client: httpx.AsyncClient, rec: Record, prompt: str, max_tokens: int, adapter: str, base_model: str,
    origin: float | None = None, itl: list[float] | None = None, response_format: dict[str, Any] | None = None,
    transcript: Transcript | None = None, extra: Mapping[str, Any] | None = None,
) -> float:  # fmt: skip
    """Send one streaming chat request and read its SSE stream into `rec` as it comes (a cancelled request keeps
    what it had): TTFT and latency from `origin` (default: the send), the gaps between content chunks into `itl`,
    the text and finish_reason into `transcript`, usage, and an error unless the stream ended with `data: [DONE]`
    after exactly `max_tokens` output tokens (with a `response_format`: 1 to `max_tokens`, see `chat_request`, as
    `extra`). Returns the perf_counter at its end."""
    body, headers = chat_request(adapter, base_model, prompt, max_tokens, response_format, extra)
    origin = time.perf_counter() if origin is None else origin
    done = False  # a complete stream ends with `data: [DONE]`
    last: float | None = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
            if resp.status_code != 200:
                rec.error = f"HTTP {resp.status_code}: {(await resp.aread()).decode(errors='replace')[:200]}"
            else:
                async for line in resp.aiter_lines():
                    done = done or line == "data: [DONE]"
                    if not line.startswith("data: ") or done:
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        rec.error = str(chunk["error"].get("message"))[:200]
                    elif chunk.get("usage"):
                        rec.prompt_tokens = chunk["usage"]["prompt_tokens"]
                        rec.completion_tokens = chunk["usage"]["completion_tokens"]
                    choices = chunk.get("choices") or []
                    if transcript is not None:
                        transcript.text += "".join((c.get("delta") or {}).get("content") or "" for c in choices)
                        transcript.finish_reason = next(
                            (c["finish_reason"] for c in choices if c.get("finish_reason")), transcript.finish_reason
                        )
                    if any((c.get("delta") or {}).get("content") for c in choices):
                        now = time.perf_counter()
                        if last is None:
                            rec.ttft_s = now - origin
                        elif itl is not None:
                            itl.append(now - last)
                        last = now
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:200]
    end = time.perf_counter()
    rec.latency_s = end - origin
    if rec.error is None and not done:
        rec.error = "stream ended without data: [DONE]"
    least = max_tokens if response_format is None else 1  # a constrained request stops when its document is done
    if rec.error is None and not least <= rec.completion_tokens <= max_tokens:
        expected = max_tokens if least == max_tokens else f"1 to {max_tokens}"
        rec.error = f"got {rec.completion_tokens} output tokens, expected {expected}"
    return end


async def one_request(client: httpx.AsyncClient, base_id: str, target: str, prompt: str, max_tokens: int) -> Sample:
    sample = Sample(target)
    await stream_chat(client, sample, prompt, max_tokens, target, base_id)
    return sample


async def clients(n: int, concurrency: int, one: Callable[[int], Awaitable[T]]) -> tuple[float, list[T]]:
    """`one(0)` … `one(n - 1)` from `concurrency` clients, each taking the next index when it is free: the wall
    seconds and the results in index order."""
    results: dict[int, T] = {}
    jobs = iter(range(n))  # shared by the clients

    async def worker() -> None:
        for i in jobs:
            results[i] = await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, [results[i] for i in sorted(results)]


# --- facts and results ---
def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; nan when empty."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def p50_p95(values: Sequence[float], scale: float = 1.0) -> tuple[float, float]:
    return pct(values, 50) * scale, pct(values, 95) * scale


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """Median output tok/s over the runs (and each run's), TTFT (ms) and latency (s) p50 / p95 over their
    successful requests, failures and the first errors."""
    samples = [s for r in runs for s in r.samples]
    ok = [s for s in samples if s.error is None]
    return {
        "tok_s_runs": [round(r.tokens_per_s, 2) for r in runs],
        "tok_s": statistics.median(r.tokens_per_s for r in runs),
        "ttft_ms": p50_p95([s.ttft_s for s in ok if s.ttft_s is not None], 1000),
        "latency_s": p50_p95([s.latency_s for s in ok if s.latency_s is not None]),
        "failed": sum(s.error is not None for s in samples),
        "errors": sorted({s.error for s in samples if s.error})[:5],
    }


def cells(s: Mapping[str, Any]) -> str:
    """A `summarize` as markdown cells: tok/s | per repeat | TTFT p50 / p95 | latency p50 / p95."""
    runs = ", ".join(f"{v:.1f}" for v in s["tok_s_runs"])
    ttft, latency = s["ttft_ms"], s["latency_s"]
    return f"{s['tok_s']:.1f} | {runs} | {ttft[0]:.0f} / {ttft[1]:.0f} | {latency[0]:.2f} / {latency[1]:.2f}"


def progress(run: Run, repeats: int, note: str = "") -> None:
    failed = sum(s.error is not None for s in run.samples)
    head = f"repeat {run.repeat + 1}/{repeats} {run.scenario}: {run.tokens_per_s:7.1f} tok/s"
    print(f"  {head} in {run.wall_s:6.1f}s, {note}{failed} failed", file=sys.stderr)


def cpu() -> tuple[str, list[str]]:
    """The CPU's model name and those of CPU_FLAGS it has (the first processor of /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    present = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown CPU"), [flag for flag in CPU_FLAGS if flag in present]


def git_commit() -> str:
    cmd = ["git", "describe", "--always", "--dirty", "--abbrev=7"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def machine(
    load_before: tuple[float, float, float], argv: Sequence[str] | None = None, cpu_facts: Any = None
) -> dict[str, Any]:
    """The facts of a run, at its end: what ran where, and how busy the machine was (other work skews figures).
    `cpu_facts` replaces `cpu()` where torch is loaded anyway (switchboard.hardware.cpu_info().as_dict())."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        **(dict(zip(("cpu", "cpu_flags"), cpu(), strict=True)) if cpu_facts is None else {"cpu": cpu_facts}),
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),  # inherited by the servers
        "loadavg_before_after": (load_before, os.getloadavg()),
        "command": shlex.join(["python", *(sys.argv if argv is None else [sys.argv[0], *argv])]),
        "commit": git_commit(),
    }


def footer(setting: Mapping[str, Any], shared: str, what: str) -> list[str]:
    """A report's last lines: `machine`'s facts around `what` (the workload), then the command."""
    load = setting["loadavg_before_after"]
    return [
        "",
        f"Setting: {setting['cpu']} [{' '.join(setting['cpu_flags']) or 'no AVX2'}], {setting['cores']} cores shared "
        f"by client and {shared}; {what}; load average {load[0][0]:.2f} before, {load[1][0]:.2f} after; "
        f"commit {setting['commit']}.",
        "",
        f"Command: `{setting['command']}`",
    ]


def write_result(name: str, result: Any, out_dir: Path = RESULTS_DIR, indent: int = 2, say: bool = True) -> Path:
    """`result` as out_dir/NAME-<time>.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=indent, ensure_ascii=False, default=str))
    if say:
        print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}", file=sys.stderr)
    return out


def exit_code(summary: Mapping[str, Mapping[str, Any]], prefix: str = "failed in ") -> int:
    """Print each part's errors; 1 if any request failed, else 0."""
    for key, s in summary.items():
        for error in s["errors"]:
            print(f"{prefix}{key}: {error}", file=sys.stderr)
    return 1 if sum(s["failed"] for s in summary.values()) else 0


# --- options and main ---
def parser(
    doc: str | None, quick: str | None = None, model: bool = True, dtypes: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """The options every benchmark names alike: --model, --dtype (if `dtypes`), --quick (if its help is given)."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick is not None:
        out.add_argument("--quick", action="store_true", help=quick)
    if model:
        out.add_argument("--model", default="gemma3-270m", help="base model (embedded name or HF dir)")
    if dtypes:
        out.add_argument("--dtype", default="bfloat16", choices=list(dtypes))
    return out


def fill_defaults(args: argparse.Namespace, defaults: Mapping[str, Any]) -> argparse.Namespace:
    """Options left unset (None) take the mode's default (quick or full)."""
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def parse(
    parser: argparse.ArgumentParser, quick: Mapping[str, Any], full: Mapping[str, Any],
    argv: Sequence[str] | None = None, **sized: str,
) -> argparse.Namespace:  # fmt: skip
    """Parse `argv` (default: the command line), with an option per `sized` (name=help; its type and defaults
    from `full` and `quick`); options left unset take the quick or the full default."""
    for name, text in sized.items():
        defaults = f"(default {full[name]:g}; quick {quick[name]:g})"
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(full[name]), help=f"{text} {defaults}")
    args = parser.parse_args(argv)
    return fill_defaults(args, quick if args.quick else full)


def run_main(main: Callable[[], int]) -> NoReturn:
    """sys.exit(main()), with SIGTERM and Ctrl-C unwinding through it (servers stopped, temp dirs removed)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds like Ctrl-C

    signal.signal(signal.SIGTERM, stop)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
