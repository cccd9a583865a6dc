"""The registry in PostgreSQL (--registry postgresql://...): what replicas sharing one database rely on.
Real PostgreSQL only (the `postgres_url` fixture gives each test its own database)."""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from switchboard.errors import Conflict
from switchboard.registry import AdapterRef, Registry
from switchboard.registry.postgres import MIGRATIONS, PostgresStore, redact

from .conftest import Server, ServerFactory, wait_for


def test_two_replicas_registering_one_name_at_once_get_distinct_versions(postgres_url: str):
    replicas = [Registry(PostgresStore(postgres_url)) for _ in range(2)]
    got: list[list[AdapterRef]] = [[], []]

    def register(i: int) -> None:
        for n in range(15):
            got[i].append(replicas[i].add("sales", Path(f"/shared/{i}-{n}")))

    threads = [threading.Thread(target=register, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refs = got[0] + got[1]
    assert len(set(refs)) == 30 and {r.version for r in refs} == {f"v{n}" for n in range(1, 31)}
    for replica in replicas:
        replica.refresh()
    assert replicas[0].describe() == replicas[1].describe()
    # name@vN means the same files on every replica
    for ref in refs:
        assert replicas[0].path(ref) == replicas[1].path(ref)


def test_a_change_applies_to_what_other_replicas_committed(postgres_url: str):
    a, b = Registry(PostgresStore(postgres_url)), Registry(PostgresStore(postgres_url))
    a.add("sales", Path("/shared/a"))
    # b has not seen sales@v1, yet its change is made on the latest state
    b.set_alias("prod", "sales@v1")
    with pytest.raises(Conflict):
        b.add("sales", Path("/shared/b"), "v1")
    assert b.lookup("prod") == AdapterRef("sales", "v1")
    a.refresh()
    assert a.aliases() == {"prod": "sales@v1"}


def test_a_failed_sync_is_tried_again_without_waiting_for_the_next_change(postgres_url: str):
    """The watch calls on_change again a second later when it reports failure (a pool still
    reconnecting after an outage), not at the next change or the 30 s reconcile."""
    store = PostgresStore(postgres_url)
    calls: list[tuple[int, float]] = []
    stop = threading.Event()

    def on_change(generation: int) -> bool:
        calls.append((generation, time.monotonic()))
        if len(calls) >= 3:
            stop.set()
        return len(calls) >= 2  # the first sync fails

    watcher = threading.Thread(target=store.watch, args=(on_change, stop), kwargs={"reconcile_s": 60})
    watcher.start()
    try:
        wait_for(lambda: len(calls) >= 2, 10, "the failed sync to be tried again")
        Registry(store).add("sales", Path("/shared/a"))  # the next change is still seen
        wait_for(lambda: len(calls) >= 3, 10, "the change after the retry")
    finally:
        stop.set()
        watcher.join(timeout=10)
        store.close()
    assert calls[0][0] == calls[1][0] < calls[2][0]
    assert 0.5 <= calls[1][1] - calls[0][1] < 5


def _open_store(url: str) -> int:
    PostgresStore(url).close()
    return 0


def test_replicas_starting_at_once_on_an_empty_database_make_one_schema(postgres_url: str):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open_store, [postgres_url] * 4) == [0, 0, 0, 0]
    with psycopg.connect(postgres_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM sb_schema ORDER BY version")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_a_database_from_a_newer_switchboard_is_refused(postgres_url: str):
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO sb_schema (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(RuntimeError, match="newer than this Switchboard"):
        PostgresStore(postgres_url)


def test_logs_never_show_the_password():
    assert redact("postgresql://sb:s3cret@db.internal:5433/registry") == "postgresql://sb@db.internal:5433/registry"


def test_replica_servers_share_versions_and_a_restart_brings_them_back(
    postgres_url: str, serve: ServerFactory, root: Path
):
    """Two real servers on one database: the second registration of a name is v2 on the other replica
    (not a second v1, not a 409), and a restarted replica serves what either one registered."""
    admin = {"Authorization": "Bearer sk-admin"}
    a, b = (serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin") for _ in range(2))
    first = httpx.post(
        a.url + "/admin/adapters", json={"name": "sales", "path": str(root / "alpha")}, headers=admin, timeout=60
    )
    second = httpx.post(
        b.url + "/admin/adapters", json={"name": "sales", "path": str(root / "beta")}, headers=admin, timeout=60
    )
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert (first.json()["ref"], second.json()["ref"]) == ("sales@v1", "sales@v2")
    answer = httpx.post(
        b.v1 + "/chat/completions",
        json={"model": "sales", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=60,
    )
    assert answer.headers["x-adapter"] == "sales@v2"
    a = serve.restart(a)
    listed = httpx.get(a.url + "/admin/adapters", headers=admin, timeout=30).json()["adapters"]
    assert [(x["name"], x["current"], [v["version"] for v in x["versions"]]) for x in listed] == [
        ("sales", "v2", ["v1", "v2"])
    ]


def test_a_change_on_one_replica_is_served_by_the_others_within_a_second(
    postgres_url: str, serve: ServerFactory, root: Path
):
    """LISTEN/NOTIFY: a version registered on A answers on B and C; an alias moved on B moves A and C;
    a version removed on C stops routing everywhere. Prints the convergence time."""
    admin = {"Authorization": "Bearer sk-admin"}
    replicas = [serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin") for _ in range(3)]
    a, b, c = replicas
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def served(server: Server, model: str) -> str | None:
        r = httpx.post(server.v1 + "/chat/completions", json={"model": model, **chat}, timeout=60)
        return r.headers.get("x-adapter") if r.status_code == 200 else None

    def converge(what: str, check: Callable[[Server], bool]) -> list[float]:
        started, took = time.monotonic(), []
        for server in (a, b, c):
            wait_for(lambda s=server: check(s), 10, what, interval=0.02)
            took.append(time.monotonic() - started)
        print(f"{what}: converged on every replica in {max(took) * 1000:.0f} ms")
        return took

    r = httpx.post(
        a.url + "/admin/adapters", json={"name": "sales", "path": str(root / "alpha")}, headers=admin, timeout=60
    )
    assert r.status_code == 201
    took = converge("register on A", lambda s: served(s, "sales") == "sales@v1")
    r = httpx.post(
        b.url + "/admin/adapters", json={"name": "sales", "path": str(root / "beta")}, headers=admin, timeout=60
    )
    assert r.json()["ref"] == "sales@v2"
    assert httpx.put(b.url + "/admin/aliases/prod", json={"target": "sales@v1"}, headers=admin).status_code == 200
    took += converge("alias on B", lambda s: served(s, "prod") == "sales@v1" and served(s, "sales") == "sales@v2")
    assert httpx.delete(c.url + "/admin/adapters/sales@v2", headers=admin, timeout=60).status_code == 200
    took += converge("remove on C", lambda s: served(s, "sales") == "sales@v1")
    assert max(took) < 5, took  # generous bound for a loaded 2-core CI box; the figure itself is printed
    assert all(httpx.get(s.url + "/ready").json().get("unavailable") is None for s in replicas)


def test_a_version_this_replica_cannot_read_gets_a_503_here_and_serves_elsewhere(
    postgres_url: str, serve: ServerFactory, root: Path, tmp_path: Path
):
    a = serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin")
    b = serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin")
    # registered through a store directly, as a replica with its own disk would: the path exists nowhere here
    Registry(PostgresStore(postgres_url)).add("ghost", tmp_path / "only-on-another-disk")
    wait_for(lambda: "ghost@v1" in httpx.get(b.url + "/ready").json().get("unavailable", {}), 10, "b to refuse ghost")
    r = httpx.post(b.v1 + "/chat/completions", json={"model": "ghost", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and "cannot be served by this replica" in r.json()["error"]["message"]
    base = httpx.get(b.v1 + "/models").json()["data"][0]["id"]
    ok = httpx.post(
        b.v1 + "/chat/completions",
        json={"model": base, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200  # everything else keeps serving
    assert "ghost@v1" in httpx.get(a.url + "/ready").json()["unavailable"]
    assert "switchboard_adapters_unavailable 1.0" in httpx.get(b.url + "/metrics").text


def test_kill_9_of_a_replica_mid_registrations_loses_nothing_acknowledged(
    postgres_url: str, serve: ServerFactory, root: Path
):
    admin = {"Authorization": "Bearer sk-admin"}
    a, b = (serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin") for _ in range(2))
    acknowledged: list[str] = []
    stop = threading.Event()

    def register_forever() -> None:
        with httpx.Client(timeout=30) as client:
            for i in itertools.count():
                if stop.is_set():
                    return
                body = {"name": f"k{i % 5}", "path": str(root / "alpha")}
                try:
                    r = client.post(a.url + "/admin/adapters", headers=admin, json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acknowledged.append(r.json()["ref"])

    worker = threading.Thread(target=register_forever)
    worker.start()
    wait_for(lambda: len(acknowledged) >= 10, 120, "some registrations on A")
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    stop.set()
    worker.join()

    def on_b() -> set[str]:
        adapters = httpx.get(b.url + "/admin/adapters", headers=admin, timeout=30).json()["adapters"]
        return {v["ref"] for x in adapters for v in x["versions"]}

    wait_for(lambda: set(acknowledged) <= on_b(), 10, "every acknowledged registration on B")
    assert len(on_b() - set(acknowledged)) <= 1  # at most the one committed as the kill landed


def test_an_unreachable_registry_fails_the_start_with_a_clear_message():
    with pytest.raises(RuntimeError, match=r"cannot reach the registry at postgresql://sb@127\.0\.0\.1:9/x"):
        PostgresStore("postgresql://sb:secret@127.0.0.1:9/x", timeout_s=1)
