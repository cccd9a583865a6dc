"""What this machine computes fast and right, read once per process; `dtype: auto` decides from it.

Machines of one kind differ: some CPUs have AVX-512 with native bf16 (avx512_bf16 or AMX), some AVX2
only. Without native bf16 instructions bf16 matmuls are emulated, and batched decode runs at half its
fp32 speed (docs/engine.md has the measurements). fbgemm's int8 kernel accumulates u8 x s8 products
exactly only with VNNI; its AVX2 and plain AVX-512 kernels add byte pairs in 16 bits, which saturates
(engine/quant.py then keeps its inputs to 7 bits). The kernels a process may take can be restricted
below the hardware with ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and FBGEMM_ENABLE_INSTRUCTIONS (how
CI tests the AVX2 path on an AVX-512 machine), so the decision reads the restrictions and tries the
int8 kernel itself, not just the CPU's flags.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .engine.quant import kernel_input_bits

# The flags that decide dtypes and kernels, in /proc/cpuinfo's spelling.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
RESTRICTIONS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")
# oneDNN's ISA levels, lowest first (ONEDNN_MAX_CPU_ISA); bf16 matmuls are native from AVX512_CORE_BF16.
_ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)
# torch.cpu.get_capabilities() names, where they differ from /proc/cpuinfo's
_TORCH_NAMES = {"avx512f": "avx512_f"}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU, the kernels torch may take on it, and what follows for bf16 and int8."""

    model: str
    flags: tuple[str, ...]  # those of FLAGS this CPU has
    kernel: str  # torch's ATen kernel level: AVX512, AVX2, DEFAULT (follows ATEN_CPU_CAPABILITY)
    restrictions: dict[str, str] = field(default_factory=dict)  # the RESTRICTIONS set in the environment
    native_bf16: bool = False  # bf16 matmuls run on bf16 instructions (not emulated)
    # inputs per int8 matmul that fbgemm's kernel here sums exactly: 8 (VNNI), 7 (AVX2), None (no kernel)
    int8_input_bits: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "flags": list(self.flags),
            "kernel": self.kernel,
            "restrictions": dict(self.restrictions),
            "native_bf16": self.native_bf16,
            "int8_input_bits": self.int8_input_bits,
        }

    def summary(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        int8 = f"int8 with {self.int8_input_bits}-bit inputs" if self.int8_input_bits else "no int8 kernel"
        limits = "".join(f", {k}={v}" for k, v in self.restrictions.items())
        return f"{self.model} [{' '.join(self.flags) or 'no AVX2'}; kernels {self.kernel}{limits}]: {bf16}, {int8}"


@functools.cache
def cpu_info() -> CpuInfo:
    """This process's CPU facts (cached: the CPU and the environment's restrictions don't change)."""
    model, flags = _read_cpuinfo()
    kernel = torch.backends.cpu.get_cpu_capability()
    restrictions = {name: os.environ[name] for name in RESTRICTIONS if os.environ.get(name)}
    bits = kernel_input_bits()
    return CpuInfo(
        model=model,
        flags=flags,
        kernel=kernel,
        restrictions=restrictions,
        native_bf16=_native_bf16(flags, kernel, restrictions.get("ONEDNN_MAX_CPU_ISA")),
        int8_input_bits=bits,
    )


# auto serves bf16 over fp16-held fp32 on a CPU without AMX only where bf16 matmuls measure this much faster
BF16_OVER_FP32 = 1.5


@functools.cache
def bf16_matmul_speedup(size: int = 1024, rounds: int = 3) -> tuple[float, float, float]:
    """(bf16 FLOP/s ÷ fp32 FLOP/s, bf16 GFLOP/s, fp32 GFLOP/s) of a `size`² matmul on this CPU, measured once per
    process (~0.1 s): the two kinds alternate, the best round of each counts. CPUs with native bf16 differ
    more than their flags tell: an AVX-512-bf16 Xeon ran bf16 at 0.5x fp32, an AVX-512-bf16 EPYC at 2.4x."""
    timings: dict[torch.dtype, float] = {}
    mats = {
        kind: (torch.randn(size, size).to(kind), torch.randn(size, size).to(kind))
        for kind in (torch.float32, torch.bfloat16)
    }
    for a, b in mats.values():
        torch.matmul(a, b)  # warm-up: oneDNN builds its kernel on the first call
    for _ in range(rounds):
        for kind, (a, b) in mats.items():
            start = time.perf_counter()
            torch.matmul(a, b)
            timings[kind] = min(timings.get(kind, float("inf")), time.perf_counter() - start)
    flops = 2 * size**3
    bf16, fp32 = flops / timings[torch.bfloat16] / 1e9, flops / timings[torch.float32] / 1e9
    return bf16 / fp32, bf16, fp32


def serving_dtype(requested: str, device: torch.device, fp16_weights: bool = False) -> tuple[torch.dtype, str]:
    """The dtype to serve in and why: `auto` is bf16 on a GPU that has it and on CPUs with native bf16,
    else fp32 (fp16 on an older GPU). `fp16_weights`: the engine can hold float32 Linear weights in fp16
    (the hf engine's `weights: auto|fp16` with fbgemm's fp16 GEMM, engine/fp16_weights.py); on an
    AVX-512-bf16 CPU without AMX that is exact and, where bf16 matmuls are not much faster than fp32
    ones (measured here by `bf16_matmul_speedup`, < BF16_OVER_FP32), faster than native bf16, so `auto`
    takes float32 there; with AMX, bf16 is 1.1-2x faster again (oneDNN's AMX matmuls) and stays. Measured
    on the CPU classes in docs/engine.md."""
    named = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if requested != "auto":
        return named[requested], f"dtype {requested} as configured"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, f"auto: bfloat16 on {torch.cuda.get_device_name(device)}"
        return torch.float16, f"auto: float16 ({torch.cuda.get_device_name(device)} lacks bf16)"
    if device.type != "cpu":
        return torch.float32, f"auto: float32 on {device.type}"
    cpu = cpu_info()
    if cpu.native_bf16 and fp16_weights and "amx_bf16" not in cpu.flags:
        ratio, bf16, fp32 = bf16_matmul_speedup()
        measured = f"bf16 matmuls measured {ratio:.2f}x fp32's ({bf16:.0f} vs {fp32:.0f} GFLOP/s)"
        if ratio < BF16_OVER_FP32:
            return torch.float32, f"auto: float32 with fp16-held weights, exact, as {measured} ({cpu.summary()})"
        return torch.bfloat16, f"auto: bfloat16, as {measured} ({cpu.summary()})"
    if cpu.native_bf16:
        return torch.bfloat16, f"auto: bfloat16 on a CPU with native bf16 ({cpu.summary()})"
    return torch.float32, f"auto: float32, as this CPU has no native bf16 ({cpu.summary()})"


def training_bf16(requested: bool | str, cuda: bool) -> tuple[bool, str]:
    """Whether the trainer autocasts to bf16 and why: `auto` does where serving_dtype would pick bf16 without
    fp16-held weights, which training has (a bf16 GPU, a CPU with avx512_bf16/AMX); emulated bf16 on an AVX2
    CPU is many times slower than fp32 (docs/training.md)."""
    if requested != "auto":
        return bool(requested), f"bf16 {str(bool(requested)).lower()} as configured"
    dtype, why = serving_dtype("auto", torch.device("cuda" if cuda else "cpu"))
    return dtype == torch.bfloat16, why


def _read_cpuinfo() -> tuple[str, tuple[str, ...]]:
    """Model name and FLAGS from /proc/cpuinfo; torch's own CPU probe where that file is missing."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    model, present = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not present:
            present = set(value.split())
    if not present:
        caps = _torch_capabilities()
        present = {flag for flag in FLAGS if caps.get(_TORCH_NAMES.get(flag, flag))}
        model = model or str(caps.get("cpu_name", ""))
    return model or "unknown CPU", tuple(flag for flag in FLAGS if flag in present)


def _torch_capabilities() -> dict[str, Any]:
    get = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.10
    return dict(get()) if get is not None else {}


def _native_bf16(flags: tuple[str, ...], kernel: str, onednn_max: str | None) -> bool:
    """bf16 instructions on the CPU, and neither ATen nor oneDNN restricted below them."""
    if not ({"avx512_bf16", "amx_bf16"} & set(flags)) or not kernel.upper().startswith("AVX512"):
        return False
    if onednn_max:
        isa = onednn_max.strip().upper()
        if isa in _ONEDNN_ISAS and _ONEDNN_ISAS.index(isa) < _ONEDNN_ISAS.index("AVX512_CORE_BF16"):
            return False
    return True
