"""A server's resident memory, as loadgen samples it: `tree_rss_mib` (a process and its descendants, from /proc)
and `PeakRss` (its peak while a block runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import harness


def tree_rss_mib(pid: int) -> float:
    """Resident memory of process `pid` and its descendants (vLLM runs its engine in a child), in MiB, each read by
    `harness.rss_mib`; 0 once it is gone. Linux /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            total += harness.rss_mib(current)
        except (OSError, ValueError):
            continue  # gone, or a zombie without memory
    return total


class PeakRss:
    """`async with PeakRss(pid) as rss:` samples `tree_rss_mib(pid)` every `every_s` while the block runs (in a thread:
    it reads /proc), `rss.mib` is the peak."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid, self.every_s, self.mib = pid, every_s, 0.0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.mib = max(self.mib, await asyncio.to_thread(tree_rss_mib, self.pid))
            await asyncio.sleep(self.every_s)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.mib = max(self.mib, tree_rss_mib(self.pid))
