"""One A/B test across replicas (--registry postgresql://...): the same assignment everywhere, feedback
on any replica, one report. Three real servers on the tiny model, one real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx

from .conftest import ServerFactory, wait_for

ADMIN = {"Authorization": "Bearer sk-admin"}


def test_one_experiment_across_three_replicas(postgres_url: str, serve: ServerFactory, root: Path):
    a, b, c = (serve("--registry", postgres_url, adapter_root=root, admin_key="sk-admin") for _ in range(3))
    for adapter in ("alpha", "beta"):
        body = {"name": "sales", "path": str(root / adapter)}
        assert httpx.post(a.url + "/admin/adapters", json=body, headers=ADMIN, timeout=60).status_code == 201
    definition = {"variants": {"sales@v1": 1, "sales@v2": 1}, "sticky": "user"}
    assert httpx.put(a.url + "/admin/experiments/exp", json=definition, headers=ADMIN).status_code == 200

    def chat(server, user: str) -> httpx.Response:
        body = {"model": "exp", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "user": user}
        return httpx.post(server.v1 + "/chat/completions", json=body, timeout=60)

    for server in (b, c):
        wait_for(lambda s=server: chat(s, "probe").status_code == 200, 10, "the experiment on every replica")
    ids = {}
    for n in range(40):
        seen = set()
        for server in (a, b, c):
            r = chat(server, f"user-{n}")
            assert r.status_code == 200
            seen.add(r.headers["x-experiment"])
            ids[server.port] = (r.json()["id"], r.headers["x-experiment"].split("/")[1])
        assert len(seen) == 1, f"user-{n} got {seen}"  # one variant on every replica
    completion, variant = ids[a.port]  # served by A ...

    def feedback() -> httpx.Response | None:  # ... scored on C, once A has flushed its ids (every 1 s)
        r = httpx.post(c.v1 + "/feedback", json={"id": completion, "score": 1}, timeout=30)
        return r if r.status_code == 200 else None

    fed = wait_for(feedback, 5, "C to know A's completion")
    assert fed.json()["variant"] == variant

    def report(server) -> dict:
        return httpx.get(server.url + "/admin/experiments/exp", headers=ADMIN, timeout=30).json()

    def totals(data: dict) -> tuple[int, int]:
        return sum(v["requests"] for v in data["variants"]), sum(v["feedback_count"] for v in data["variants"])

    # 40 users x 3 replicas + the probes, all counted; the feedback sent to C shows in B's report
    wait_for(lambda: totals(report(b)) == (122, 1), 10, "every replica's outcomes in B's report")
    assert report(a)["variants"] == report(b)["variants"] == report(c)["variants"]
    scored = next(v for v in report(b)["variants"] if v["variant"] == variant)
    assert scored["feedback_count"] == 1 and scored["feedback_mean"] == 1.0
    unknown = httpx.post(b.v1 + "/feedback", json={"id": "chatcmpl-nope", "score": 1})
    assert unknown.status_code == 404
