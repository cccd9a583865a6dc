"""The S-LoRA-style load test (loadtests/loadgen.py): its workload generator, its driver's deadline, its structured-
output workload (formats, checks, per-class figures), and its quick mode end to end against the tiny model
(Switchboard and the naive PEFT server; no timing asserted)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch

from .conftest import CACHE_DIR, free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))
import loadgen_formats  # noqa: E402
import loadgen_report  # noqa: E402
from harness import Transcript  # noqa: E402
from loadgen_driver import Outcome, Run, Target, closed_loop, open_loop  # noqa: E402
from loadgen_workload import (  # noqa: E402
    BASE,
    CHAT_OVERHEAD_TOKENS,
    Lengths,
    WorkloadSpec,
    adapter_names,
    arrivals,
    make_trace,
    popularity,
    rng_for,
    structured_indices,
)

POOL = tuple(adapter_names(8))
MSG = [{"role": "user", "content": "Where is my order?"}]


def test_same_seed_gives_the_same_trace_and_another_seed_another():
    spec = WorkloadSpec(pool=POOL, rate=3.0, cv=2.0, requests=200, seed=7)
    assert make_trace(spec) == make_trace(spec)
    assert make_trace(spec) != make_trace(WorkloadSpec(pool=POOL, rate=3.0, cv=2.0, requests=200, seed=8))


def test_the_adapter_pool_changes_only_the_adapters():
    """One adapter vs many: the same arrivals, lengths and prompts, so the two runs do the same work."""
    many = make_trace(WorkloadSpec(pool=POOL, requests=100))
    one = make_trace(WorkloadSpec(pool=POOL[:1], requests=100))
    strip = [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.prompt) for r in many]
    assert strip == [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.prompt) for r in one]
    assert {r.adapter for r in one} == {POOL[0]} and len({r.adapter for r in many}) == len(POOL)


def test_duration_keeps_the_prefix_that_arrives_in_time():
    full = make_trace(WorkloadSpec(pool=POOL, rate=5.0, requests=1000))
    cut = make_trace(WorkloadSpec(pool=POOL, rate=5.0, requests=1000, duration_s=20.0))
    assert cut == full[: len(cut)] and cut[-1].arrival_s < 20.0 <= full[len(cut)].arrival_s
    assert 60 < len(cut) < 140  # ~100 expected


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.5])
def test_adapter_popularity_follows_the_power_law(alpha: float):
    trace = make_trace(WorkloadSpec(pool=POOL, alpha=alpha, requests=20_000, seed=1))
    counts = np.array([sum(r.adapter == name for r in trace) for name in POOL]) / len(trace)
    expected = popularity(len(POOL), alpha)
    assert np.allclose(counts, expected, atol=0.015), (counts, expected)
    if alpha == 1.0:
        assert expected[0] / expected[1] == pytest.approx(2.0) and expected[0] / expected[3] == pytest.approx(4.0)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_gaps_have_the_asked_mean_and_coefficient_of_variation(cv: float):
    times = arrivals(rng_for(3, "arrivals"), 20_001, rate=4.0, cv=cv)
    gaps = np.diff(times)
    assert times[0] == 0.0 and gaps.min() >= 0
    assert gaps.mean() == pytest.approx(0.25, rel=0.08)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.12)


def test_lengths_have_the_lmsys_like_mean_and_respect_the_caps():
    rng = rng_for(5, "lengths")
    assert statistics.fmean(Lengths(165, 0.8, 1, 10**6).draw(rng, 20_000)) == pytest.approx(165, rel=0.05)
    clipped = Lengths(85, 1.0, 10, 48).draw(rng, 5_000)
    assert min(clipped) == 10 and max(clipped) == 48


def test_prompts_have_the_drawn_token_count_after_the_chat_template(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    spec = WorkloadSpec(pool=POOL, requests=20, prompt=Lengths(85, 1.0, CHAT_OVERHEAD_TOKENS + 1, 300))
    for req in make_trace(spec):
        messages = [{"role": "user", "content": req.prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert len(ids) == req.prompt_tokens


def test_the_structured_share_changes_only_the_response_formats():
    """json-0, json-0.5 and json-1 replay the same requests; half (every other one) or all carry a format, in turn."""
    formats = ("order", "ticket", "json_object")
    traces = {share: make_trace(WorkloadSpec(pool=POOL, requests=40, structured=share, formats=formats))
              for share in (0.0, 0.5, 1.0)}  # fmt: skip
    strip = [[replace(r, response_format=None) for r in trace] for trace in traces.values()]
    assert strip[0] == strip[1] == strip[2] == make_trace(WorkloadSpec(pool=POOL, requests=40))
    assert [r.response_format for r in traces[0.0]] == [None] * 40
    assert [r.response_format for r in traces[0.5]] == [None, "order", None, "ticket", None, "json_object"] * 6 + [
        None, "order", None, "ticket"]  # fmt: skip
    assert [r.response_format for r in traces[1.0]] == [formats[i % 3] for i in range(40)]
    assert [len(structured_indices(100, share)) for share in (0.0, 0.1, 0.25, 1 / 3, 0.9, 1.0)] == [
        0,
        10,
        25,
        33,
        90,
        100,
    ]
    with pytest.raises(ValueError, match="needs formats"):
        make_trace(WorkloadSpec(pool=POOL, structured=0.5))


VALID_DOCUMENTS = {
    "order": {"order_id": "AB-123456", "customer": {"name": "Li Wei", "city": "Hangzhou"},
              "items": [{"sku": "TEA-01", "quantity": 2}], "total": 35.5},
    "ticket": {"category": "refund", "priority": "urgent", "summary": "Parcel arrived broken", "needs_human": True},
    "product_zh": {"名称": "羊毛围巾", "类别": "服装", "价格": 129, "卖点": ["柔软", "保暖"]},
    "review": {"tags": ["fast delivery"], "sentiment": "positive", "stars": 5},
    "json_object": {"anything": [1, "two"]},
}  # fmt: skip


@pytest.mark.parametrize("name", loadgen_formats.FORMATS)
def test_each_format_is_a_schema_the_server_compiles_and_checks_valid_cut_and_invalid(name: str):
    from switchboard.engine.constraints import grammar, schema_text

    fmt = loadgen_formats.response_format(name)
    assert grammar(schema_text(fmt))  # what the server enforces: InvalidRequest if llguidance refused it
    text = json.dumps(VALID_DOCUMENTS[name], ensure_ascii=False, separators=(",", ":"))
    assert loadgen_formats.check(name, text, "stop") == "valid"
    assert loadgen_formats.check(name, text, "length") == "valid"  # complete just at max_tokens
    assert loadgen_formats.check(name, text[:-3], "length") == "cut"
    assert loadgen_formats.check(name, text[:-3], "stop") == "invalid"
    broken = "[]" if name == "json_object" else json.dumps({**VALID_DOCUMENTS[name], "extra": 1})
    assert loadgen_formats.check(name, broken, "stop") == "invalid"


def _outcome(i: int, fmt: str | None, tokens: int, ttft_s: float, latency_s: float, check: str | None = None):
    """An ended request: `tokens` output tokens, streamed evenly between its TTFT and its latency."""
    gaps = [(latency_s - ttft_s) / (tokens - 1)] * (tokens - 1)
    out = Outcome(i, "a", 8, status="ok", ttft_s=ttft_s, latency_s=latency_s, completion_tokens=tokens, itl_s=gaps,
                  response_format=fmt, check=check)  # fmt: skip
    out.transcript = None if fmt is None else Transcript("{}", "stop")
    return out


def test_structured_runs_are_summarized_per_class_and_compared_with_json_0():
    free = Run("switchboard", "json-0", 0, 2.0, [_outcome(0, None, 9, 0.5, 1.3), _outcome(1, None, 5, 0.1, 0.5)])
    mixed = Run("switchboard", "json-0.5", 0, 4.0, [
        _outcome(0, None, 9, 0.5, 2.1), _outcome(1, "order", 5, 0.2, 1.0, "valid"),
        _outcome(2, "ticket", 3, 0.1, 0.5, "cut"), _outcome(3, "json_object", 3, 0.1, 0.5, "invalid"),
    ])  # fmt: skip
    summary = loadgen_report.summarize([free, mixed])
    assert "classes" in summary["switchboard/json-0"] and "classes" in summary["switchboard/json-0.5"]
    free_rows, rows = summary["switchboard/json-0"]["classes"], summary["switchboard/json-0.5"]["classes"]
    assert free_rows["free"]["row_tok_s"] == pytest.approx((8 + 4) / (0.8 + 0.4))  # 10 tok/s per row
    assert free_rows["free"]["tok_s"] == pytest.approx(14 / 2.0) and free_rows["json"]["ok"] == 0
    assert rows["json"]["row_tok_s"] == pytest.approx((4 + 2 + 2) / (0.8 + 0.4 + 0.4))  # 5 tok/s per row
    assert rows["free"]["row_tok_s"] == pytest.approx(8 / 1.6)
    assert rows["json"]["step_tok_s"] == pytest.approx(5.0) and rows["json"]["tok_s"] == pytest.approx(11 / 4.0)
    assert rows["json"]["checks"] == {"valid": 1, "cut": 1, "invalid": 1}
    ratios = {r["ratio"].split(": ", 1)[1]: r["value"] for r in loadgen_report.structured_ratios(summary)}
    assert ratios[
        "mixed batch: constrained ÷ unconstrained rows of the same run, per-row decode tok/s"
    ] == pytest.approx(1.0)
    assert ratios["constrained rows ÷ the rows of json-0 (none constrained), per-row decode tok/s"] == pytest.approx(
        0.5
    )
    assert ratios["whole run ÷ json-0, output tok/s"] == pytest.approx((20 / 4.0) / (14 / 2.0))
    assert loadgen_report.invalid_documents([free, mixed]) == [("switchboard/json-0.5", "{}")]


def _slow_server(gap_s: float, document: str = '{"a":1}') -> httpx.MockTransport:
    """A fake OpenAI streaming server: one content chunk every `gap_s` seconds, usage, then [DONE]. A request with a
    response_format gets `document`, one character per token, cut at max_tokens (finish_reason length)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        pieces = list(document if "response_format" in body else "x" * body["max_tokens"])[: body["max_tokens"]]
        reason = "length" if len(pieces) == body["max_tokens"] else "stop"

        async def events():
            for n, piece in enumerate(pieces, 1):
                await asyncio.sleep(gap_s)
                choice = {"delta": {"content": piece}, "finish_reason": reason if n == len(pieces) else None}
                yield f"data: {json.dumps({'choices': [choice]})}\n\n".encode()
            usage = {"prompt_tokens": 3, "completion_tokens": len(pieces)}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode()

        return httpx.Response(200, content=events(), headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handler)


