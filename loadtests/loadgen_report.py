"""Summaries, ratios, the markdown report and the PNG plots of `loadgen.py`; for the structured-output scenarios
(`json-S`), the same per class of request: constrained (with a response format) and unconstrained."""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import utilisation
from loadgen_driver import Outcome, Run
from loadgen_formats import CHECKS
from loadgen_workload import BASE

PERCENTILES = (50, 95, 99)
TARGET_TITLES = {
    "switchboard": "Switchboard",
    "switchboard-fp32": "Switchboard --weights dtype (fp32)",
    "switchboard-full-head": "Switchboard --lm-head full",
    "switchboard-bf16": "Switchboard --dtype bfloat16",
    "switchboard-bf16-plain": "Switchboard --dtype bfloat16 --weights dtype",
    "naive": "naive PEFT",
    "vllm": "vLLM",
    "switchboard-vllm": "Switchboard --engine vllm",
    "llamacpp": "llama.cpp llama-server",
}
STRUCTURED = "json-"  # scenario key prefix: json-S, a share S of the requests constrained
CLASSES = {"json": "constrained", "free": "unconstrained"}
TARGET_RATIO = 0.8  # #17: constrained rows keep at least 0.8x the tokens/s of unconstrained ones
STRUCTURED_SETTING = (
    "json-S: the same trace with a share S of the requests (evenly spread) sending a response_format, in turn {} "
    "(loadgen_formats.py), each ending when its document is complete; "
)


def _pcts(values: list[float], scale: float = 1.0) -> list[float]:
    return [harness.pct(values, p) * scale for p in PERCENTILES]


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per `target/scenario`: median throughput over the repeats, latency percentiles over all their requests."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(f"{r.target}/{r.scenario}" for r in runs):
        mine = [r for r in runs if f"{r.target}/{r.scenario}" == key]
        ok = [o for r in mine for o in r.outcomes if o.status == "ok"]
        everything = [o for r in mine for o in r.outcomes]
        out[key] = {
            "target": mine[0].target,
            "scenario": mine[0].scenario,
            "tok_s": statistics.median(r.tokens_per_s for r in mine),
            "tok_s_runs": [round(r.tokens_per_s, 2) for r in mine],
            "req_s": statistics.median(r.requests_per_s for r in mine),
            "ttft_ms": _pcts([o.ttft_s for o in ok if o.ttft_s is not None], 1000),
            "itl_ms": _pcts([gap for o in ok for gap in o.itl_s], 1000),
            "latency_s": _pcts([o.latency_s for o in ok if o.latency_s is not None]),
            "requests": len(everything),
            **{status: sum(o.status == status for o in everything) for status in ("ok", "failed", "cancelled")},
            "not_sent": sum(o.status == "not_sent" for o in everything),
            "prompt_tokens_mean": statistics.fmean(o.prompt_tokens for o in ok) if ok else math.nan,
            "output_tokens_mean": statistics.fmean(o.completion_tokens for o in ok) if ok else math.nan,
            "errors": sorted({o.error for o in everything if o.error})[:5],
            "rss_mib": max((r.rss_mib for r in mine if r.rss_mib is not None), default=math.nan),
            "decode_batch": _median([r.decode_batch for r in mine if r.decode_batch is not None]),
        }
        if mine[0].scenario.startswith(STRUCTURED):
            out[key]["classes"] = {name: _class_summary(mine, name) for name in CLASSES}
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def add_utilisation(summary: dict[str, dict[str, Any]], runs: list[Run], config: dict[str, Any],
                    lora: dict[str, Any], peaks: dict[str, dict[str, Any]], dtype: str) -> None:  # fmt: skip
    """Add to each target/scenario the FLOPs per output token (its mean context, the share of its tokens decoded on an
    adapter of `lora`'s rank and targets) and its utilisation of the GEMM peak: in `dtype` for the torch servers (bf16
    for switchboard-bf16 and -bf16-plain), in fp32 for llama.cpp (Q4_K_M has no torch peak; fp32 is the common
    denominator)."""
    for key, s in summary.items():
        ok = [o for r in runs if f"{r.target}/{r.scenario}" == key for o in r.outcomes if o.status == "ok"]
        tokens = sum(o.completion_tokens for o in ok)
        on_adapter = sum(o.completion_tokens for o in ok if o.adapter != BASE) / tokens if tokens else 0.0
        context = s["prompt_tokens_mean"] + s["output_tokens_mean"] / 2 if ok else 0.0
        flops = utilisation.flops_per_token(config, context, int(lora.get("r", 0)), lora.get("target_modules") or (),
                                            on_adapter)  # fmt: skip
        peak = {"llamacpp": "float32", "switchboard-bf16": "bfloat16", "switchboard-bf16-plain": "bfloat16"}.get(
            s["target"], dtype
        )
        s["flops_per_token"], s["peak_dtype"] = flops, peak
        s["utilisation"] = utilisation.utilisation(s["tok_s"], flops, peaks[peak]["flops"])


