"""The shared registry goes away and comes back: inference never fails for it, changes get a 503 with
Retry-After, /ready says degraded, and the replicas recover on their own. PostgreSQL is real; the
outage is real too: the replicas reach it through a TCP relay that the test cuts and restores."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from .conftest import Server, ServerFactory, free_port, wait_for

ADMIN = {"Authorization": "Bearer sk-admin"}


class Relay:
    """A TCP relay 127.0.0.1:port -> target that can be cut (every connection dropped, no new ones)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, []
            if self._listener is not None:
                doomed.append(self._listener)
                self._listener = None
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{port}"))


def outage_drill(url: str, serve: ServerFactory, root: Path, cut: Callable[[], None], back: Callable[[], None]) -> None:
    """Two replicas on `url` under steady traffic; `cut` takes PostgreSQL away, `back` returns it. Checks:
    0 failed inference requests, 503 + Retry-After for a change meanwhile, /ready degraded, recovery."""
    a, b = (serve("--registry", url, adapter_root=root, admin_key="sk-admin") for _ in range(2))

    def register(server: Server, name: str) -> httpx.Response:
        body = {"name": name, "path": str(root / "alpha")}
        return httpx.post(server.url + "/admin/adapters", json=body, headers=ADMIN, timeout=60)

    assert register(a, "sales").status_code == 201
    wait_for(lambda: "sales" in httpx.get(b.v1 + "/models").text, 10, "b to see sales")

    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def traffic() -> None:
        nonlocal served
        body = {"model": "sales", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                for server in (a, b):
                    r = client.post(server.v1 + "/chat/completions", json=body)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    served += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1)
        cut()
        refused = register(a, "support")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "registry_unavailable"
        assert refused.headers["retry-after"] == "5"
        wait_for(lambda: httpx.get(b.url + "/ready").json()["status"] == "degraded", 15, "b degraded")
        assert httpx.get(a.url + "/ready").status_code == 200  # still takes traffic
        time.sleep(2)
        back()
        since = time.monotonic()
        # a replica retries a lost connection after connect_timeout (5 s) + backoff (up to 10 s): the bound
        # is ~15 s after the outage ends, plus a reconcile; 30 s leaves room for a loaded 2-core machine
        wait_for(lambda: register(a, "support").status_code == 201, 30, "registrations to work again")
        wait_for(lambda: "support" in httpx.get(b.v1 + "/models").text, 30, "b to see support")
        print(f"recovered {time.monotonic() - since:.2f}s after PostgreSQL was reachable again")
        wait_for(lambda: httpx.get(b.url + "/ready").json()["status"] == "ready", 30, "b ready again")
        metrics = httpx.get(b.url + "/metrics").text
    finally:
        stop.set()
        worker.join()
    assert served > 0 and not failures, failures[:3]
    samples = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("switchboard_registry_")
    }
    assert samples["switchboard_registry_store_up"] == 1 and samples["switchboard_registry_reconnects_total"] >= 1


def test_connections_to_postgres_cut_mid_traffic(postgres_url: str, serve: ServerFactory, root: Path):
    parts = urlsplit(postgres_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        outage_drill(through(postgres_url, relay.port), serve, root, relay.cut, relay.restore)
    finally:
        relay.cut()


@dataclass
class OwnPostgres:
    port: int
    ctl: Callable[[str], None]  # "start" | "stop"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of this test's own (initdb as the postgres user), so it can be stopped and
    started. Skips where root, runuser or initdb are missing."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if os.geteuid() != 0 or not initdb or not pg_ctl or not shutil.which("runuser"):
        pytest.skip("needs root, runuser and PostgreSQL's initdb/pg_ctl to run a cluster of its own")
    data = Path(tempfile.mkdtemp(prefix="sb-pg-"))
    shutil.chown(data, "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, initdb, "-D", str(data / "db"), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)  # fmt: skip
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"

    def ctl(action: str) -> None:
        args = [pg_ctl, "-D", str(data / "db"), "-w", "-l", str(data / "log")]
        args += ["-o", options, "start"] if action == "start" else ["-m", "fast", "stop"]
        subprocess.run([*as_postgres, *args], check=True, capture_output=True)

    ctl("start")
    try:
        yield OwnPostgres(port, ctl)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ctl("stop")
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_stopped_and_started_mid_traffic(
    own_postgres: Callable[[str], None], serve: ServerFactory, root: Path
):
    """pg_ctl stop / start of the cluster the replicas use (the fast shutdown ends every session)."""
    url = f"postgresql://postgres@127.0.0.1:{own_postgres.port}/postgres"
    outage_drill(url, serve, root, lambda: own_postgres.ctl("stop"), lambda: own_postgres.ctl("start"))