async def test_requests_still_running_at_the_deadline_are_cancelled_not_failed():
    trace = make_trace(WorkloadSpec(pool=(*POOL[:2], BASE), requests=6, output=Lengths(4, 0.01, 4, 4)))
    trace[1] = replace(trace[1], output_tokens=1000)  # this one outlives the deadline
    async with httpx.AsyncClient(transport=_slow_server(0.01), base_url="http://test") as client:
        started = time.perf_counter()
        wall, outcomes = await closed_loop(client, Target("fake", "", "base"), trace, 2, max_run_s=1.0)
    assert time.perf_counter() - started < 3 and wall == 1.0
    assert [o.status for o in outcomes] == ["ok", "cancelled", "ok", "ok", "ok", "ok"]
    assert all(o.error is None and o.ttft_s is not None for o in outcomes)
    assert [len(o.itl_s) for o in outcomes if o.status == "ok"] == [3] * 5


async def test_structured_requests_end_with_their_document_and_are_checked():
    spec = WorkloadSpec(pool=POOL, requests=6, output=Lengths(9, 0.01, 9, 9), structured=0.5, formats=("json_object",))
    trace = make_trace(spec)
    trace[5] = replace(trace[5], output_tokens=4)  # too few tokens for the document: cut, not invalid
    async with httpx.AsyncClient(transport=_slow_server(0.001), base_url="http://test") as client:
        _, outcomes = await closed_loop(client, Target("fake", "", "base"), trace, 3, max_run_s=10.0)
    assert [o.status for o in outcomes] == ["ok"] * 6, [o.error for o in outcomes]
    assert [o.completion_tokens for o in outcomes] == [9, 7, 9, 7, 9, 4]
    assert [o.check for o in outcomes] == [None, "valid", None, "valid", None, "cut"]
    assert outcomes[1].transcript == Transcript('{"a":1}', "stop") and outcomes[0].transcript is None


