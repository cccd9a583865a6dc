"""llama.cpp's `llama-server` as a load-test target (#21): built from a pinned source package, serving the embedded
model's own GGUF with the adapters converted to GGUF LoRA by llama.cpp's converter.

- `build`: `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36` (its sdist vendors llama.cpp),
  extract it under ~/.cache/switchboard/llamacpp, `cmake` (Release, native CPU flags but no AMX code, no curl/OpenSSL,
  no tests or examples) and `cmake --build build-noamx --target llama-server` (about 8 minutes on 2 cores). A
  binary already there is reused, so the build runs once per machine.
- `model_gguf`: the GGUF the embedded model is converted from (Gemma 3 270M Q4_K_M), which llama-server serves as is.
- `lora_ggufs`: each PEFT adapter through `convert_lora_to_gguf.py` of the same source tree (f32, so the adapters
  lose nothing), with the base model's HF dir for its config; cached by the adapter's content.
- `server_command`: `llama-server` with every adapter loaded at scale 0 (`--lora-init-without-apply`), one slot per
  client (`-np`), a context of `-np` × the longest request, `--metrics` (decode calls are counted).
- `lora_ids`: adapter name → its --lora index; a request picks its adapter with `lora: [{"id": i, "scale": 1.0}]`
  (`loadgen_driver.Target.extra`; the bare base: every adapter listed at scale 0, since `lora: []` would take each
  at its command-line scale, 1, all stacked). llama-server batches only slots
  whose LoRA sets are equal (`server_slot::can_batch_with` in tools/server/server-context.cpp), which
  `decode_batch` measures: output tokens per `llama_decode()` call.

`python loadtests/llamacpp.py build` builds (or finds) the binary and prints its path; `make llama-server` runs it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

VERSION = "0.3.36"  # llama-cpp-python, whose sdist pins the llama.cpp source in vendor/llama.cpp
PACKAGE = f"llama_cpp_python-{VERSION}"
CACHE = Path(os.environ.get("SWITCHBOARD_CACHE_DIR", Path.home() / ".cache" / "switchboard")).expanduser() / "llamacpp"
# No AMX code: this llama.cpp asks the kernel for AMX tile state on its main thread only, and its worker threads
# die on their first tile instruction (SIGILL at `tilezero` in ggml's AMX q8_0 kernel, seen on a 2-core AMX Xeon;
# llama.cpp PR #26954, open). -mno-amx-* wins over -march=native whatever the order; elsewhere it changes nothing.
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=ON",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", f"-DCMAKE_C_FLAGS={NO_AMX}",
               f"-DCMAKE_CXX_FLAGS={NO_AMX}")  # fmt: skip
BUILD_DIR = "build-noamx"  # not "build": a binary built before the AMX flags would be reused
LORA_OUTTYPE = "f32"
# The GGUF carries no chat template (llama-server would fall back to ChatML); llama.cpp's built-in `gemma` one
# renders a user turn like Switchboard's template, so both servers see the same prompt tokens.
CHAT_TEMPLATE = "gemma"
CTX_MARGIN = 64  # tokens per slot beyond the longest prompt + output (chat template, rounding)


def source_dir(cache: Path = CACHE) -> Path:
    """The llama.cpp source tree of the pinned sdist."""
    return cache / PACKAGE / "vendor" / "llama.cpp"


def binary(cache: Path = CACHE) -> Path:
    return source_dir(cache) / BUILD_DIR / "bin" / "llama-server"


def build_commands(src: Path, jobs: int) -> list[list[str]]:
    """The two cmake steps, run in `src`."""
    return [["cmake", "-B", BUILD_DIR, *CMAKE_FLAGS], ["cmake", "--build", BUILD_DIR, "--target", "llama-server",
                                                       f"-j{jobs}"]]  # fmt: skip


def download_command(python: str, dest: Path) -> list[str]:
    return [python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={VERSION}",
            "--dest", str(dest)]  # fmt: skip


def build(cache: Path = CACHE, jobs: int | None = None, python: str = sys.executable) -> Path:
    """The llama-server binary: found in the cache, or downloaded, extracted and built there (minutes)."""
    out = binary(cache)
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: a second caller waits, then finds the binary
        if out.is_file():
            return out
        if not source_dir(cache).is_dir():
            archive = cache / f"{PACKAGE}.tar.gz"
            if not archive.is_file():
                subprocess.run(download_command(python, cache), check=True)
            with tarfile.open(archive) as tar:
                tar.extractall(cache, filter="data")
        if shutil.which("cmake") is None:
            raise RuntimeError("cmake is not installed: llama-server cannot be built (apt-get install cmake g++)")
        for cmd in build_commands(source_dir(cache), jobs or os.cpu_count() or 1):
            print(f"llama.cpp: {' '.join(cmd)}", file=sys.stderr)
            subprocess.run(cmd, cwd=source_dir(cache), check=True)
    return out


def model_gguf(model: str, cache: Path = CACHE) -> Path:
    """The embedded model's GGUF (the file Switchboard converts to HF once), assembled in the cache."""
    from switchboard.models import EMBEDDED

    if model not in EMBEDDED:
        raise ValueError(f"llama.cpp target: model {model!r} is not embedded; expected one of {', '.join(EMBEDDED)}")
    scratch = cache / "models" / model
    found = sorted(scratch.glob("*.gguf"))
    return found[0] if found else EMBEDDED[model].gguf(scratch)


