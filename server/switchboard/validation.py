"""Adapter validation shared by the server (before anything is served) and the trainer (before it
writes an adapter): every refusal names the problem and the way out.

Checks, in order: the path lies under an adapter root (no `..`, no symlink out); the PEFT files are
present; weights are safetensors only (pickle refused); it is a LoRA adapter without full-layer
copies (`modules_to_save`) or DoRA; rank within the configured maximum; the base model matches
(the manifest's base hash when there is one, else every LoRA tensor's shape against the base
model's weights); every target module exists in the base model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import AdapterIncompatible, InvalidRequest

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_[AB]|lora_embedding_[AB])(?:\.[^.]+)?\.weight$"
)


@dataclass(frozen=True)
class BaseModelInfo:
    """What an adapter must fit: module name -> (in_features, out_features) and the weights' hash."""

    model_id: str
    linear_shapes: dict[str, tuple[int, int]]
    weights_hash: str | None = None


@dataclass
class AdapterInfo:
    path: Path
    rank: int
    alpha: float
    target_modules: list[str]
    base_model_name: str | None
    manifest: dict[str, Any] | None = None
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return (self.path / "adapter_model.safetensors").stat().st_size

    def content_hash(self) -> str:
        """sha256 over adapter_config.json and the weights: the same files give the same hash anywhere."""
        digest = hashlib.sha256()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            with open(self.path / name, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the weights."""
    with open(path, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        if header_len <= 0 or header_len > 100_000_000:
            raise ValueError("not a safetensors file")
        header = json.loads(handle.read(header_len))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


@lru_cache(maxsize=4)
def base_model_info(model_dir: Path, model_id: str) -> BaseModelInfo:
    """Shapes of every 2-D weight of the base model, from its safetensors headers."""
    shapes: dict[str, tuple[int, int]] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        for name, shape in _safetensors_shapes(file).items():
            if name.endswith(".weight") and len(shape) == 2:
                out_features, in_features = shape
                shapes[name[: -len(".weight")]] = (in_features, out_features)
    return BaseModelInfo(model_id=model_id, linear_shapes=shapes, weights_hash=weights_hash(Path(model_dir)))


def weights_hash(model_dir: Path) -> str:
    """sha256 over the base model's safetensors files, cached next to them (computed once)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    cache = Path(model_dir) / ".switchboard-weights-sha256"
    try:
        cached_stamp, cached = cache.read_text().split("\n")[:2]
        if cached_stamp == stamp:
            return cached
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):  # read-only model dir: recompute next time
        cache.write_text(f"{stamp}\n{value}\n")
    return value


def peft_dirs(directory: Path) -> dict[str, Path]:
    """Every PEFT adapter dir directly inside `directory` (not hidden), by dir name."""
    if not directory.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(directory.iterdir())
        if child.is_dir() and not child.name.startswith(".") and (child / "adapter_config.json").is_file()
    }


def check_location(path: str | Path, roots: list[Path]) -> Path:
    """The adapter dir, resolved, if it lies under one of `roots` (symlinks resolved)."""
    raw = Path(path)
    if ".." in raw.parts:
        raise InvalidRequest(
            f"adapter path {str(path)!r} contains '..'; give a path inside an adapter root",
            param="path",
            code="invalid_path",
        )
    if not raw.is_absolute():
        raise InvalidRequest(f"adapter path {str(path)!r} must be absolute", param="path", code="invalid_path")
    if not roots:
        raise InvalidRequest(
            "no adapter root is configured; start the server with --adapter-root DIR", param="path", code="invalid_path"
        )
    resolved_roots = [r.resolve() for r in roots]
    resolved = raw.resolve()
    if not any(resolved.is_relative_to(root) for root in resolved_roots):
        allowed = ", ".join(str(r) for r in resolved_roots)
        raise InvalidRequest(
            f"adapter path {str(path)!r} resolves to {resolved}, outside the adapter roots "
            f"({allowed}); move it under a root or add one with --adapter-root",
            param="path",
            code="path_outside_roots",
        )
    if not resolved.is_dir():
        raise InvalidRequest(f"adapter path {str(path)!r} is not a directory", param="path", code="invalid_path")
    for child in resolved.iterdir():
        target = child.resolve()
        if not any(target.is_relative_to(root) for root in resolved_roots):
            raise InvalidRequest(
                f"{child.name} in {str(path)!r} links outside the adapter roots",
                param="path",
                code="path_outside_roots",
            )
    return resolved