def _class_of(o: Outcome) -> str:
    return "free" if o.response_format is None else "json"


def _class_summary(runs: list[Run], name: str) -> dict[str, Any]:
    """One class of requests of some repeats of a scenario: per-row decode tok/s ((tokens − 1) / (latency − TTFT),
    summed over the rows, so long rows weigh more; prefills that join the batch meanwhile count), 1 / ITL p50 (a
    decode step without a prefill in it), the class's share of the output tok/s (median over the repeats), and the
    structured rows' checks (valid / cut by max_tokens / invalid)."""
    ok = [o for r in runs for o in r.outcomes if o.status == "ok" and _class_of(o) == name]
    rows = [o for o in ok if o.completion_tokens > 1 and o.ttft_s is not None and o.latency_s is not None]
    decode_s = sum((o.latency_s or 0.0) - (o.ttft_s or 0.0) for o in rows)
    itl_p50 = harness.pct([gap for o in ok for gap in o.itl_s], 50)
    shares = [sum(o.completion_tokens for o in r.outcomes if o.status == "ok" and _class_of(o) == name) / r.wall_s
              for r in runs]  # fmt: skip
    return {
        "ok": len(ok),
        "output_tokens_mean": statistics.fmean(o.completion_tokens for o in ok) if ok else math.nan,
        "row_tok_s": sum(o.completion_tokens - 1 for o in rows) / decode_s if decode_s else math.nan,
        "step_tok_s": 1.0 / itl_p50 if itl_p50 else math.nan,
        "tok_s": statistics.median(shares) if ok else math.nan,
        "checks": {check: sum(o.check == check for o in ok) for check in CHECKS},
    }


def invalid_documents(runs: list[Run]) -> list[tuple[str, str]]:
    """(`target/scenario`, text) of each constrained completion that ended without a valid document, not cut by
    max_tokens: a broken grammar, what the check exists to catch."""
    return [(f"{r.target}/{r.scenario}", o.transcript.text if o.transcript else "") for r in runs
            for o in r.outcomes if o.check == "invalid"]  # fmt: skip