def convert_command(src: Path, adapter_dir: Path, base_dir: Path, outfile: Path, python: str = sys.executable
                    ) -> list[str]:  # fmt: skip
    """llama.cpp's PEFT → GGUF LoRA converter (it puts its own gguf-py first on sys.path)."""
    return [python, str(src / "convert_lora_to_gguf.py"), "--base", str(base_dir), "--outtype", LORA_OUTTYPE,
            "--outfile", str(outfile), str(adapter_dir)]  # fmt: skip


def adapter_digest(adapter_dir: Path) -> str:
    sha = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        sha.update((adapter_dir / name).read_bytes())
    return sha.hexdigest()[:12]


def lora_ggufs(adapters: Mapping[str, Path], base_dir: Path, cache: Path = CACHE) -> dict[str, Path]:
    """Each adapter as a GGUF LoRA, converted once and kept under the cache by content."""
    out = {}
    for name, adapter_dir in adapters.items():
        target = cache / "lora" / f"{name}-{adapter_digest(adapter_dir)}-{LORA_OUTTYPE}.gguf"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial.gguf")
            done = subprocess.run(convert_command(source_dir(cache), adapter_dir, base_dir, partial),
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"converting adapter {name} to GGUF failed:\n{done.stderr[-2000:]}")
            partial.rename(target)
        out[name] = target
    return out


def ctx_per_slot(max_prompt_tokens: int, max_output_tokens: int) -> int:
    """A slot's context: the longest prompt and output plus a margin, rounded up to 256."""
    need = max_prompt_tokens + max_output_tokens + CTX_MARGIN
    return -(-need // 256) * 256


def server_command(
    exe: Path, gguf: Path, loras: Sequence[Path], port: int, threads: int, slots: int, ctx_slot: int,
    alias: str = "base",
) -> list[str]:  # fmt: skip
    """llama-server on 127.0.0.1:`port`: `slots` parallel slots of `ctx_slot` tokens each, every LoRA loaded at
    scale 0 (a request picks its own, see `lora_ids`), `threads` for decoding and batches alike, Gemma's chat
    template (`CHAT_TEMPLATE`)."""
    lora = [arg for path in loras for arg in ("--lora", str(path))]
    return [str(exe), "-m", str(gguf), "--alias", alias, *lora, *(["--lora-init-without-apply"] if loras else []),
            "--no-jinja", "--chat-template", CHAT_TEMPLATE, "-t", str(threads), "-tb", str(threads), "-np", str(slots),
            "-c", str(slots * ctx_slot),
            "--host", "127.0.0.1", "--port", str(port), "--metrics", "--no-webui"]  # fmt: skip


def lora_ids(names: Sequence[str]) -> dict[str, int]:
    """Adapter name → its index in llama-server's --lora list (the order of `server_command`'s `loras`)."""
    return {name: i for i, name in enumerate(names)}


def parse_metrics(text: str) -> dict[str, float]:
    """llama-server's Prometheus text → {name without the `llamacpp:` prefix: value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.removeprefix("llamacpp:")] = float(value)
    return out


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """llama-server's counters now (its /metrics, with --metrics). Read again once over a fresh connection when
    the server drops the one reused (llama-server sometimes closes a kept-alive connection as a request goes out)."""
    try:
        resp = await client.get("/metrics")
    except httpx.RemoteProtocolError:
        resp = await client.get("/metrics", headers={"Connection": "close"})
    resp.raise_for_status()
    return parse_metrics(resp.text)


def decode_batch(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Output tokens per llama_decode() call between two /metrics reads: how many rows a forward pass carried
    (prompt-only calls count too, so it is a lower bound); None when nothing was decoded."""
    calls = after.get("n_decode_total", 0.0) - before.get("n_decode_total", 0.0)
    tokens = after.get("tokens_predicted_total", 0.0) - before.get("tokens_predicted_total", 0.0)
    return tokens / calls if calls > 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["build", "path"], help="build: build or find llama-server; path: print it")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel compile jobs")
    args = parser.parse_args(argv)
    if args.step == "path":
        print(binary())
        return 0 if binary().is_file() else 1
    print(build(jobs=args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