async def test_the_open_loop_sends_each_request_at_its_arrival():
    trace = make_trace(WorkloadSpec(pool=POOL, rate=20.0, requests=10, output=Lengths(2, 0.01, 2, 2)))
    async with httpx.AsyncClient(transport=_slow_server(0.001), base_url="http://test") as client:
        wall, outcomes = await open_loop(client, Target("fake", "", "base"), trace, 4, max_run_s=10.0)
    assert [o.status for o in outcomes] == ["ok"] * 10
    assert all(o.queued_s < 0.2 for o in outcomes)  # the fake server is fast: nobody waits for a slot
    ends = [o.end_s for o in outcomes]
    assert all(end >= req.arrival_s for end, req in zip(ends, trace, strict=True))
    assert wall == pytest.approx(max(ends)) and wall >= trace[-1].arrival_s


@pytest.mark.loadtest
def test_quick_mode_runs_against_switchboard_and_the_naive_server(tiny_model_dir: Path, tmp_path: Path):
    """The CI smoke run: completes with no failed request. Timing is not asserted (shared 2-core machines)."""
    cmd = [sys.executable, str(REPO / "loadtests" / "loadgen.py"), "--quick", "--model", str(tiny_model_dir)]
    cmd += ["--dtype", "float32", "--targets", "switchboard,naive", "--out-dir", str(tmp_path), "--no-plots"]
    cmd += ["--structured", "0.5"]  # and the structured-output scenario: half the requests constrained
    env = {**os.environ, "SWITCHBOARD_CACHE_DIR": str(CACHE_DIR), "SWITCHBOARD_MAX_MODEL_LEN": "256"}
    env["OMP_NUM_THREADS"] = "1"  # two OpenMP threads per server crawl when other work holds a core (shared CI)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    [result_file] = tmp_path.glob("loadgen-quick-*.json")
    result = json.loads(result_file.read_text())
    summary = result["summary"]
    expected = {"serial-base", "base-4", "adapters-1", "adapters-4", "mixed-3", "rate-2", "json-0.5"}
    assert {k for k in summary if k.startswith("switchboard/")} == {f"switchboard/{k}" for k in expected}
    assert "naive/mixed-3" in summary
    assert all(s["failed"] == 0 and s["ok"] > 0 for s in summary.values()), summary
    assert all(s["rss_mib"] > 100 and 0 < s["utilisation"] < 1 for s in summary.values()), summary
    assert summary["switchboard/serial-base"]["ok"] == 2  # --serial-requests' quick default, one client
    assert result["traces"]["mixed-3"]["requests"][0]["prompt"]
    assert "Switchboard / naive PEFT" in (tmp_path / "loadgen-quick.md").read_text()
    classes = summary["switchboard/json-0.5"]["classes"]  # a random model's documents may be cut, never invalid
    assert classes["json"]["ok"] == classes["free"]["ok"] == 4 and classes["json"]["checks"]["invalid"] == 0