def structured_ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Constrained ÷ unconstrained, per target: each json-S run's constrained rows against the all-free json-0 run
    of the same server (per-row decode tok/s, 1 / ITL p50), the whole run's output tok/s against json-0's, and
    inside a mixed run the two classes against each other (they share every decode step)."""
    out = []
    for key, s in summary.items():
        target, scenario = key.split("/", 1)
        base = summary.get(f"{target}/{STRUCTURED}0")
        if "classes" not in s or scenario == f"{STRUCTURED}0":
            continue
        mine, title = s["classes"], f"{TARGET_TITLES[target]}, {scenario}"
        pairs = [("mixed batch: constrained ÷ unconstrained rows of the same run, per-row decode tok/s",
                  mine["json"]["row_tok_s"], mine["free"]["row_tok_s"])]  # fmt: skip
        if base is not None:
            free = base["classes"]["free"]
            pairs += [
                (f"constrained rows ÷ the rows of {STRUCTURED}0 (none constrained), per-row decode tok/s",
                 mine["json"]["row_tok_s"], free["row_tok_s"]),
                (f"constrained rows ÷ the rows of {STRUCTURED}0, 1 / ITL p50", mine["json"]["step_tok_s"],
                 free["step_tok_s"]),
                (f"unconstrained rows ÷ the rows of {STRUCTURED}0, per-row decode tok/s", mine["free"]["row_tok_s"],
                 free["row_tok_s"]),
                (f"whole run ÷ {STRUCTURED}0, output tok/s", s["tok_s"], base["tok_s"]),
            ]  # fmt: skip
        for what, top, bottom in pairs:
            value = top / bottom if bottom and not math.isnan(top) else math.nan
            if not math.isnan(value):
                out.append({"ratio": f"{title}: {what}", "value": value, "numerator": top, "denominator": bottom})
    return out


def structured_markdown(setting: dict[str, Any], summary: dict[str, dict[str, Any]],
                        ratio_rows: list[dict[str, Any]]) -> list[str]:  # fmt: skip
    """The structured-output part of the report: the ratios, then each class of each json-S run."""
    keyed = [s for s in summary.values() if "classes" in s]
    if not keyed:
        return []
    lines = [
        "",
        f"#### Structured outputs under load (target: constrained ≥ {TARGET_RATIO:g}× unconstrained)",
        "",
        "| ratio | value |",
        "|---|---|",
        *(f"| {r['ratio']} | {r['value']:.2f} |" for r in ratio_rows),
        "",
        "| target, scenario | rows | ok | output tokens (mean) | per-row decode tok/s | 1 / ITL p50 (tok/s) "
        f"| output tok/s (median of {setting['repeats']}) | valid / cut by max_tokens / invalid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in keyed:
        for name, c in s["classes"].items():
            if not c["ok"]:
                continue
            checks = " / ".join(str(c["checks"][k]) for k in CHECKS) if name == "json" else "–"
            lines.append(
                f"| {TARGET_TITLES[s['target']]}, {s['scenario']} | {CLASSES[name]} | {c['ok']} "
                f"| {c['output_tokens_mean']:.1f} | {c['row_tok_s']:.2f} | {c['step_tok_s']:.2f} | {c['tok_s']:.1f} "
                f"| {checks} |"
            )
    return lines


def ratios(summary: dict[str, dict[str, Any]], adapters: list[int], concurrency: int) -> list[dict[str, Any]]:
    """The headline ratios of output tok/s; nan where a side was not run."""

    def tok_s(key: str) -> float:
        return float(summary[key]["tok_s"]) if key in summary else math.nan

    top = max(adapters) if adapters else 0
    sb_one, sb_mixed = "switchboard/adapters-1", "switchboard/mixed-3"
    rows = [
        ("Switchboard: mixed-3 / one adapter", sb_mixed, sb_one),
        (f"Switchboard: {top} adapters (power law) / one adapter", f"switchboard/adapters-{top}", sb_one),
        (f"Switchboard / naive PEFT, mixed-3, {concurrency} concurrent clients", sb_mixed, "naive/mixed-3"),
        ("Switchboard / vLLM, mixed-3", sb_mixed, "vllm/mixed-3"),
        ("Switchboard / vLLM, one adapter", sb_one, "vllm/adapters-1"),
        ("vLLM: mixed-3 / one adapter", "vllm/mixed-3", "vllm/adapters-1"),
        ("Switchboard --engine vllm / vLLM, mixed-3", "switchboard-vllm/mixed-3", "vllm/mixed-3"),
        ("Switchboard --engine vllm / vLLM, one adapter", "switchboard-vllm/adapters-1", "vllm/adapters-1"),
        ("Switchboard / llama.cpp, serial (base, one client)", "switchboard/serial-base", "llamacpp/serial-base"),
        (
            f"Switchboard / llama.cpp, base, {concurrency} clients",
            f"switchboard/base-{concurrency}",
            f"llamacpp/base-{concurrency}",
        ),
        ("Switchboard / llama.cpp, one adapter", sb_one, "llamacpp/adapters-1"),
        ("Switchboard / llama.cpp, mixed-3", sb_mixed, "llamacpp/mixed-3"),
        *(
            (f"Switchboard / Switchboard --weights dtype, {name}", f"switchboard/{name}", f"switchboard-fp32/{name}")
            for name in ("serial-base", f"base-{concurrency}", "adapters-1", "mixed-3")
        ),
        *(
            (f"Switchboard / Switchboard {flags}, {name}", f"switchboard/{name}", f"{variant}/{name}")
            for variant, flags in (
                ("switchboard-full-head", "--lm-head full"),
                ("switchboard-bf16", "--dtype bfloat16"),
                ("switchboard-bf16-plain", "--dtype bfloat16 --weights dtype"),
            )
            for name in ("serial-base", f"base-{concurrency}", "adapters-1", "mixed-3")
        ),
        ("llama.cpp: mixed-3 / one adapter", "llamacpp/mixed-3", "llamacpp/adapters-1"),
    ]
    out = []
    for title, top_key, bottom_key in rows:
        den = tok_s(bottom_key)
        value = tok_s(top_key) / den if den else math.nan
        out.append({"ratio": title, "value": value, "numerator": top_key, "denominator": bottom_key})

    def ttft_p50(key: str) -> float:
        return float(summary[key]["ttft_ms"][0]) if key in summary else math.nan

    # latency too: the vllm engine should add nothing to vLLM's TTFT; llama.cpp's mixed batches wait their turn
    pairs = [("switchboard-vllm", "vllm", "Switchboard --engine vllm / vLLM"),
             ("switchboard", "llamacpp", "Switchboard / llama.cpp")]  # fmt: skip
    for (top, bottom, what), scenario in itertools.product(pairs, ("mixed-3", "adapters-1")):
        top_key, bottom_key = f"{top}/{scenario}", f"{bottom}/{scenario}"
        den = ttft_p50(bottom_key)
        value = ttft_p50(top_key) / den if den else math.nan
        title = f"TTFT p50, {what}, {scenario} (lower is better)"
        out.append({"ratio": title, "value": value, "numerator": top_key, "denominator": bottom_key})
    return out


def _fmt(values: list[float], digits: int = 0) -> str:
    return " / ".join("–" if math.isnan(v) else f"{v:.{digits}f}" for v in values)


def markdown(setting: dict[str, Any], summary: dict[str, dict[str, Any]], ratio_rows: list[dict[str, Any]],
             plots: list[str], structured_rows: Sequence[dict[str, Any]] = ()) -> str:  # fmt: skip
    run = [r for r in ratio_rows if r["numerator"] in summary or r["denominator"] in summary]
    lines = [
        f"### S-LoRA-style load test ({setting['date']}{', quick' if setting['quick'] else ''})",
        "",
        "| ratio of output tok/s (medians) | value |",
        "|---|---|",
        *(f"| {r['ratio']} | {_fmt([r['value']], 2).replace('–', 'n/a')} |" for r in run),
        "",
        f"| target | scenario | output tok/s (median of {setting['repeats']}) | per repeat | req/s "
        "| TTFT p50/p95/p99 (ms) | ITL p50/p95/p99 (ms) | latency p50/p95/p99 (s) | ok / failed / cancelled "
        "| peak RSS (MiB) | utilisation (of peak) | output tokens per decode call |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary.values():
        util = "–" if s.get("utilisation") is None else f"{s['utilisation']:.2%} ({s['peak_dtype']})"
        lines.append(
            f"| {TARGET_TITLES[s['target']]} | {setting['scenarios'][s['scenario']]} | {s['tok_s']:.1f} "
            f"| {', '.join(f'{v:.1f}' for v in s['tok_s_runs'])} | {s['req_s']:.2f} | {_fmt(s['ttft_ms'])} "
            f"| {_fmt(s['itl_ms'])} | {_fmt(s['latency_s'], 2)} | {s['ok']} / {s['failed']} / {s['cancelled']} "
            f"| {_fmt([s.get('rss_mib', math.nan)])} "
            f"| {util} "
            f"| {_fmt([s.get('decode_batch', math.nan)], 1)} |"
        )
    lines += structured_markdown(setting, summary, list(structured_rows))
    w = setting["workload"]
    structured = any("classes" in s for s in summary.values())
    lines += harness.footer(
        setting,
        "servers (one server at a time)",
        f"OMP_NUM_THREADS {setting['omp_num_threads'] or 'unset'}; model {setting['model']}, {setting['dtype']}; "
        f"{setting.get('adapters', 'LoRA adapters r=8 on q/k/v/o with distinct random weights')}; "
        f"prompt tokens log-normal (mean {w['prompt_mean']:g}, σ {w['prompt_sigma']:g}) clipped to "
        f"≤ {w['max_prompt_tokens']}, output tokens log-normal (mean {w['output_mean']:g}, σ {w['output_sigma']:g}) "
        f"clipped to ≤ {w['max_output_tokens']}, ignore_eos, temperature 0; closed loop: {setting['concurrency']} "
        f"streaming clients, {setting['requests']} requests (naive PEFT: the first {setting['naive_requests']}); "
        f"open loop (rate-*): Gamma arrivals with cv {w['cv']:g} for {setting['duration_s']:g} s, at most "
        f"{setting['max_in_flight']} in flight; power law alpha {w['alpha']:g}; seed {w['seed']}; "
        + (STRUCTURED_SETTING.format(", ".join(w.get("formats", ()))) if structured else "")
        + f"{setting['repeats']} repeat(s), scenarios of one server interleaved; each run capped at "
        f"{setting['max_run_s']:g} s",
    )
    lines += utilisation_note(setting, summary)
    if setting.get("notes"):
        lines += ["", *(f"Note: {note}" for note in setting["notes"])]
    lines += ["", *(f"![{Path(p).stem}]({Path(p).name})" for p in plots)]
    return "\n".join(lines) + "\n"


def utilisation_note(setting: dict[str, Any], summary: dict[str, dict[str, Any]]) -> list[str]:
    """What the utilisation column divides by: the GEMM peaks measured in the run, the FLOPs per token."""
    peaks = setting.get("gemm_peak") or {}
    if not peaks:
        return []
    flops = [s["flops_per_token"] for s in summary.values() if "flops_per_token" in s]
    measured = ", ".join(f"{name} {p['flops'] / 1e9:.1f} GFLOP/s ({p['size']}² matmul, {p['threads']} threads)"
                         for name, p in peaks.items())  # fmt: skip
    return [
        "",
        f"Utilisation = output tok/s × FLOPs per output token ({min(flops) / 1e6:.0f}–{max(flops) / 1e6:.0f} MFLOP: "
        "2 × the weights a token touches, lm_head included, + attention over its mean context + LoRA on the "
        f"adapter rows) ÷ the GEMM peak measured in this run: {measured}. llama.cpp (Q4_K_M) is divided by the fp32 "
        "peak, the common denominator. Output tokens per decode call (llama-server's /metrics: tokens predicted ÷ "
        "llama_decode calls over the run, prompt calls included): how many rows a forward pass carried.",
    ]


def plot(summary: dict[str, dict[str, Any]], setting: dict[str, Any], out_dir: Path, prefix: str) -> list[str]:
    """Throughput vs adapters and throughput/latency vs request rate, as PNGs; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no plots", file=sys.stderr)
        return []
    written = []
    by_target: dict[str, list[dict[str, Any]]] = {}
    for s in summary.values():
        by_target.setdefault(s["target"], []).append(s)
    if any(s["scenario"].startswith("adapters-") for s in summary.values()):
        path = out_dir / f"{prefix}-adapters.png"
        written.append(_plot_adapters(plt, ScalarFormatter, summary, by_target, setting, path))
    rates = sorted((float(s["scenario"].split("-", 1)[1]), s) for s in summary.values()
                   if s["scenario"].startswith("rate-") and s["target"] == "switchboard")  # fmt: skip
    if rates:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        xs = [r for r, _ in rates]
        left.plot(xs, [s["tok_s"] for _, s in rates], marker="o", label="measured")
        offered = [r * s["output_tokens_mean"] for r, s in rates]  # what the arrivals ask for
        left.plot(xs, offered, linestyle="--", color="gray", label="offered (rate × mean output)")
        left.legend(loc="lower right")
        left.set(xlabel="request rate (req/s)", ylabel="output tokens/s", title="Switchboard throughput vs rate")
        left.set_ylim(0, 1.2 * max(*offered, *(s["tok_s"] for _, s in rates)))
        for i, (p, style) in enumerate(zip(PERCENTILES[:2], ("-", ":"), strict=True)):
            ttft = [s["ttft_ms"][i] / 1000 for _, s in rates]
            right.plot(xs, ttft, marker="o", color="C0", linestyle=style, label=f"TTFT p{p}")
            right.plot(xs, [s["latency_s"][i] for _, s in rates], marker="s", color="C1", linestyle=style,
                       label=f"latency p{p}")  # fmt: skip
        right.set(xlabel="request rate (req/s)", ylabel="seconds", title="Switchboard latency vs rate")
        right.set_ylim(bottom=0)
        right.legend()
        written.append(_save(fig, out_dir / f"{prefix}-rate.png"))
    return written


