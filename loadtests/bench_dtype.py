"""The hf engine's serving dtypes side by side in one run: bf16, fp32, fp32 with fp16-held weights (`--weights
auto`, fp16w: with the shortlisted lm_head auto picks; fp16w-full: without it) and the int8 base (`--quantize int8`).

What `dtype: auto` decides from (docs/engine.md). Three measures, all on the scenario adapters
(adapters/pre-sales, after-sales, marketing) and their held-out dialogues
(adapters/datasets/SCENARIO/heldout.jsonl), each dtype against fp32, the exact reference:
1. greedy agreement: the first `--prompts` held-out questions per scenario, answered greedily (up to
   `--max-tokens`, stopping at EOS) with that scenario's adapter: the share of positions that agree
   before the first divergence (common prefix / longer answer), and the share of identical answers;
2. held-out loss of each scenario adapter on its whole held-out set (trainer's `assistant_loss`), and
   the share of held-out answer positions where the most likely next token is fp32's;
3. speed: output tok/s (prefill included) for B concurrent requests (rows round-robin over the base and the
   3 adapters, so B = 1 is the bare base; `--max-tokens` each with ignore_eos), all dtypes interleaved per
   repeat, medians, and each dtype's ratio to the one `auto` picks on this CPU; RSS growth at load.
Prints ratios; never asserts a speed. Usage: `python loadtests/bench_dtype.py [--quick] [--kinds bf16,fp32,fp16w,int8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import harness
import torch
from harness import REPO

SCENARIOS = ("pre-sales", "after-sales", "marketing")
ROW_ADAPTERS = (None, *SCENARIOS)  # speed runs: request i uses ROW_ADAPTERS[i % 4]
KINDS: dict[str, dict[str, str]] = {
    "bf16": {"dtype": "bfloat16"},  # Linear weights packed for oneDNN where bf16 is native (engine/bf16_packed.py)
    "bf16-plain": {"dtype": "bfloat16", "weights": "dtype"},  # plain bf16 weights, reordered by oneDNN on every call
    "fp32": {"dtype": "float32", "weights": "dtype"},  # every weight in fp32, torch's own GEMM: the exact reference
    "fp16w": {"dtype": "float32", "weights": "auto"},  # fp32 compute, fp16-exact weights held in fp16 (auto's pick)
    "fp16w-full": {"dtype": "float32", "weights": "auto", "lm_head": "full"},  # the same, no shortlisted lm_head
    "int8": {"quantize": "int8"},  # fp32 around the int8 matmuls
}
REFERENCE = "fp32"  # what agreement and losses are measured against


def auto_kind() -> str:
    """The kind `--dtype auto` serves on this CPU."""
    from switchboard.engine.fp16_weights import fp16_kernel
    from switchboard.hardware import serving_dtype

    auto = serving_dtype("auto", torch.device("cpu"), fp16_weights=fp16_kernel())[0]
    return "bf16" if auto == torch.bfloat16 else "fp16w"


def build_engines(args: argparse.Namespace) -> dict[str, Any]:
    from switchboard.engine.hf import HFEngine
    from switchboard.models import resolve_model_dir

    model_dir = resolve_model_dir(args.model, args.cache_dir)
    engines = {}
    for name in args.kinds:
        kw = KINDS[name]
        started, rss = time.perf_counter(), rss_mib()
        engine = HFEngine(model_dir, model_id=name, max_batch_size=64, max_queue=10_000, **kw)
        engine.load_model()
        for scenario in SCENARIOS:
            engine.add_adapter_sync(scenario, args.adapters_dir / scenario)
        engine.load_s, engine.rss_mib = time.perf_counter() - started, rss_mib() - rss
        print(f"loaded {name} in {engine.load_s:.1f}s, RSS +{engine.rss_mib:.0f} MiB", file=sys.stderr)
        engines[name] = engine
    from switchboard.openmp import release_pool

    release_pool()  # loading ran here: give this thread's OpenMP team back, as the server does (openmp.py)
    return engines


def rss_mib() -> float:
    """Resident memory of this process (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def generate(engine: Any, rid: str, prompt: list[int], adapter: str | None, n: int, ignore_eos: bool):
    from switchboard.engine.base import GenerationRequest, SamplingParams

    params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=ignore_eos)
    tokens: list[int] = []
    async for out in engine.generate(GenerationRequest(rid, prompt, params, adapter)):
        tokens += out.token_ids
    return tokens


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))


async def greedy_answers(engine: Any, prompts: list[tuple[str, list[int]]], n: int) -> list[list[int]]:
    jobs = [generate(engine, f"agree-{i}", p, scenario, n, False) for i, (scenario, p) in enumerate(prompts)]
    return list(await asyncio.gather(*jobs))


