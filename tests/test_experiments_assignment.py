"""Assignment and definitions of experiments, without a server: stickiness as configured (user, header,
none), the fallback for a request without its key, and the control = the first variant as written, in
both stores."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from switchboard.errors import InvalidRequest
from switchboard.experiments import FALLBACK, Experiment, ExperimentStats, Outcome, assign, define, sticky_key
from switchboard.experiments.assignment import KEYED, RANDOM
from switchboard.registry import Registry
from switchboard.registry.store import JsonStore
from switchboard.routing import RouteContext, Router


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    for n in range(10):
        reg.add("sales", Path(f"/adapters/sales-{n}"))  # sales@v1 .. sales@v10
    return reg


def route(reg: Registry, model: str, user: str | None = None, headers: dict | None = None):
    ctx = RouteContext(model, "/v1/chat/completions", {k.lower(): v for k, v in (headers or {}).items()}, user=user)
    return Router(reg, "base-model", [], None).route(ctx)


def test_the_control_is_the_first_variant_as_written_not_the_alphabetically_first(registry: Registry):
    experiment = define(registry, "exp", {"sales@v10": 1, "sales@v2": 1})
    assert experiment.control == "sales@v10" and list(experiment.variants) == ["sales@v10", "sales@v2"]
    stats = ExperimentStats()
    stats.record("exp", "sales@v2", Outcome(ok=True))
    report = stats.report("exp", experiment)
    assert [row["variant"] for row in report["variants"]] == ["sales@v10", "sales@v2"]


def test_sticky_user_keeps_a_user_on_one_variant_and_spreads_users_by_weight(registry: Registry):
    registry.set_experiment("exp", define(registry, "exp", {"sales@v1": 3, "sales@v2": 1}, "user"))
    first = {u: route(registry, "exp", user=u).variant for u in map(str, range(2000))}
    assert all(route(registry, "exp", user=u).variant == v for u, v in list(first.items())[:200])
    share = Counter(first.values())["sales@v1"] / len(first)
    assert 0.72 < share < 0.78  # 3:1
    assert route(registry, "exp", user="7").assignment == KEYED


def test_sticky_user_without_a_user_is_a_random_fallback_counted_apart(registry: Registry):
    registry.set_experiment("exp", define(registry, "exp", {"sales@v1": 1, "sales@v2": 1}, "user"))
    routes = [route(registry, "exp") for _ in range(200)]
    assert {r.assignment for r in routes} == {FALLBACK}
    assert {r.variant for r in routes} == {"sales@v1", "sales@v2"}
    stats = ExperimentStats()
    for r in routes[:5]:
        stats.record("exp", r.variant, Outcome(ok=True, fallback=True))
    stats.record("exp", "sales@v1", Outcome(ok=True))
    rows = stats.report("exp", registry.experiment("exp"))["variants"]
    assert sum(row["fallback_requests"] for row in rows) == 5 and sum(row["requests"] for row in rows) == 6


def test_sticky_none_draws_every_request_even_with_a_user(registry: Registry):
    registry.set_experiment("exp", define(registry, "exp", {"sales@v1": 1, "sales@v2": 1}, "none"))
    routes = [route(registry, "exp", user="same-user") for _ in range(100)]
    assert {r.variant for r in routes} == {"sales@v1", "sales@v2"}
    assert {r.assignment for r in routes} == {RANDOM}


def test_sticky_header_keys_on_that_header_and_falls_back_without_it(registry: Registry):
    registry.set_experiment("exp", define(registry, "exp", {"sales@v1": 1, "sales@v2": 1}, "header:X-Session-Id"))
    by_session = {s: route(registry, "exp", headers={"X-Session-Id": s}).variant for s in map(str, range(60))}
    assert set(by_session.values()) == {"sales@v1", "sales@v2"}
    for session, variant in by_session.items():  # the user does not matter, the session does
        again = route(registry, "exp", user=f"someone-{session}", headers={"x-session-id": session})
        assert again.variant == variant and again.assignment == KEYED
    assert route(registry, "exp", user="u1").assignment == FALLBACK


def test_sticky_values_are_checked():
    assert sticky_key("header:X-Session-Id", "u", {"x-session-id": "s"}) == "s"
    assert sticky_key("user", "", {}) is None and sticky_key("none", "u", {}) is None
    for bad in ("header", "header:", "header:bad name", "users", "cookie:x"):
        with pytest.raises(InvalidRequest, match="sticky must be"):
            define(Registry(), "exp", {}, bad)


def test_weights_are_laid_out_by_name_so_a_user_keeps_the_variant_of_before_the_control_change(registry: Registry):
    a = Experiment({"sales@v2": 1.0, "sales@v1": 1.0})
    b = Experiment({"sales@v1": 1.0, "sales@v2": 1.0})
    for user in map(str, range(100)):
        assert assign("exp", a, user).variant == assign("exp", b, user).variant


def test_a_cut_off_variant_gets_no_requests_and_all_cut_leaves_the_control():
    experiment = Experiment({"sales@v1": 1.0, "sales@v2": 0.0})
    assert {assign("exp", experiment, None, random.Random(n)).variant for n in range(50)} == {"sales@v1"}
    nobody = Experiment({"sales@v3": 0.0, "sales@v1": 0.0})
    assert assign("exp", nobody, "u").variant == "sales@v3"


def test_the_json_store_keeps_the_order_and_old_files_keep_theirs(tmp_path: Path, registry: Registry):
    reg = Registry(JsonStore(tmp_path))
    for n in range(10):
        reg.add("sales", Path(f"/adapters/sales-{n}"))
    reg.set_experiment("exp", define(reg, "exp", {"sales@v10": 1, "sales@v2": 2, "sales@v1": 1}))
    again = Registry(JsonStore(tmp_path))
    assert list(again.experiment("exp").variants) == ["sales@v10", "sales@v2", "sales@v1"]
    state = json.loads((tmp_path / "registry.json").read_text())
    # a file written before ordered variants: a mapping, its order as stored, and the old "header" value
    state["experiments"]["old"] = {"variants": {"sales@v9": 1, "sales@v3": 1}, "sticky": "header", "updated": 1.0}
    (tmp_path / "registry.json").write_text(json.dumps(state))
    old = Registry(JsonStore(tmp_path)).experiment("old")
    assert old.control == "sales@v9" and old.sticky == "user"


def test_the_postgres_store_keeps_the_order(postgres_url: str):
    from switchboard.registry.postgres import PostgresStore

    a, b = Registry(PostgresStore(postgres_url)), Registry(PostgresStore(postgres_url))
    for n in range(10):
        a.add("sales", Path(f"/adapters/sales-{n}"))
    a.set_experiment("exp", define(a, "exp", {"sales@v10": 1, "sales@v2": 2, "sales@v1": 1}, "header:X-Session"))
    b.refresh()
    assert list(b.experiment("exp").variants) == ["sales@v10", "sales@v2", "sales@v1"]
    assert b.experiment("exp") == a.experiment("exp")


def test_the_shared_statistics_count_fallback_requests_apart(postgres_url: str):
    from switchboard.experiments.shared import SharedExperimentStats
    from switchboard.registry.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    replicas = [SharedExperimentStats(store, flush_s=60), SharedExperimentStats(store, flush_s=60)]
    experiment = Experiment({"sales@v10": 1.0, "sales@v2": 1.0})
    replicas[0].record("exp", "sales@v2", Outcome(ok=True, fallback=True))
    replicas[1].record("exp", "sales@v2", Outcome(ok=True))
    replicas[1].flush()
    reports = [r.report("exp", experiment) for r in replicas]
    assert reports[0] == reports[1]
    assert [(row["variant"], row["requests"], row["fallback_requests"]) for row in reports[0]["variants"]] == [
        ("sales@v10", 0, 0),
        ("sales@v2", 2, 1),
    ]
    for r in replicas:
        r.close()
