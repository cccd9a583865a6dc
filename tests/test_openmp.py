"""Threads other than the engine's give their OpenMP team back (server/switchboard/openmp.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch
from switchboard import openmp
from switchboard.engine.hf import HFEngine

needs_runtime = pytest.mark.skipif(
    openmp._pause() is None or torch.get_num_threads() < 2,
    reason="no OpenMP runtime with omp_pause_resource_all here, or one thread: no team to give back",
)


def os_threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def parallel_work() -> None:
    torch.randn(2048, 2048).mul(2.0).sum()  # large enough for ATen to open a parallel region


@needs_runtime
def test_a_thread_s_team_outlives_its_work_until_released():
    """A thread's parallel work leaves its team's workers behind (what slowed the engine thread down), and
    `release_pool` ends them."""
    workers = torch.get_num_threads() - 1
    seen: dict[str, set[str]] = {}

    def worker() -> None:
        fresh = os_threads()  # a new thread: no team yet
        parallel_work()
        seen["team"] = os_threads() - fresh  # its workers (and any thread started meanwhile elsewhere)
        assert openmp.release_pool()
        deadline = time.monotonic() + 5
        while len(seen["team"] - os_threads()) < workers and time.monotonic() < deadline:
            time.sleep(0.01)  # the workers leave on their own schedule
        seen["left"] = seen["team"] - os_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(seen["team"]) >= workers, seen
    assert len(seen["left"]) >= workers, seen


async def test_to_thread_releasing_returns_the_result_and_releases(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(openmp, "release_pool", lambda: calls.append(threading.current_thread().name) or True)
    assert await openmp.to_thread_releasing(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        await openmp.to_thread_releasing(lambda: 1 / 0)
    assert len(calls) == 2 and threading.current_thread().name not in calls  # in the worker, even on an error


async def test_the_engine_loads_off_thread_and_gives_the_team_back(monkeypatch, tiny_model_dir: Path):
    """start() loads the model in a worker thread that releases its team; only the engine thread keeps one."""
    released: list[int] = []
    loaded: list[int] = []
    monkeypatch.setattr(openmp, "release_pool", lambda: released.append(threading.get_ident()) or True)
    engine = HFEngine(tiny_model_dir, model_id="tiny", dtype="float32", max_model_len=64)
    original = engine.load_model
    monkeypatch.setattr(engine, "load_model", lambda: (loaded.append(threading.get_ident()), original())[1])
    await engine.start()
    try:
        assert loaded and released == loaded and loaded[0] != threading.get_ident()
        assert engine._thread is not None and engine._thread.ident not in released
    finally:
        await engine.shutdown()
