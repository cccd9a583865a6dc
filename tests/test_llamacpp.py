"""The llama.cpp target of the load test (loadtests/llamacpp.py, #21) and the utilisation figure every loadgen run
prints (loadtests/utilisation.py): the build and conversion commands, the server's command line, the `lora` field
each request carries, the decode-batch and utilisation arithmetic, the new scenarios; end to end against a real
llama-server only where one has been built (`make llama-server`: minutes, so CI skips it)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import CACHE_DIR, free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))
import harness  # noqa: E402
import llamacpp  # noqa: E402
import loadgen  # noqa: E402
import loadgen_report  # noqa: E402
import memory  # noqa: E402
import utilisation  # noqa: E402
from loadgen_driver import Outcome, Run, Target  # noqa: E402
from loadgen_workload import BASE  # noqa: E402

GEMMA3_270M = {  # config.json of the embedded model (the parts FLOPs depend on)
    "hidden_size": 640, "intermediate_size": 2048, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "num_hidden_layers": 18, "vocab_size": 262144, "sliding_window": 512,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 3,
}  # fmt: skip
METRICS = """# HELP llamacpp:n_decode_total Total number of llama_decode() calls
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 120
llamacpp:tokens_predicted_total 960
llamacpp:prompt_tokens_total 1.5e3
"""


def test_server_command_loads_every_adapter_at_scale_0_with_one_slot_per_client(tmp_path: Path):
    loras = [tmp_path / "a.gguf", tmp_path / "b.gguf"]
    cmd = llamacpp.server_command(tmp_path / "llama-server", tmp_path / "m.gguf", loras, 8123, 2, 16, 256)
    flag = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("-")}
    assert cmd[0] == str(tmp_path / "llama-server") and flag["-m"] == str(tmp_path / "m.gguf")
    assert [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--lora"] == [str(p) for p in loras]  # ids 0, 1
    assert "--lora-init-without-apply" in cmd  # scale 0 until a request names its adapter
    assert (flag["-t"], flag["-tb"], flag["-np"], flag["-c"]) == ("2", "2", "16", str(16 * 256))
    assert (flag["--host"], flag["--port"], flag["--alias"]) == ("127.0.0.1", "8123", "base")
    assert "--metrics" in cmd
    assert flag["--chat-template"] == "gemma" and "--no-jinja" in cmd  # the GGUF has none: not ChatML
    assert "--lora-init-without-apply" not in llamacpp.server_command(Path("s"), Path("m"), [], 1, 2, 1, 256)


def test_a_slot_holds_the_longest_prompt_and_output_rounded_up_to_256():
    assert llamacpp.ctx_per_slot(128, 64) == 256
    assert llamacpp.ctx_per_slot(256, 128) == 512
    assert llamacpp.ctx_per_slot(1, 1) == 256


def test_the_build_is_the_pinned_sdist_with_the_cmake_flags_of_issue_21(tmp_path: Path):
    download = llamacpp.download_command("py", tmp_path)
    assert download[:3] == ["py", "-m", "pip"] and "llama-cpp-python==0.3.36" in download
    assert {"--no-deps", "--no-binary", ":all:"} <= set(download)
    configure, compile_ = llamacpp.build_commands(tmp_path, 2)
    no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # its AMX kernels die with SIGILL in worker threads
    assert configure == ["cmake", "-B", "build-noamx", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                         "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF",
                         "-DLLAMA_BUILD_EXAMPLES=OFF", f"-DCMAKE_C_FLAGS={no_amx}",
                         f"-DCMAKE_CXX_FLAGS={no_amx}"]  # fmt: skip
    assert compile_ == ["cmake", "--build", "build-noamx", "--target", "llama-server", "-j2"]
    exe = tmp_path / "llama_cpp_python-0.3.36/vendor/llama.cpp/build-noamx/bin/llama-server"
    assert llamacpp.binary(tmp_path) == exe


def test_build_reuses_a_binary_already_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    exe = llamacpp.binary(tmp_path)
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")

    def no_subprocess(*args: object, **kw: object) -> None:
        raise AssertionError(f"nothing should run: {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert llamacpp.build(tmp_path) == exe


def test_adapters_go_through_the_vendored_converter_once_per_content(
    tmp_path: Path, tiny_adapters: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    calls: list[list[str]] = []

    def fake_convert(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        Path(cmd[cmd.index("--outfile") + 1]).write_bytes(b"GGUF")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_convert)
    name, adapter = next(iter(tiny_adapters.items()))
    first = llamacpp.lora_ggufs({name: adapter}, tmp_path / "base", tmp_path)
    assert llamacpp.lora_ggufs({name: adapter}, tmp_path / "base", tmp_path) == first  # cached: no second call
    [cmd] = calls
    src = llamacpp.source_dir(tmp_path)
    assert cmd[1:] == [str(src / "convert_lora_to_gguf.py"), "--base", str(tmp_path / "base"), "--outtype", "f32",
                       "--outfile", cmd[cmd.index("--outfile") + 1], str(adapter)]  # fmt: skip
    assert first[name].read_bytes() == b"GGUF" and first[name].name.endswith("-f32.gguf")


def test_llamacpp_requests_name_the_base_and_pick_the_adapter_by_its_lora_field():
    target = Target("llamacpp", "http://x", "base", {"sales": 0, "support": 1})
    body, _ = harness.chat_request("support", "base", "hi", 8, extra=target.extra("support"))
    assert body["model"] == "base" and body["lora"] == [{"id": 1, "scale": 1.0}]
    assert body["ignore_eos"] is True and body["max_tokens"] == 8  # llama-server honours both (server-task.cpp)
    body, _ = harness.chat_request(BASE, "base", "hi", 8, extra=target.extra(BASE))
    assert body["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]  # [] would stack every --lora at 1
    body, headers = harness.chat_request("sales", "gemma3-270m", "hi", 8, extra=Target("sb", "", "gemma3-270m").extra(
        "sales"))  # fmt: skip
    assert body["model"] == "sales" and "lora" not in body and headers == {}  # the other targets: unchanged


def test_decode_batch_is_output_tokens_per_decode_call_over_the_run():
    after = llamacpp.parse_metrics(METRICS)
    assert after == {"n_decode_total": 120.0, "tokens_predicted_total": 960.0, "prompt_tokens_total": 1500.0}
    before = {"n_decode_total": 20.0, "tokens_predicted_total": 160.0}
    assert llamacpp.decode_batch(before, after) == pytest.approx(800 / 100)
    assert llamacpp.decode_batch(after, after) is None


def test_flops_per_token_of_gemma3_270m_count_the_lm_head_attention_and_lora():
    layer = 640 * 1024 + 2 * 640 * 256 + 1024 * 640 + 3 * 640 * 2048  # q, k, v, o, gate/up/down
    dense = 2 * (18 * layer + 262144 * 640)
    assert utilisation.flops_per_token(GEMMA3_270M) == dense == 536_084_480  # lm_head: 63% of it
    assert utilisation.flops_per_token(GEMMA3_270M, context=100) == dense + 18 * 4 * 1024 * 100
    # past the sliding window only the 3 full-attention layers see the whole context
    assert utilisation.flops_per_token(GEMMA3_270M, context=1000) == dense + 4 * 1024 * (15 * 512 + 3 * 1000)
    lora = 18 * 2 * 8 * ((640 + 1024) + (640 + 256))  # r=8 on q and k
    got = utilisation.flops_per_token(GEMMA3_270M, lora_rank=8, lora_targets=["q_proj", "k_proj"], lora_share=0.5)
    assert got == dense + 0.5 * lora


def test_utilisation_is_tokens_per_second_times_flops_per_token_over_the_peak():
    assert utilisation.utilisation(50.0, 5e8, 1e11) == pytest.approx(0.25)


def test_gemm_peak_times_square_matmuls_and_stops_growing_when_one_is_slow():
    peak = utilisation.gemm_peak("float32", size=512, rounds=1, per_round=1, threads=1)
    assert peak["size"] in (256, 512) and peak["threads"] == 1
    assert peak["flops"] == pytest.approx(2 * peak["size"] ** 3 / peak["seconds_per_matmul"])
    assert utilisation.gemm_peak("float32", size=512, rounds=1, per_round=1, matmul_s=0.0)["size"] == 256


def test_llamacpp_is_divided_by_the_fp32_peak_and_the_others_by_their_dtype():
    def run(target: str) -> Run:
        outs = [Outcome(i, "sales" if i % 2 else BASE, 8, status="ok", prompt_tokens=20, completion_tokens=8)
                for i in range(4)]  # fmt: skip
        return Run(target, "mixed-3", 0, 2.0, outs)

    runs = [run("switchboard"), run("llamacpp"), run("switchboard-bf16")]
    summary = loadgen_report.summarize(runs)
    peaks = {"float32": {"flops": 1e11}, "bfloat16": {"flops": 1e10}}
    lora = {"r": 8, "target_modules": ["q_proj"]}
    loadgen_report.add_utilisation(summary, runs, GEMMA3_270M, lora, {**peaks, "float16": {"flops": 1.0}}, "float16")
    assert summary["switchboard-bf16/mixed-3"]["peak_dtype"] == "bfloat16"  # whatever --dtype the others run
    loadgen_report.add_utilisation(summary, runs, GEMMA3_270M, lora, peaks, "bfloat16")
    flops = utilisation.flops_per_token(GEMMA3_270M, 24, 8, ["q_proj"], 0.5)  # context 20 + 8 / 2, half on sales
    sb, lc = summary["switchboard/mixed-3"], summary["llamacpp/mixed-3"]
    assert sb["flops_per_token"] == lc["flops_per_token"] == pytest.approx(flops)
    assert (sb["peak_dtype"], lc["peak_dtype"]) == ("bfloat16", "float32")
    assert sb["utilisation"] == pytest.approx(16 * flops / 1e10) and lc["utilisation"] == pytest.approx(
        16 * flops / 1e11
    )
    assert math.isnan(sb["rss_mib"]) and math.isnan(sb["decode_batch"])  # not sampled in this fake run


def test_serial_and_base_scenarios_and_llamacpp_runs_the_four_of_issue_21():
    args = loadgen.parse_args(["--quick", "--targets", "switchboard,llamacpp", "--serial-requests", "3"])
    scenarios = loadgen.scenarios(args)
    serial, base = scenarios["serial-base"], scenarios[f"base-{args.concurrency}"]
    assert serial.concurrency == 1 and serial.spec.pool == (BASE,) and serial.spec.requests == 3
    assert base.concurrency is None and base.spec.pool == (BASE,) and base.spec.requests == args.requests
    plan = loadgen.plan(args, scenarios)
    assert plan["llamacpp"] == ["serial-base", f"base-{args.concurrency}", "adapters-1", "mixed-3"]
    assert set(plan["llamacpp"]) <= set(plan["switchboard"])
    only = loadgen.parse_args(["--quick", "--targets", "llamacpp", "--scenarios", "serial,mixed-3"])
    assert list(loadgen.plan(only, loadgen.scenarios(only))) == ["llamacpp"]
    assert loadgen.plan(only, loadgen.scenarios(only))["llamacpp"] == ["serial-base", "mixed-3"]


def test_switchboard_fp32_runs_the_four_with_fp32_weights(tmp_path: Path):
    args = loadgen.parse_args(
        ["--quick", "--targets", "switchboard,switchboard-fp32,switchboard-full-head,switchboard-bf16"]
    )
    plan = loadgen.plan(args, loadgen.scenarios(args))
    assert plan["switchboard-fp32"] == ["serial-base", f"base-{args.concurrency}", "adapters-1", "mixed-3"]
    assert plan["switchboard-full-head"] == plan["switchboard-bf16"] == plan["switchboard-fp32"]
    bf16 = loadgen.server_command("switchboard-bf16", args, {}, 8123, tmp_path)
    assert bf16[len(bf16) - 1 - bf16[::-1].index("--dtype") + 1] == "bfloat16"  # the last --dtype wins
    full = loadgen.server_command("switchboard-full-head", args, {}, 8123, tmp_path)
    assert full[full.index("--lm-head") + 1] == "full" and "--weights" not in full
    cmd = loadgen.server_command("switchboard-fp32", args, {}, 8123, tmp_path)
    assert cmd[cmd.index("--weights") + 1] == "dtype" and "--weights" not in loadgen.server_command(
        "switchboard", args, {}, 8123, tmp_path
    )
    assert set(loadgen.READY_DEADLINE_S) <= set(loadgen_report.TARGET_TITLES)  # every target has a report title
    assert set(loadgen.VARIANTS) <= set(loadgen.READY_DEADLINE_S)
    titles = [row["ratio"] for row in loadgen_report.ratios({}, [1], args.concurrency)]
    assert f"Switchboard / Switchboard --weights dtype, base-{args.concurrency}" in titles
    assert f"Switchboard / Switchboard --lm-head full, base-{args.concurrency}" in titles
    assert "Switchboard / Switchboard --dtype bfloat16, serial-base" in titles


async def test_peak_rss_samples_the_process_tree():
    async with memory.PeakRss(os.getpid(), every_s=0.01) as rss:
        await asyncio.sleep(0.05)
    assert rss.mib > 10  # this Python, torch loaded
    assert memory.tree_rss_mib(2**22 + 12345) == 0.0  # no such process


# --- end to end: a real llama-server, where one has been built ---
def _built() -> Path | None:
    exe = llamacpp.binary(CACHE_DIR / "llamacpp")
    return exe if exe.is_file() else None


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Iterator[tuple[str, Path]]:
    """llama-server on the embedded GGUF with the bundled pre-sales adapter converted; yields its URL and log."""
    exe = _built()
    if exe is None:
        pytest.skip(f"no llama-server in {CACHE_DIR / 'llamacpp'}: `make llama-server` builds it (~8 min on 2 cores)")
    cache = CACHE_DIR / "llamacpp"
    loras = llamacpp.lora_ggufs({"pre-sales": REPO / "adapters" / "pre-sales"}, default_model_dir, cache)
    port = free_port()
    cmd = llamacpp.server_command(exe, llamacpp.model_gguf("gemma3-270m", cache), list(loras.values()), port, 2, 2, 256)
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    with harness.server(cmd, log) as proc:

        async def ready() -> None:
            async with harness.client(port) as client:
                await harness.wait_ready(client, proc, log, "/health", 120, "llama-server")

        asyncio.run(ready())
        yield f"http://127.0.0.1:{port}", log


@pytest.mark.loadtest
def test_llama_server_gives_exactly_max_tokens_and_the_adapter_changes_the_text(
    llama_server: tuple[str, Path], default_model_dir: Path
):
    """The same work as Switchboard: the prompt tokens of its chat template, exactly max_tokens output tokens."""
    from transformers import AutoTokenizer

    url, log = llama_server
    target = Target("llamacpp", url, "base", {"pre-sales": 0})

    async def ask(adapter: str) -> tuple[harness.Sample, harness.Transcript]:
        sample, text = harness.Sample(adapter), harness.Transcript()
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            await harness.stream_chat(client, sample, "Do you ship to Canada?", 12, adapter, "base",
                                      transcript=text, extra=target.extra(adapter))  # fmt: skip
        return sample, text

    (base, base_text), (sales, sales_text) = asyncio.run(ask(BASE)), asyncio.run(ask("pre-sales"))
    assert base.error is None and sales.error is None, log.read_text(errors="replace")[-2000:]
    assert base.completion_tokens == sales.completion_tokens == 12  # ignore_eos and max_tokens honoured
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    messages = [{"role": "user", "content": "Do you ship to Canada?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert base.prompt_tokens == sales.prompt_tokens == len(ids)  # Gemma's template, not ChatML
    assert base.ttft_s is not None
    assert base_text.text != sales_text.text  # the lora field reached the adapter, and the base had none
    metrics = llamacpp.parse_metrics(httpx.get(f"{url}/metrics").text)
    assert metrics["tokens_predicted_total"] >= 24 and metrics["n_decode_total"] > 0
    # why the base lists every adapter at 0: --lora-init-without-apply leaves their scale at 1 for `lora: []`
    assert json.loads(httpx.get(f"{url}/lora-adapters").text)[0]["scale"] == 1.0


async def test_metrics_are_read_again_when_the_server_drops_a_reused_connection():
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, text="llamacpp:n_decode_total 7\n")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://llama") as client:
        assert await llamacpp.metrics(client) == {"n_decode_total": 7.0}
    assert len(calls) == 2