def _plot_adapters(plt: Any, formatter: Any, summary: dict[str, dict[str, Any]],
                   by_target: dict[str, list[dict[str, Any]]], setting: dict[str, Any], path: Path) -> str:  # fmt: skip
    """Throughput vs adapters (adapters-N), mixed-3 as dotted lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, (target, rows) in enumerate(by_target.items()):
        color = f"C{n}"
        points = sorted((int(s["scenario"].split("-")[1]), s["tok_s"]) for s in rows
                        if s["scenario"].startswith("adapters-"))  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", color=color, label=TARGET_TITLES[target])
        for s in rows:
            if s["scenario"] == "mixed-3":
                ax.axhline(s["tok_s"], linestyle=":", color=color)
                title = f"{TARGET_TITLES[target]} mixed-3"
                ax.annotate(title, (1, s["tok_s"]), fontsize=7, va="bottom", color=color)
    ax.set(xscale="log", xlabel="adapters in the workload (power law)", ylabel="output tokens/s",
           title=f"Throughput vs adapters, {setting['concurrency']} concurrent clients")  # fmt: skip
    ax.set_xticks([int(s["scenario"].split("-")[1]) for s in summary.values()
                   if s["scenario"].startswith("adapters-")])  # fmt: skip
    ax.get_xaxis().set_major_formatter(formatter())
    ax.minorticks_off()
    ax.set_ylim(0, 1.15 * max(s["tok_s"] for s in summary.values()))
    ax.legend(loc="lower right")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)
