"""The registry across restarts, including `kill -9` in the middle of registrations, and the dir watch."""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path

import httpx

from .conftest import ServerFactory, copy_adapters, wait_for

ADMIN = {"Authorization": "Bearer sk-admin"}
HI = [{"role": "user", "content": "hi"}]


def _snapshot(url: str) -> tuple[list, dict]:
    data = httpx.get(url + "/admin/adapters", headers=ADMIN, timeout=30).json()
    adapters = [
        (a["name"], a["current"], [(v["version"], v["path"], v["pinned"]) for v in a["versions"]])
        for a in data["adapters"]
    ]
    return adapters, data["aliases"]


def test_restart_brings_back_adapters_versions_aliases_and_pins(
    tmp_path: Path, serve: ServerFactory, tiny_adapters: dict[str, Path]
):
    root = copy_adapters(tiny_adapters, tmp_path / "root")
    server = serve(adapter_root=root, state_dir=tmp_path / "state", admin_key="sk-admin")
    post = lambda body: httpx.post(server.url + "/admin/adapters", json=body, headers=ADMIN, timeout=60)  # noqa: E731
    post({"name": "sales", "path": str(root / "alpha")})
    post({"name": "sales", "path": str(root / "beta"), "pinned": True})
    post({"name": "support", "path": str(root / "gamma"), "version": "2026-q4"})
    httpx.put(server.url + "/admin/aliases/prod", json={"target": "sales@v1"}, headers=ADMIN)
    before = _snapshot(server.url)
    body = {"model": "prod", "messages": HI, "max_tokens": 5, "temperature": 0, "ignore_eos": True}
    answer = httpx.post(server.v1 + "/chat/completions", json=body, timeout=60).json()
    server = serve.restart(server)
    assert _snapshot(server.url) == before
    again = httpx.post(server.v1 + "/chat/completions", json=body, timeout=60)
    assert again.headers["x-adapter"] == "sales@v1"
    assert again.json()["choices"] == answer["choices"]


def test_kill_9_during_registrations_keeps_every_acknowledged_one(
    tmp_path: Path, serve: ServerFactory, tiny_adapters: dict[str, Path]
):
    root = tmp_path / "root"
    shutil.copytree(tiny_adapters["alpha"], root / "alpha")
    server = serve(adapter_root=root, state_dir=tmp_path / "state", admin_key="sk-admin")
    acknowledged: list[str] = []
    stop = threading.Event()

    def register_forever() -> None:
        i = 0
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post(
                        server.url + "/admin/adapters",
                        headers=ADMIN,
                        json={"name": f"k{i % 7}", "path": str(root / "alpha")},
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acknowledged.append(r.json()["ref"])
                i += 1

    worker = threading.Thread(target=register_forever)
    worker.start()
    wait_for(lambda: len(acknowledged) >= 12, 120, "some registrations")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    stop.set()
    worker.join()

    state = json.loads((tmp_path / "state" / "registry.json").read_text())  # complete JSON, never half-written
    assert state["format"] == 1
    server = serve.restart(server)  # the same arguments and state dir, after the kill
    adapters, _ = _snapshot(server.url)
    restored = {f"{name}@{v}" for name, _, versions in adapters for v, _, _ in versions}
    assert set(acknowledged) <= restored
    assert len(restored - set(acknowledged)) <= 1  # at most the one committed as the kill landed
    body = {"model": acknowledged[-1], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(server.v1 + "/chat/completions", json=body, timeout=60).status_code == 200


def test_watched_adapter_dir_registers_and_unregisters(
    tmp_path: Path, serve: ServerFactory, tiny_adapters: dict[str, Path]
):
    root = tmp_path / "root"
    root.mkdir()
    watched = tmp_path / "static"
    watched.mkdir()
    server = serve(
        "--watch-adapter-dir",
        adapter_dir=watched,
        adapter_root=root,
        state_dir=tmp_path / "state",
        admin_key="sk-admin",
        env={"SWITCHBOARD_WATCH_INTERVAL_S": "0.2"},
    )
    staging = watched / ".incoming-dropped"
    shutil.copytree(tiny_adapters["gamma"], staging)  # written fully, then renamed into place
    staging.rename(watched / "dropped")

    def listed() -> set[str]:
        return {m["id"] for m in httpx.get(server.v1 + "/models", timeout=10).json()["data"]}

    wait_for(lambda: "dropped" in listed(), 15, "the dropped adapter to be registered")
    body = {"model": "dropped", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(server.v1 + "/chat/completions", json=body, timeout=60).headers["x-adapter"] == "dropped@v1"
    shutil.rmtree(watched / "dropped")
    wait_for(lambda: "dropped" not in listed(), 15, "the removed adapter to be unregistered")
