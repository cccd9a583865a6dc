"""One Linear at decode shapes, three ways the CPU can hold its weights, side by side in one process (#21):

- fp16-held: fp32 math on fp16 weights, fbgemm's prepacked FP16 GEMM (what `weights: auto` does in float32);
- bf16: `F.linear` on bf16 weights (what `dtype: bfloat16` does today);
- bf16 packed: the same bf16 weights reordered once for oneDNN (`torch.ops.mkldnn._reorder_linear_weight`, then
  `_linear_pointwise`; what inductor's CPU freezing does), where this torch and CPU have it.

Prints microseconds per call (best of `--repeats` rounds) and each kind's largest error against fp32 math on
the same (rounded) weights, with the CPU named. Usage: `python loadtests/bench_linear.py [--rows 1,4,16]`.
Gemma 3 270M's shapes are the defaults: hidden 640, MLP 2048, q 1024 (K x N).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHAPES = ((640, 2048), (2048, 640), (640, 1024))


def per_call_us(fn: Callable[[], torch.Tensor], calls: int, repeats: int) -> float:
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def kinds(weight: torch.Tensor) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor] | str]:
    """name -> (call on fp32 input, the weight it computes with, in fp32) or why it is not available here."""
    out: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor] | str] = {}
    try:
        packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
        out["fp16-held"] = (lambda x: torch.ops.quantized.linear_dynamic_fp16(x, packed), weight.half().float())
    except (RuntimeError, AttributeError) as exc:
        out["fp16-held"] = f"no fbgemm FP16 GEMM ({str(exc)[:60]})"
    bf16 = weight.to(torch.bfloat16)
    out["bf16"] = (lambda x: F.linear(x.to(torch.bfloat16), bf16), bf16.float())
    try:
        reordered = torch.ops.mkldnn._reorder_linear_weight(bf16, 1)

        def call(x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), reordered, None, "none", [], "")

        call(torch.randn(1, weight.shape[1]))
        out["bf16 packed"] = (call, bf16.float())
    except (RuntimeError, AttributeError) as exc:
        out["bf16 packed"] = f"not available here ({str(exc)[:60]})"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1,4,16")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from switchboard.hardware import cpu_info

    print(f"CPU: {cpu_info().summary()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    print(
        "| K x N | rows | "
        + " | ".join(f"{name} µs (max abs error)" for name in ("fp16-held", "bf16", "bf16 packed"))
        + " |"
    )
    print("|---|---|---|---|---|")
    for k, n in SHAPES:
        weight = torch.randn(n, k) * 0.02
        held = kinds(weight)
        for rows in (int(r) for r in args.rows.split(",")):
            x = torch.randn(rows, k)
            cells = []
            for entry in held.values():
                if isinstance(entry, str):
                    cells.append(entry)
                    continue
                fn, exact = entry
                error = (fn(x).float() - x @ exact.T).abs().max().item()
                cells.append(f"{per_call_us(lambda fn=fn, x=x: fn(x), args.calls, args.repeats):.1f} ({error:.1e})")
            print(f"| {k} x {n} | {rows} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
