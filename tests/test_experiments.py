"""A/B experiments, feedback and per-adapter metrics on the real server."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, ServerFactory

ADMIN = {"Authorization": "Bearer sk-admin"}


@pytest.fixture(scope="module")
def server(serve_module: ServerFactory, root: Path) -> Server:
    srv = serve_module(adapter_root=root, admin_key="sk-admin", max_model_len=128)
    for name in ("alpha", "beta", "gamma"):
        r = httpx.post(srv.url + "/admin/adapters", json={"name": name, "path": str(root / name)}, headers=ADMIN)
        assert r.status_code == 201, r.text
    return srv


def chat(server: Server, model: str, user: str | None = None, headers: dict | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "ignore_eos": True}
    if user is not None:
        body["user"] = user
    r = httpx.post(server.v1 + "/chat/completions", json=body, headers=headers or {}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def put(server: Server, name: str, variants: dict) -> httpx.Response:
    return httpx.put(f"{server.url}/admin/experiments/{name}", json={"variants": variants}, headers=ADMIN)


def test_sticky_weighted_assignment(server: Server):
    assert put(server, "tone", {"alpha": 50, "beta@v1": 50}).status_code == 200
    seen = {}
    for i in range(40):
        r = chat(server, "tone", user=f"user-{i}")
        variant = r.headers["x-experiment"].split("/")[1]
        assert r.headers["x-adapter"] == variant
        seen[f"user-{i}"] = variant
    assert set(seen.values()) == {"alpha@v1", "beta@v1"}
    for i in range(0, 40, 7):  # the same user always gets the same variant
        assert chat(server, "tone", user=f"user-{i}").headers["x-adapter"] == seen[f"user-{i}"]
    via_header = chat(server, "tone", headers={"X-User-Id": "user-3"})
    assert via_header.headers["x-adapter"] == seen["user-3"]
    # changing the weights moves only the users near the boundary
    assert put(server, "tone", {"alpha": 60, "beta@v1": 40}).status_code == 200
    moved = sum(chat(server, "tone", user=u).headers["x-adapter"] != v for u, v in seen.items())
    assert moved <= 10


def test_sticky_as_configured_and_the_control_as_written(server: Server):
    body = {"variants": [{"variant": "gamma", "weight": 1}, {"variant": "alpha", "weight": 1}], "sticky": "none"}
    r = httpx.put(f"{server.url}/admin/experiments/draw", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["control"] == "gamma@v1" and [v["variant"] for v in r.json()["variants"]] == [
        "gamma@v1",
        "alpha@v1",
    ]
    assert len({chat(server, "draw", user="one-user").headers["x-adapter"] for _ in range(30)}) == 2
    body = {"variants": {"gamma": 1, "alpha": 1}, "sticky": "header:X-Session-Id"}
    assert httpx.put(f"{server.url}/admin/experiments/session", json=body, headers=ADMIN).status_code == 200
    by_session = {s: chat(server, "session", headers={"X-Session-Id": s}).headers["x-adapter"] for s in "abcdefgh"}
    assert len(set(by_session.values())) == 2
    for s, variant in by_session.items():
        assert chat(server, "session", user=f"other-{s}", headers={"X-Session-Id": s}).headers["x-adapter"] == variant
    for _ in range(3):
        chat(server, "session", user="no-session-header")
    report = httpx.get(server.url + "/admin/experiments/session", headers=ADMIN).json()
    assert [v["variant"] for v in report["variants"]] == ["gamma@v1", "alpha@v1"]
    assert sum(v["fallback_requests"] for v in report["variants"]) == 3
    assert sum(v["requests"] for v in report["variants"]) == 8 + 8 + 3
    bad = httpx.put(
        f"{server.url}/admin/experiments/bad", json={"variants": {"alpha": 1}, "sticky": "cookie"}, headers=ADMIN
    )
    assert bad.status_code == 400 and "header:<Name>" in bad.json()["error"]["message"]


def test_experiment_validation(server: Server):
    assert put(server, "bad", {"nobody": 1}).status_code == 404
    assert put(server, "bad", {"alpha": -1}).status_code == 400
    assert put(server, "alpha", {"beta": 1}).status_code == 409
    assert httpx.get(server.url + "/admin/experiments/missing", headers=ADMIN).status_code == 404
    assert httpx.put(server.url + "/admin/experiments/x", json={"variants": {"alpha": 1}}).status_code == 401


def test_feedback_and_report_with_significance(server: Server):
    assert put(server, "quality", {"alpha": 1, "gamma": 1}).status_code == 200
    for i in range(60):
        r = chat(server, "quality", user=f"q{i}")
        variant = r.headers["x-adapter"]
        score = (0.9 if variant.startswith("gamma") else 0.2) + (i % 3) * 0.05
        fb = httpx.post(server.v1 + "/feedback", json={"id": r.json()["id"], "score": score})
        assert fb.status_code == 200 and fb.json()["variant"] == variant
    assert httpx.post(server.v1 + "/feedback", json={"id": "chatcmpl-nope", "score": 1}).status_code == 404
    assert httpx.post(server.v1 + "/feedback", json={"id": "x"}).status_code == 400
    report = httpx.get(server.url + "/admin/experiments/quality", headers=ADMIN).json()
    rows = {v["variant"]: v for v in report["variants"]}
    assert set(rows) == {"alpha@v1", "gamma@v1"}
    assert sum(v["requests"] for v in rows.values()) == 60 and all(v["errors"] == 0 for v in rows.values())
    assert rows["gamma@v1"]["feedback_mean"] > rows["alpha@v1"]["feedback_mean"]
    low, high = rows["gamma@v1"]["feedback_interval"]
    assert low < rows["gamma@v1"]["feedback_mean"] < high
    assert rows["alpha@v1"]["ttft_p50"] is not None and rows["alpha@v1"]["completion_tokens"] > 0
    assert report["significant"] and report["p_value"] < 0.05 and report["control"] == "alpha@v1"
    assert report["decision"] == "promote" and report["winner"] == "gamma@v1" and "always-valid" in report["method"]
    assert report["recommendation"].startswith("promote gamma@v1")
    md = httpx.get(server.url + "/admin/experiments/quality?format=markdown", headers=ADMIN)
    assert md.headers["content-type"].startswith("text/markdown") and "**decision: promote**" in md.text
    text = httpx.get(server.url + "/admin/experiments/quality?format=text", headers=ADMIN).text
    assert text.startswith("experiment quality (running, control alpha@v1") and "why: gamma@v1 scores" in text

    import os

    from switchboard.cli import main

    os.environ["SWITCHBOARD_ADMIN_KEY"] = "sk-admin"
    try:
        assert main(["experiments", "--url", server.url, "report", "quality"]) == 0
    finally:
        os.environ.pop("SWITCHBOARD_ADMIN_KEY")
    assert httpx.delete(server.url + "/admin/experiments/quality", headers=ADMIN).status_code == 200
    assert (
        httpx.post(
            server.v1 + "/chat/completions", json={"model": "quality", "messages": [{"role": "user", "content": "x"}]}
        ).status_code
        == 404
    )


def test_list_conclude_and_stop_with_the_cli(server: Server, capsys: pytest.CaptureFixture[str]):
    from switchboard.cli import main

    assert httpx.put(server.url + "/admin/aliases/tone-prod", json={"target": "alpha@v1"}, headers=ADMIN).is_success
    cli = ["experiments", "--url", server.url, "--admin-key", "sk-admin"]
    assert main([*cli, "create", "lc", "alpha=3", "beta@v1=1", "--alias", "tone-prod", "--sticky", "none"]) == 0
    assert "control alpha@v1" in capsys.readouterr().out
    assert put(server, "halt", {"gamma": 1, "beta": 1}).status_code == 200
    listed = {
        e["experiment"]: e for e in httpx.get(server.url + "/admin/experiments", headers=ADMIN).json()["experiments"]
    }
    assert listed["lc"]["state"] == "running" and listed["lc"]["alias"] == "tone-prod"
    assert listed["lc"]["variants"] == [{"variant": "alpha@v1", "weight": 3.0}, {"variant": "beta@v1", "weight": 1.0}]
    assert main([*cli, "list"]) == 0
    out = capsys.readouterr().out
    assert "lc" in out and "alpha@v1=3, beta@v1=1" in out and "running" in out
    for _ in range(4):
        chat(server, "lc")
    # conclude: the alias moves to the winner, the experiment ends, its report stays
    assert main([*cli, "conclude", "lc", "beta"]) == 0
    assert "tone-prod -> beta@v1 (was alpha@v1)" in capsys.readouterr().out
    assert httpx.get(server.url + "/admin/adapters", headers=ADMIN).json()["aliases"]["tone-prod"] == "beta@v1"
    assert chat(server, "tone-prod").headers["x-adapter"] == "beta@v1"
    served = chat(server, "lc")  # the winner serves the experiment's name; no longer an experiment
    assert served.headers["x-adapter"] == "beta@v1" and "x-experiment" not in served.headers
    report = httpx.get(server.url + "/admin/experiments/lc", headers=ADMIN).json()
    assert report["state"] == "concluded" and report["concluded"]["winner"] == "beta@v1"
    assert sum(v["requests"] for v in report["variants"]) == 4
    again = httpx.post(server.url + "/admin/experiments/lc/conclude", json={"winner": "alpha"}, headers=ADMIN)
    assert again.status_code == 409
    assert main([*cli, "report", "lc"]) == 0
    assert "experiment lc (concluded, control alpha@v1" in capsys.readouterr().out
    # stop: the control serves
    assert main([*cli, "stop", "halt"]) == 0
    assert chat(server, "halt", user="u").headers["x-adapter"] == "gamma@v1"
    bad = httpx.post(server.url + "/admin/experiments/halt/conclude", json={"winner": "alpha"}, headers=ADMIN)
    assert bad.status_code == 409
    states = {
        e["experiment"]: e["state"]
        for e in httpx.get(server.url + "/admin/experiments", headers=ADMIN).json()["experiments"]
    }
    assert states["lc"] == "concluded" and states["halt"] == "stopped"
    assert main([*cli, "delete", "halt"]) == 0 and main([*cli, "report", "halt"]) == 1


def test_conclude_refuses_a_winner_that_is_not_a_variant(server: Server):
    assert put(server, "pick", {"alpha": 1, "beta": 1}).status_code == 200
    r = httpx.post(server.url + "/admin/experiments/pick/conclude", json={"winner": "gamma"}, headers=ADMIN)
    assert r.status_code == 400 and "alpha@v1, beta@v1" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/admin/experiments/nope/conclude", json={"winner": "gamma"}, headers=ADMIN)
    assert r.status_code == 404


def test_the_walkthrough_of_docs_experiments_runs(server: Server, root: Path):
    import runpy

    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "ab_test.py"
    report = runpy.run_path(str(example))["main"](server.url, "sk-admin", str(root / "alpha"), str(root / "beta"))
    assert report["decision"] == "promote" and report["winner"] == "greeter@v2"
    adapters = httpx.get(server.url + "/admin/adapters", headers=ADMIN).json()
    assert adapters["aliases"]["greeter-prod"] == "greeter@v2"
    listed = {
        e["experiment"]: e["state"]
        for e in httpx.get(server.url + "/admin/experiments", headers=ADMIN).json()["experiments"]
    }
    assert listed["greeter-ab"] == "concluded"


def samples(server: Server) -> list:
    text = httpx.get(server.url + "/metrics").text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_are_labelled_per_adapter_and_bounded(server: Server):
    chat(server, "beta")
    httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "no-such-adapter", "messages": [{"role": "user", "content": "x"}]},
    )
    found = samples(server)
    requests = [s for s in found if s.name == "switchboard_requests_total" and s.labels.get("adapter") == "beta"]
    assert requests and requests[0].labels["version"] == "v1" and requests[0].labels["status"] == "200"
    assert any(
        s.name == "switchboard_time_to_first_token_seconds_count" and s.labels.get("adapter") == "beta" for s in found
    )
    assert not any(s.labels.get("adapter") == "no-such-adapter" for s in found)
    assert any(s.name == "switchboard_resident_adapters" and s.value >= 3 for s in found)
    # a removed version's series disappear
    root = Path(httpx.get(server.url + "/admin/adapters", headers=ADMIN).json()["adapters"][0]["versions"][0]["path"])
    httpx.post(server.url + "/admin/adapters", json={"name": "temp", "path": str(root)}, headers=ADMIN)
    chat(server, "temp")
    assert any(s.labels.get("adapter") == "temp" for s in samples(server))
    assert httpx.delete(server.url + "/admin/adapters/temp", headers=ADMIN).status_code == 200
    assert not any(s.labels.get("adapter") == "temp" for s in samples(server))
    changes = [s for s in samples(server) if s.name == "switchboard_registry_changes_total"]
    assert {s.labels["action"] for s in changes} >= {"register", "remove"}


def test_experiment_survives_restart(tmp_path: Path, serve: ServerFactory, tiny_adapters: dict[str, Path]):
    root = tmp_path / "root"
    shutil.copytree(tiny_adapters["alpha"], root / "alpha")
    srv = serve(adapter_root=root, admin_key="sk-admin", state_dir=tmp_path / "state")
    httpx.post(srv.url + "/admin/adapters", json={"name": "alpha", "path": str(root / "alpha")}, headers=ADMIN)
    assert put(srv, "persisted", {"alpha": 1}).status_code == 200
    srv = serve.restart(srv)
    assert chat(srv, "persisted", user="u").headers["x-experiment"] == "persisted/alpha@v1"


def test_every_metric_is_documented():
    from switchboard.metrics import Metrics

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    m = Metrics()
    for names in m.registry._collector_to_names.values():
        assert any(f"`{name}`" in docs for name in names), f"{sorted(names)} not in docs/metrics.md"


def test_experiments_are_listed_as_models(server: Server):
    import openai

    assert put(server, "listed", {"beta": 1, "alpha": 3}).status_code == 200
    client = openai.OpenAI(base_url=server.v1, api_key="unused")
    card = {m.id: m for m in client.models.list().data}["listed"]
    assert card.parent is not None and card.root == "beta@v1"  # the control: the first variant as written
    extra = card.model_extra["experiment"]
    assert extra["state"] == "running" and extra["control"] == "beta@v1"
    assert extra["variants"] == [{"variant": "beta@v1", "weight": 1.0}, {"variant": "alpha@v1", "weight": 3.0}]
    assert client.models.retrieve("listed").model_extra["experiment"] == extra
    assert chat(server, "listed").headers["x-experiment"].startswith("listed/")  # callable by that name
    httpx.post(server.url + "/admin/experiments/listed/conclude", json={"winner": "alpha"}, headers=ADMIN)
    assert client.models.retrieve("listed").root == "alpha@v1"