def read_adapter(path: Path) -> AdapterInfo:
    """Check the files and config of the PEFT dir at `path`."""
    if not path.is_dir():
        raise AdapterIncompatible(f"adapter dir {path} does not exist on this machine", code="not_an_adapter")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise AdapterIncompatible(
            f"adapter at {path} contains pickle weights ({', '.join(pickles)}); only "
            "safetensors are loaded: save with save_pretrained(safe_serialization=True)",
            code="pickle_refused",
        )
    config_file = path / "adapter_config.json"
    weights = path / "adapter_model.safetensors"
    if not config_file.is_file():
        raise AdapterIncompatible(
            f"{path} is not a PEFT adapter: adapter_config.json is missing", code="not_an_adapter"
        )
    if not weights.is_file():
        raise AdapterIncompatible(f"{path} has no adapter_model.safetensors", code="not_an_adapter")
    try:
        config = json.loads(config_file.read_text())
        tensors = _safetensors_shapes(weights)
    except (ValueError, OSError) as exc:
        raise AdapterIncompatible(f"{path}: unreadable adapter files: {exc}", code="not_an_adapter") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterIncompatible(
            f"{path}: peft_type {config.get('peft_type')!r} is not supported; only LoRA", code="unsupported_adapter"
        )
    if config.get("modules_to_save"):
        raise AdapterIncompatible(
            f"{path}: modules_to_save {config['modules_to_save']} (full copies of base layers) are not supported "
            "with per-request adapters; retrain without modules_to_save",
            code="unsupported_adapter",
        )
    if config.get("use_dora"):
        raise AdapterIncompatible(
            f"{path}: DoRA adapters are not supported; retrain with use_dora=false", code="unsupported_adapter"
        )
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    manifest = None
    if (path / "manifest.json").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except ValueError as exc:
            raise AdapterIncompatible(f"{path}: manifest.json is not valid JSON: {exc}", code="bad_manifest") from exc
    return AdapterInfo(
        path=path,
        rank=int(config.get("r", 8)),
        alpha=float(config.get("lora_alpha", 8)),
        target_modules=list(targets),
        base_model_name=config.get("base_model_name_or_path"),
        manifest=manifest,
        tensors=tensors,
    )


def check_fits(info: AdapterInfo, base: BaseModelInfo, max_rank: int) -> None:
    """Refuse an adapter whose rank, base model or LoRA tensors do not fit the served base model."""
    if info.rank > max_rank:
        raise AdapterIncompatible(
            f"adapter at {info.path} has rank {info.rank}; this server allows at most {max_rank} (max_lora_rank)",
            code="rank_too_large",
        )
    expected_hash = (info.manifest or {}).get("base_model_hash")
    if expected_hash and base.weights_hash and expected_hash != base.weights_hash:
        trained_on = (info.manifest or {}).get("base_model", "another model")
        raise AdapterIncompatible(
            f"adapter at {info.path} was trained on {trained_on} (weights sha256 "
            f"{expected_hash[:12]}…), not on the served {base.model_id} "
            f"({base.weights_hash[:12]}…)",
            code="base_model_mismatch",
        )
    lora: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in info.tensors.items():
        match = _LORA_KEY.match(key)
        if match:
            lora.setdefault(match["module"], {})[match["kind"]] = shape
    if not lora:
        raise AdapterIncompatible(f"adapter at {info.path} holds no LoRA weights", code="not_an_adapter")
    for module, kinds in sorted(lora.items()):
        if module not in base.linear_shapes:
            raise AdapterIncompatible(
                f"adapter at {info.path} targets {module}, which the served base model "
                f"{base.model_id} does not have (trained on another architecture?)",
                code="base_model_mismatch",
            )
        in_features, out_features = base.linear_shapes[module]
        a, b = kinds.get("lora_A"), kinds.get("lora_B")
        if a is not None and b is not None and (a[1] != in_features or b[0] != out_features):
            raise AdapterIncompatible(
                f"adapter at {info.path} does not fit the served base model {base.model_id}: {module} is "
                f"{in_features}->{out_features} but the adapter's LoRA is {a[1]}->{b[0]}",
                code="base_model_mismatch",
            )


def validate_adapter(path: str | Path, roots: list[Path], base: BaseModelInfo, max_rank: int) -> AdapterInfo:
    """All checks; returns what was read."""
    resolved = check_location(path, roots)
    info = read_adapter(resolved)
    check_fits(info, base, max_rank)
    return info
