"""Engines: one protocol (base.py), one implementation per backend (hf.py; vllm_engine.py, whose vLLM
import happens only when it is built), and what keeps adapters loaded between requests (residency.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from .base import Engine


def build_engine(settings: Settings) -> Engine:
    """The engine `settings` ask for, not yet loaded (its lifespan calls load_model in a thread)."""
    from ..models import resolve_model_dir

    if settings.quantize != "none" and settings.engine != "hf":
        raise ValueError(f"--quantize {settings.quantize} is an hf-engine option (got --engine {settings.engine})")
    if settings.weights != "auto" and settings.engine != "hf":
        raise ValueError(f"--weights {settings.weights} is an hf-engine option (got --engine {settings.engine})")
    if settings.lm_head != "auto" and settings.engine != "hf":
        raise ValueError(f"--lm-head {settings.lm_head} is an hf-engine option (got --engine {settings.engine})")
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    common: dict[str, Any] = {
        "model_id": settings.base_model_id,
        "dtype": settings.dtype,
        "max_batch_size": settings.max_batch_size,
        "max_queue": settings.max_queue,
        "max_model_len": settings.max_model_len,
    }
    if settings.engine == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(
            model_dir,
            **common,
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
            max_cpu_loras=settings.max_resident_adapters,
            engine_args=settings.engine_args,
        )
    from .hf import HFEngine

    return HFEngine(model_dir, **common, quantize=settings.quantize, weights=settings.weights, lm_head=settings.lm_head)
