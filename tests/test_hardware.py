"""CPU feature detection and the dtype `auto` picks from it, on this CPU and under kernel restrictions.

CI runs this file twice: as it is, and under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (`make test-avx2`), so the AVX2 path is tested on an AVX-512 machine too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from switchboard.engine.quant import kernel_input_bits
from switchboard.hardware import FLAGS, _native_bf16, cpu_info, serving_dtype, training_bf16

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
RESTRICTED = all(os.environ.get(k, "").upper() == v.upper() for k, v in AVX2_ONLY.items())
x86 = pytest.mark.skipif(not cpu_info().flags, reason="not an x86 CPU with AVX2: no fbgemm int8 kernel to restrict")


def test_flags_agree_with_torchs_own_cpu_probe():
    caps = dict(torch.cpu.get_capabilities())
    names = {"avx512f": "avx512_f"}
    assert set(cpu_info().flags) == {f for f in FLAGS if caps.get(names.get(f, f))}
    assert cpu_info().kernel == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize(
    ("flags", "kernel", "onednn", "native"),
    [
        (("avx2",), "AVX2", None, False),  # AMD EPYC, AVX2 only: bf16 is emulated
        (("avx2", "avx512f", "avx512_vnni"), "AVX512", None, False),  # AVX-512 without bf16 (Cascade Lake)
        (("avx2", "avx512f", "avx512_bf16", "avx512_vnni"), "AVX512", None, True),  # Zen 4, Cooper Lake
        (("avx2", "avx512f", "avx512_bf16", "amx_bf16"), "AVX512", "AVX512_CORE_AMX", True),
        (("avx2", "avx512f", "avx512_bf16"), "AVX2", None, False),  # ATEN_CPU_CAPABILITY=avx2
        (("avx2", "avx512f", "avx512_bf16"), "AVX512", "AVX2", False),  # ONEDNN_MAX_CPU_ISA=AVX2
        (("avx2", "avx512f", "avx512_bf16"), "AVX512", "avx512_core_vnni", False),
    ],
)
def test_native_bf16_needs_the_instructions_and_no_restriction_below_them(flags, kernel, onednn, native):
    assert _native_bf16(flags, kernel, onednn) is native


def test_auto_serves_bf16_only_where_it_is_native():
    dtype, reason = serving_dtype("auto", torch.device("cpu"))
    assert dtype == (torch.bfloat16 if cpu_info().native_bf16 else torch.float32), reason
    assert cpu_info().model in reason
    assert serving_dtype("bfloat16", torch.device("cpu"))[0] == torch.bfloat16  # an explicit choice stands
    assert serving_dtype("float32", torch.device("cpu"))[0] == torch.float32


@pytest.mark.parametrize(
    ("flags", "native", "fp16_weights", "speedup", "want"),
    [
        (("avx2",), False, True, 0.1, torch.float32),  # AVX2 only: fp32 (with fp16-held weights in the hf engine)
        (("avx2", "avx512f", "avx512_bf16"), True, True, 0.54, torch.float32),  # the Xeon: fp16-held weights win
        (("avx2", "avx512f", "avx512_bf16"), True, True, 2.4, torch.bfloat16),  # the EPYC: bf16 matmuls 2.4x fp32
        (("avx2", "avx512f", "avx512_bf16"), True, False, 0.54, torch.bfloat16),  # vllm, --weights dtype, no fbgemm
        (("avx2", "avx512f", "avx512_bf16", "amx_bf16"), True, True, 0.54, torch.bfloat16),  # AMX: bf16
    ],
)
def test_auto_takes_fp16_held_weights_over_native_bf16_unless_bf16_measures_faster(
    monkeypatch, flags, native, fp16_weights, speedup, want
):
    from switchboard import hardware

    cpu = hardware.CpuInfo(model="a CPU", flags=flags, kernel="AVX512", native_bf16=native, int8_input_bits=8)
    monkeypatch.setattr(hardware, "cpu_info", lambda: cpu)
    probed: list[bool] = []
    monkeypatch.setattr(hardware, "bf16_matmul_speedup", lambda: probed.append(True) or (speedup, 100.0, 100 / speedup))
    dtype, reason = serving_dtype("auto", torch.device("cpu"), fp16_weights=fp16_weights)
    assert dtype == want, reason
    assert ("fp16-held weights" in reason) is (want == torch.float32 and native)
    assert bool(probed) is (native and fp16_weights and "amx_bf16" not in flags)  # measured only where it decides
    assert ("measured" in reason) is bool(probed)
    assert training_bf16("auto", cuda=False)[0] is native  # training has no fp16-held weights: bf16 where native


def test_the_bf16_probe_measures_both_kinds_once():
    from switchboard import hardware

    ratio, bf16, fp32 = hardware.bf16_matmul_speedup(256)  # small: emulated bf16 (AVX2) is slow at 1024²
    assert bf16 > 0 and fp32 > 0 and ratio == pytest.approx(bf16 / fp32)
    assert hardware.bf16_matmul_speedup(256) == (ratio, bf16, fp32)  # cached: measured once per process


def test_auto_falls_back_to_bf16_when_the_weights_are_not_exact_in_fp16(monkeypatch, tmp_path, tiny_model_dir):
    """On a native-bf16 CPU auto takes float32 for fp16-held weights; a model whose weights fp16 would round
    is served in bf16 after all, as before, and says why."""
    import shutil

    from switchboard import hardware
    from switchboard.engine.bf16_packed import packed_kernel
    from switchboard.engine.fp16_weights import fp16_kernel
    from switchboard.engine.hf import HFEngine
    from transformers import AutoModelForCausalLM

    if not fp16_kernel():
        pytest.skip("this torch build has no fp16 GEMM (fbgemm): auto never takes fp16-held weights")
    cpu = hardware.CpuInfo(model="a CPU", flags=("avx2", "avx512f", "avx512_bf16"), kernel="AVX512", native_bf16=True)
    monkeypatch.setattr(hardware, "cpu_info", lambda: cpu)
    monkeypatch.setattr(hardware, "bf16_matmul_speedup", lambda: (0.54, 173.0, 323.0))  # bf16 slower, as on the Xeon
    exact = HFEngine(tiny_model_dir, model_id="tiny", device="cpu")
    exact.load_model()
    assert exact.dtype == torch.float32 and exact.describe()["weights"] == "float16", exact.dtype_reason
    rounded_dir = tmp_path / "rounded"
    shutil.copytree(tiny_model_dir, rounded_dir)
    model = AutoModelForCausalLM.from_pretrained(rounded_dir, dtype=torch.float32)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(1e-6)  # no longer exact in fp16
    model.save_pretrained(rounded_dir)
    rounded = HFEngine(rounded_dir, model_id="rounded", device="cpu")
    assert rounded.dtype == torch.float32  # decided at load, once the weights are read
    rounded.load_model()
    assert rounded.dtype == torch.bfloat16 and "not all exact in fp16" in rounded.dtype_reason
    packed = "bfloat16-packed" if packed_kernel() else "bfloat16"  # packed for oneDNN where bf16 is native
    assert rounded.describe()["dtype"] == "bfloat16" and rounded.describe()["weights"] == packed
    assert next(rounded.model.parameters()).dtype == torch.bfloat16


def test_trainer_autocasts_bf16_only_where_it_is_native():
    assert training_bf16("auto", cuda=False)[0] is cpu_info().native_bf16
    assert training_bf16(True, cuda=False)[0] is True
    assert training_bf16(False, cuda=False)[0] is False


def test_cpu_info_reports_the_int8_kernel_this_process_takes():
    assert cpu_info().int8_input_bits == kernel_input_bits()
    if cpu_info().flags:
        assert kernel_input_bits() in (7, 8)  # every x86 CPU with AVX2 has an exact int8 path
    info = json.loads(json.dumps(cpu_info().as_dict()))  # /health serves it as JSON
    assert info["model"] == cpu_info().model and info["native_bf16"] == cpu_info().native_bf16


@pytest.mark.skipif(not RESTRICTED, reason="checks the kernel restriction; runs under `make test-avx2`")
def test_the_avx2_restriction_really_changes_the_kernels():
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert not cpu_info().native_bf16
    assert kernel_input_bits() == 7  # fbgemm's AVX2 kernel saturates 8-bit inputs, whatever the CPU has
    assert serving_dtype("auto", torch.device("cpu"))[0] == torch.float32


@x86
def test_fbgemm_avx2_kernel_saturates_8_bit_inputs_in_a_fresh_process():
    """The reason for 7-bit inputs, shown on any x86 CPU: restricted to AVX2, fbgemm can't sum 8-bit ones."""
    code = "from switchboard.engine.quant import kernel_input_bits; print(kernel_input_bits())"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **AVX2_ONLY}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "7"