def agreement(a: list[list[int]], b: list[list[int]]) -> dict[str, float]:
    prefix = []
    for x, y in zip(a, b, strict=True):
        same = next((i for i, (u, v) in enumerate(zip(x, y, strict=False)) if u != v), min(len(x), len(y)))
        prefix.append(same / max(len(x), len(y), 1))
    return {
        "prefix": statistics.mean(prefix),
        "exact": statistics.mean(float(x == y) for x, y in zip(a, b, strict=True)),
    }


def of_scenario(prompts: list[tuple[str, list[int]]], answers: list[list[int]], scenario: str) -> list[list[int]]:
    return [a for (s, _), a in zip(prompts, answers, strict=True) if s == scenario]


def losses(engine: Any, encoded: dict[str, list]) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Held-out loss per scenario (its own adapter), and the argmax next token at each assistant position."""
    from switchboard.evaluate import assistant_loss

    peft_model = engine.stacks.model
    picks: list[torch.Tensor] = []

    def logits_of(ids: torch.Tensor, adapter: str) -> torch.Tensor:
        logits = peft_model(input_ids=ids, adapter_names=[adapter]).logits
        picks.append(logits[0, :-1].argmax(dim=-1))
        return logits

    causal_lm, head = engine.stacks._causal_lm(), engine.stacks.head
    exact_head = causal_lm.lm_head
    if head is not None:  # score as serving does: the shortlisted head (engine/lm_head.py) in the lm_head's place
        causal_lm.lm_head = head
    try:
        with torch.inference_mode():
            loss = {s: assistant_loss(lambda ids, s=s: logits_of(ids, s), rows) for s, rows in encoded.items()}
    finally:
        causal_lm.lm_head = exact_head
    # keep the positions whose next token is an assistant token, as the loss does
    masks = [torch.tensor(e["assistant_masks"][1:], dtype=torch.bool) for rows in encoded.values() for e in rows]
    return loss, [p[m] for p, m in zip(picks, masks, strict=True)]


def next_token_agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Teacher-forced: share of assistant positions where both models' most likely next token is the same."""
    same = sum(int((x == y).sum()) for x, y in zip(a, b, strict=True))
    return same / max(sum(len(x) for x in a), 1)


