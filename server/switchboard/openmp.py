"""One OpenMP thread team at a time: torch work off the engine thread gives its team back when done.

Every thread that runs a parallel torch op (oneDNN, fbgemm, ATen's parallel_for) becomes the master of an
OpenMP team whose workers live as long as that thread does. GNU OpenMP (the runtime in torch's x86 wheels)
counts the workers of all teams, and once they outnumber the CPUs it stops letting idle workers spin: every
parallel region then wakes its workers from sleep. On a 2-core machine, a model loaded in one of asyncio's
worker threads (a team of two that stays) made the engine thread's decode GEMVs 2-3x slower at one row: a
packed bf16 640x2048 projection 40 -> 120 µs, fbgemm's fp16 one 45 -> 125 µs; a whole one-row decode step
29 -> 40 ms (docs/benchmarks.md). So threads other than the engine's run their torch work through
`to_thread_releasing` (or call `release_pool` when done), which hands the team back
(`omp_pause_resource_all`, OpenMP 5.0): only the engine thread keeps one.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch  # loads the OpenMP runtime this module talks to

logger = logging.getLogger(__name__)

T = TypeVar("T")
OMP_PAUSE_SOFT = 1  # omp_pause_soft: free the calling thread's team (its workers exit), keep the runtime
_RUNTIMES = ("libgomp", "libiomp5", "libomp")  # GNU (torch's Linux wheels), Intel, LLVM


@functools.cache
def _pause() -> Callable[[int], int] | None:
    """`omp_pause_resource_all` of the OpenMP runtime loaded in this process, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if any(name in line for name in _RUNTIMES)}
    except OSError:  # not Linux: nothing to release (other runtimes' workers are not counted this way)
        return None
    ours = os.path.dirname(torch.__file__)  # torch's own copy first: other wheels bundle theirs (sentencepiece)
    for path in sorted(paths, key=lambda path: (not path.startswith(ours), path)):
        try:
            fn = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    logger.info("no OpenMP runtime with omp_pause_resource_all in this process: teams are not released")
    return None


def release_pool() -> bool:
    """Give back the calling thread's OpenMP team (its workers exit); whether the runtime did."""
    fn = _pause()
    return fn is not None and fn(OMP_PAUSE_SOFT) == 0


def _releasing(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    finally:
        release_pool()


async def to_thread_releasing(fn: Callable[..., T], *args: Any) -> T:
    """`asyncio.to_thread(fn, *args)`, the worker thread's OpenMP team given back when fn returns."""
    return await asyncio.to_thread(_releasing, fn, *args)