@pytest.fixture(scope="module")
def naive_server(tmp_path_factory, tiny_model_dir: Path, tiny_adapters: dict[str, Path]) -> Iterator[str]:
    """loadtests/naive_peft_server.py on the tiny model (fp32) with the test adapters; yields its /v1 URL."""
    port = free_port()
    cmd = [sys.executable, str(REPO / "loadtests" / "naive_peft_server.py"), "--model", str(tiny_model_dir)]
    cmd += ["--dtype", "float32", "--port", str(port), *(f"--adapter={n}={p}" for n, p in tiny_adapters.items())]
    log = tmp_path_factory.mktemp("naive") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", log, 120, what="naive server")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _stream_text(client: openai.OpenAI, model: str) -> tuple[str, int]:
    stream = client.chat.completions.create(
        model=model, messages=MSG, max_tokens=9, temperature=0, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    text, completion_tokens = "", 0
    for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        completion_tokens = chunk.usage.completion_tokens if chunk.usage else completion_tokens
    return text, completion_tokens


@pytest.mark.loadtest
def test_the_naive_server_answers_like_transformers(
    naive_server: str, tiny_model_dir: Path, tiny_adapters: dict[str, Path]
):
    """Greedy output of the baseline, streamed, equals `generate()` on a PeftModel with the same adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(MSG, add_generation_prompt=True, tokenize=True, return_dict=False)
    ids = torch.tensor([prompt])
    naive = openai.OpenAI(base_url=naive_server, api_key="unused", max_retries=0, timeout=60)
    texts = {}
    for name in (*tiny_adapters, BASE):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        if name != BASE:
            model = PeftModel.from_pretrained(model, str(tiny_adapters[name]))
        with torch.inference_mode():
            out = model.eval().generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=9, min_new_tokens=9, do_sample=False
            )
        expected = tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True)
        texts[name] = _stream_text(naive, name)
        assert texts[name] == (expected, 9), name
    assert len(set(texts.values())) == len(texts)  # the adapters change the output
    with pytest.raises(openai.NotFoundError):
        naive.chat.completions.create(model="nope", messages=MSG, max_tokens=2)


def test_a_target_that_dies_is_noted_and_the_other_targets_runs_are_kept(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import loadgen

    real = loadgen.server_command

    def command(target: str, *args: object) -> list[str]:
        if target == "llamacpp":  # a server that exits at start, as llama-server did with SIGILL on an AMX Xeon
            return [sys.executable, "-c", "import sys; sys.exit('crashed at start')"]
        return real(target, *args)

    monkeypatch.setattr(loadgen, "server_command", command)
    monkeypatch.setenv("SWITCHBOARD_CACHE_DIR", str(CACHE_DIR))
    monkeypatch.setenv("SWITCHBOARD_MAX_MODEL_LEN", "256")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["--quick", "--model", str(tiny_model_dir), "--dtype", "float32", "--targets", "llamacpp,switchboard"]
    code = loadgen.main([*argv, "--scenarios", "serial-base", "--out-dir", str(tmp_path), "--no-plots"])
    assert code == 1  # a target failed: not a clean run
    [result_file] = tmp_path.glob("loadgen-quick-*.json")
    result = json.loads(result_file.read_text())
    assert set(result["summary"]) == {"switchboard/serial-base"}  # the run after the dead target still counted
    assert result["summary"]["switchboard/serial-base"]["ok"] == 2
    [note] = [n for n in result["setting"]["notes"] if n.startswith("llamacpp failed, no figures")]
    assert note in next(tmp_path.glob("loadgen-quick-*.md")).read_text()
