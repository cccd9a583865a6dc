"""The hf engine's adapter loading and unloading (a part of HFEngine, engine/hf.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import AdapterIncompatible
from ..openmp import to_thread_releasing
from .lora_stacks import LoraStacks, PreparedAdapter
from .quant import refusal

logger = logging.getLogger("switchboard.engine.hf")

_LOAD_ERRORS = (ValueError, KeyError, RuntimeError, OSError, TypeError)


def _incompatible(key: str, path: Path, exc: BaseException) -> AdapterIncompatible:
    return AdapterIncompatible(f"adapter '{key}' at {path} cannot be loaded on this base model: {exc}")


class AdapterMethods:
    """Adapters in and out of the engine: read and built off the engine thread, attached on it."""

    stacks: LoraStacks
    model: Any
    quantize: str
    _thread: Any

    async def _call_in_engine(self, fn: Callable[[], Any]) -> Any:
        raise NotImplementedError

    async def add_adapter(self, key: str, path: Path) -> None:
        # The weights are read and the LoRA modules built in a worker thread; the engine thread only
        # attaches them between two decode steps (or runs PEFT's loader when the fast path can't).
        prepared = await to_thread_releasing(self._prepare, key, Path(path))
        await self._call_in_engine(lambda: self._load_adapter(key, Path(path), prepared))

    async def remove_adapter(self, key: str) -> None:
        await self._call_in_engine(lambda: self._unload_adapter(key))

    def resident_adapters(self) -> list[str]:
        return sorted(self.stacks.adapters) if self.model is not None else []

    def add_adapter_sync(self, key: str, path: Path) -> None:
        """Load an adapter before the engine thread starts (static adapters at start-up)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("engine is running; use add_adapter")
        self._load_adapter(key, Path(path), self._prepare(key, Path(path)))

    def _prepare(self, key: str, path: Path) -> PreparedAdapter | None:
        try:
            return self.stacks.prepare(path)
        except _LOAD_ERRORS as exc:
            raise _incompatible(key, path, exc) from exc

    def _load_adapter(self, key: str, path: Path, prepared: PreparedAdapter | None = None) -> None:
        if key in self.stacks.adapters:
            raise AdapterIncompatible(f"adapter '{key}' is already loaded")
        if prepared is None and self.quantize == "int8":  # PEFT's loader can't wrap the int8 base layers
            raise AdapterIncompatible(refusal(key, path))
        started = time.perf_counter()
        try:
            if prepared is not None:
                self.stacks.attach(key, prepared)
            else:
                self.stacks.load(key, path)
        except _LOAD_ERRORS as exc:
            self.stacks.discard(key)
            raise _incompatible(key, path, exc) from exc
        how, took_ms = "attached" if prepared is not None else "peft", 1000 * (time.perf_counter() - started)
        logger.info("loaded adapter %s in %.1f ms (%s)", key, took_ms, how)

    def _unload_adapter(self, key: str) -> None:
        if key in self.stacks.adapters:
            self.stacks.discard(key)
            logger.info("unloaded adapter %s", key)