async def speed(engines: dict[str, Any], prompts: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    auto = auto_kind()
    for batch in args.batch_sizes:
        runs: dict[str, list[float]] = {name: [] for name in engines}
        for repeat in range(-1, args.repeats):  # repeat -1 warms each engine up at this batch size
            for name in runs:
                jobs = [
                    generate(engines[name], f"{name}-{batch}-{repeat}-{i}", prompts[i % len(prompts)],
                             ROW_ADAPTERS[i % len(ROW_ADAPTERS)], args.max_tokens, True)
                    for i in range(batch)
                ]  # fmt: skip
                started = time.perf_counter()
                tokens = sum(len(t) for t in await asyncio.gather(*jobs))
                if repeat >= 0:
                    runs[name].append(tokens / (time.perf_counter() - started))
        med = {name: statistics.median(v) for name, v in runs.items()}
        ratio = {name: v / med[auto] for name, v in med.items()} if auto in med else {}
        out[str(batch)] = {"runs": runs, "median": med, f"ratio_to_{auto}": ratio}
        cells = ", ".join(f"{name} {v:.1f}" for name, v in med.items())
        ratios = ", ".join(f"{name}/{auto} {r:.2f}" for name, r in ratio.items() if name != auto)
        print(f"batch {batch} tok/s: {cells}; {ratios}")
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from switchboard.evaluate import encode_dialogues, read_heldout

    engines = build_engines(args)
    for engine in engines.values():
        await engine.start()
    ref = REFERENCE if REFERENCE in engines else next(iter(engines))
    others = [name for name in engines if name != ref]
    try:
        tokenizer = engines[ref].tokenizer
        heldout = {s: read_heldout(args.datasets / s / "heldout.jsonl", None) for s in SCENARIOS}
        prompts = [(s, prompt_ids(tokenizer, rows[:-1])) for s in SCENARIOS for rows in heldout[s][: args.prompts]]
        started = time.perf_counter()
        answers = {name: await greedy_answers(e, prompts, args.max_tokens) for name, e in engines.items()}
        agree = {name: agreement(answers[name], answers[ref]) for name in others}
        for name, a in agree.items():
            print(f"greedy agreement {name} vs {ref}: prefix {a['prefix']:.3f}, exact {a['exact']:.3f}")
        print(f"  (agreement took {time.perf_counter() - started:.0f}s)", file=sys.stderr)
        loss_rows = args.loss_rows or None
        encoded = {s: encode_dialogues(tokenizer, rows[:loss_rows]) for s, rows in heldout.items()}
        scored = {name: losses(e, encoded) for name, e in engines.items()}
        loss = {name: v[0] for name, v in scored.items()}
        next_token = {name: next_token_agreement(scored[name][1], scored[ref][1]) for name in others}
        for name, value in next_token.items():
            print(f"next-token agreement (teacher-forced, held-out answers) {name} vs {ref}: {value:.3f}")
        for s in SCENARIOS:
            cells = ", ".join(f"{name} {loss[name][s]:.4f}" for name in engines)
            print(f"held-out loss {s}: {cells}")
        speed_prompts = [p for _, p in prompts]
        fast = await speed(engines, speed_prompts, args)
    finally:
        for engine in engines.values():
            await engine.shutdown()
    return {
        "reference": ref,
        "auto": auto_kind(),
        "agreement": agree,
        "loss": loss,
        "next_token_agreement": next_token,
        "speed": fast,
        "load": {n: {"seconds": e.load_s, "rss_growth_mib": e.rss_mib} for n, e in engines.items()},
        "answer_tokens": {n: sum(len(a) for a in v) / len(v) for n, v in answers.items()},
        "prompt_tokens": (min(len(p) for p in speed_prompts), max(len(p) for p in speed_prompts)),
    }


def table(result: dict[str, Any]) -> str:
    """The markdown table docs/engine.md shows: tok/s at each batch size, ratio to auto's pick, RSS, agreement."""
    auto, speed = result["auto"], result["speed"]
    batches = list(speed)
    head = [f"{'serial base' if b == '1' else f'{b} concurrent mixed'} tok/s" for b in batches]
    rows = [
        "| dtype | " + " | ".join(head) + " | RSS growth at load | next-token agreement with fp32 |",
        "|---|" + "---|" * (len(batches) + 2),
    ]
    for name, load in result["load"].items():
        cells = []
        for b in batches:
            value = speed[b]["median"][name]
            ratio = speed[b].get(f"ratio_to_{auto}", {}).get(name)
            cells.append(f"{value:.1f}" + (f" ({ratio:.2f}×)" if ratio is not None and name != auto else ""))
        agree = result["next_token_agreement"].get(name)
        mark = " (auto)" if name == auto else ""
        rows.append(
            f"| {name}{mark} | "
            + " | ".join(cells)
            + f" | {load['rss_growth_mib'] / 1024:.2f} GB | "
            + (f"{agree:.3f}" if agree is not None else "reference")
            + " |"
        )
    return "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = harness.parser(__doc__, "CI smoke run: small defaults, about a minute")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "switchboard")
    parser.add_argument("--adapters-dir", type=Path, default=REPO / "adapters", help="one adapter per scenario")
    parser.add_argument("--datasets", type=Path, default=REPO / "adapters" / "datasets")
    parser.add_argument("--prompts", type=int, help="held-out prompts per scenario for agreement (default 20)")
    parser.add_argument("--loss-rows", type=int, help="held-out dialogues per scenario for the loss (default all)")
    parser.add_argument("--max-tokens", type=int, help="greedy tokens per answer and per speed request (default 64)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], help="default 1,8,16")
    parser.add_argument("--repeats", type=int, help="speed repeats per batch size, median reported (default 3)")
    parser.add_argument(
        "--kinds",
        type=lambda s: s.split(","),
        default=list(KINDS),
        help="dtypes to compare, of bf16,fp32,fp16w,int8 (default all four)",
    )
    quick = {"prompts": 2, "loss_rows": 2, "max_tokens": 8, "batch_sizes": [1, 4], "repeats": 1}
    full = {"prompts": 20, "loss_rows": 0, "max_tokens": 64, "batch_sizes": [1, 8, 16], "repeats": 3}
    return harness.parse(parser, quick, full)


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()
    result = asyncio.run(bench(args))
    from switchboard.hardware import cpu_info

    result["setting"] = {
        **{k: getattr(args, k) for k in ("model", "prompts", "loss_rows", "max_tokens", "batch_sizes", "repeats")},
        **harness.machine(load_before, cpu_facts=cpu_info().as_dict()),
        "torch_threads": torch.get_num_threads(),
    }
    print(f"auto serves {result['auto']} on this CPU: {cpu_info().summary()}")
    print(table(result))
    harness.write_result("dtype", result)
    return 0


if __name__ == "__main__":
    harness.run_main(main)
