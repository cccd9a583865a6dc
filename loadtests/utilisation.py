"""How close to the machine's limit a benchmark ran, as one number (#21 item 3):

    utilisation = output tokens/s × FLOPs per output token ÷ the machine's GEMM peak (FLOP/s)

- FLOPs per token (`flops_per_token`): 2 × the weights a token touches (every layer's q/k/v/o and MLP projections,
  and the lm_head over the whole vocabulary: 262k rows on Gemma 3, 63% of the 270M model's per-token work), plus
  attention over the context (2 × 2 × heads × head_dim × context per layer, the context capped by a sliding window),
  plus the LoRA matmuls (2 × r × (in + out) per adapted projection) for the share of requests on an adapter.
  Prompt tokens are not counted: the figure is the decode work the output tokens needed, a lower bound on the work
  done.
- The GEMM peak (`gemm_peak`): torch.matmul of square `size`² matrices in the given dtype, the best of a few timed
  rounds, with the torch threads the server gets (torch's default: one per core, unless OMP_NUM_THREADS says
  otherwise), measured by the benchmark itself, in the same run, so it moves with the machine and its load.
  It imports torch, so `loadgen.py` (which does not) runs it as a child: `python loadtests/utilisation.py peak`.

A quantized server (llama.cpp's Q4_K_M) is compared against the fp32 peak too: the common denominator of every
target, and what an AVX2 core does best in floating point; its int8 dot products have a different peak, so its
utilisation there says how much work it does per second in fp32 terms, not how busy its own kernels are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection of one decoder layer of a Llama-shaped model (Gemma, Llama, Qwen)."""
    cfg = config.get("text_config", config)
    hidden, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads", heads))
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def flops_per_token(
    config: Mapping[str, Any], context: float = 0.0, lora_rank: int = 0, lora_targets: Sequence[str] = (),
    lora_share: float = 0.0,
) -> float:  # fmt: skip
    """FLOPs one decoded token costs (see the module's docstring): `context` is the mean number of tokens it attends
    to, `lora_share` the share of tokens decoded with an adapter of rank `lora_rank` on `lora_targets`."""
    cfg = config.get("text_config", config)
    layers, vocab = int(cfg["num_hidden_layers"]), int(cfg["vocab_size"])
    shapes = projection_shapes(config)
    dense = layers * sum(i * o for i, o in shapes.values()) + vocab * int(cfg["hidden_size"])
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types") or ["full_attention"] * layers
    seen = [min(context, window) if window and t == "sliding_attention" else context for t in types]
    attention = sum(4 * shapes["q_proj"][1] * c for c in seen)  # QKᵀ and AV: 2 FLOPs × heads × head_dim each
    lora = layers * sum(2 * lora_rank * sum(shapes[t]) for t in lora_targets if t in shapes)
    return 2.0 * dense + attention + lora_share * lora


def utilisation(tok_s: float, flops_token: float, peak_flops: float) -> float:
    """Share of the GEMM peak the decoded tokens needed (0.05 = 5%)."""
    return tok_s * flops_token / peak_flops


def gemm_peak(dtype: str = "float32", size: int = 1536, rounds: int = 5, per_round: int = 4,
              threads: int | None = None, matmul_s: float = 0.5) -> dict[str, Any]:  # fmt: skip
    """The best FLOP/s of `per_round` square matmuls over `rounds` rounds. The matrices grow from 256² to `size`²,
    stopping early once one matmul takes over `matmul_s` (emulated bf16 on an AVX2 CPU runs at ~1 GFLOP/s: a 1536²
    matmul would take seconds)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    for n in [*range(256, size, 256), size]:
        a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
        start = time.perf_counter()
        torch.matmul(a, b)  # also the warm-up of the size that stays
        if time.perf_counter() - start > matmul_s:
            break
    size = n
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            torch.matmul(a, b)
        best = min(best, (time.perf_counter() - start) / per_round)
    return {"dtype": dtype, "size": size, "threads": torch.get_num_threads(), "flops": 2 * size**3 / best,
            "seconds_per_matmul": best}  # fmt: skip


def measure_peaks(dtypes: Iterable[str], python: str = sys.executable) -> dict[str, dict[str, Any]]:
    """`gemm_peak` of each dtype, measured now by a child process (so the caller needs no torch), which gets the
    torch threads a server started from the same environment gets."""
    out = {}
    for dtype in dtypes:
        cmd = [python, str(Path(__file__).resolve()), "peak", "--dtype", dtype]
        out[dtype] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        print(f"GEMM peak {dtype}: {out[dtype]['flops'] / 1e9:.1f} GFLOP/s ({out[dtype]['threads']} threads, "
              f"{out[dtype]['size']}² matrices)", file=sys.stderr)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["peak"], help="peak: measure the GEMM peak, print it as JSON")
    parser.add_argument("--dtype", default="float32", help="torch dtype of the matrices")
    parser.add_argument("--size", type=int, default=1536, help="rows = columns of the square matrices")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the best counts")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, as the server gets)")
    args = parser.parse_args(argv)
    print(json.dumps(gemm_peak(args.dtype, args.size, args.rounds, threads=args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
