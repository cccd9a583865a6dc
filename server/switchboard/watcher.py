"""Optional watch of the adapter dir: a PEFT dir that appears (written fully, then renamed into place)
is registered under its dir name within a scan interval; a dir that disappears is unregistered."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SwitchboardError
from .registry import Registry
from .validation import peft_dirs

if TYPE_CHECKING:
    from .services import Services

logger = logging.getLogger(__name__)


class AdapterDirWatcher:
    def __init__(self, services: Services, directory: Path, interval_s: float) -> None:
        self.services = services
        self.directory = Path(directory)
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failed: dict[str, float] = {}  # dir name -> mtime of a version that failed validation

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _scan(self) -> dict[str, tuple[Path, float]]:
        return {name: (path.resolve(), path.stat().st_mtime) for name, path in peft_dirs(self.directory).items()}

    async def _run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except Exception:  # noqa: BLE001 - a bad scan must not stop watching
                logger.exception("adapter dir scan failed")
            await asyncio.sleep(self.interval_s)

    async def scan_once(self) -> None:
        registry = self.services.registry
        found = await asyncio.to_thread(self._scan)
        watched = {n for n in registry.names() if self._inside(registry, n)}
        for name, (path, mtime) in found.items():
            current = registry.current(name)
            entry = registry.entry(current) if current else None
            if entry is not None and entry.path == path:
                continue
            if self._failed.get(name) == mtime:
                continue
            try:
                await self.services.register(name, path, trusted=True)
                self._failed.pop(name, None)
            except SwitchboardError as exc:
                self._failed[name] = mtime
                logger.error("watched adapter %s refused: %s", name, exc.message)
        for name in watched - set(found):
            try:
                await self.services.unregister(name)
            except SwitchboardError as exc:
                logger.error("could not unregister vanished adapter %s: %s", name, exc.message)

    def _inside(self, registry: Registry, name: str) -> bool:
        current = registry.current(name)
        entry = registry.entry(current) if current else None
        return entry is not None and entry.path.parent == self.directory.resolve()