def test_onednn_takes_no_avx512_kernel_under_the_restriction():
    """oneDNN's verbose log names the ISA of each kernel it runs (on AVX-512 CPUs; this one may run none)."""
    code = (
        "import torch\n"
        "with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):\n"
        "    a = torch.randn(64, 64).bfloat16()\n"
        "    torch.nn.functional.linear(a, a)\n"
        "    torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **AVX2_ONLY}, capture_output=True, text=True, check=True
    )
    kernels = [line for line in (out.stdout + out.stderr).lower().splitlines() if "onednn_verbose" in line]
    assert not [line for line in kernels if "avx512" in line or "amx" in line], kernels


def test_hf_engine_resolves_auto_from_the_cpu_and_describes_it(tiny_model_dir):
    from switchboard.engine.fp16_weights import fp16_kernel
    from switchboard.engine.hf import HFEngine

    engine = HFEngine(tiny_model_dir, model_id="tiny", device="cpu")  # dtype auto; nothing loaded yet
    want = serving_dtype("auto", torch.device("cpu"), fp16_weights=fp16_kernel())
    assert (engine.dtype, engine.dtype_reason) == want
    assert engine.describe()["dtype"] == str(want[0]).removeprefix("torch.")
    int8 = HFEngine(tiny_model_dir, model_id="tiny", quantize="int8")
    assert int8.dtype == torch.float32 and int8.describe()["quantize"] == "int8"
