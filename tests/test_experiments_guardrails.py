"""Guardrails (experiments/guardrails.py): a variant whose error rate, p95 latency or mean feedback
crosses its limit relative to the control, with always-valid confidence, is cut off; one that does not is
left alone, also when read again and again. End to end: a variant whose requests fail (the test-fault hook,
faults.py) is cut off on the real server while the control keeps serving without a failure."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from switchboard.experiments import Experiment, assign, sequential
from switchboard.experiments.decision import Summary, VariantData, report
from switchboard.experiments.guardrails import BUCKETS, HORIZON, Guardrails, check

from .conftest import Server, ServerFactory, wait_for

ADMIN = {"Authorization": "Bearer sk-admin"}


def experiment(**limits) -> Experiment:
    return Experiment({"a@v1": 1.0, "b@v1": 1.0, "c@v1": 1.0}, guardrails=Guardrails(**limits))


def requests(n: int, errors: int = 0, latency_bucket: int = 1) -> VariantData:
    return VariantData((n, errors, 0, 0, 0), latency={latency_bucket: n - errors})


def test_a_failing_variant_crosses_the_error_guardrail_and_a_healthy_one_does_not():
    exp = experiment(max_error_rate_increase=0.05)
    data = {"a@v1": requests(30), "b@v1": requests(30, errors=30), "c@v1": requests(30, errors=1)}
    assert [(c["variant"], c["guardrail"]) for c in check(exp, data)] == [("b@v1", "error_rate")]
    assert "error rate 100.0% vs the control's 0.0%" in check(exp, data)[0]["reason"]
    few = {"a@v1": requests(10), "b@v1": requests(10, errors=10), "c@v1": requests(10)}
    assert check(exp, few) == []  # under min_requests (20) nothing is judged


def test_a_slow_variant_crosses_the_latency_guardrail():
    exp = experiment(max_latency_p95_ratio=2)
    index = BUCKETS.index(1)
    data = {"a@v1": requests(150, latency_bucket=1), "b@v1": requests(30, latency_bucket=index), "c@v1": requests(30)}
    found = check(exp, data)
    assert [(c["variant"], c["guardrail"]) for c in found] == [("b@v1", "latency_p95")]
    assert "p95 latency above 0.25 s (30 of 30 requests slower)" in found[0]["reason"]
    assert "at most 0.1 s" in found[0]["reason"]
    # the control's p95 cannot be bounded yet from 20 requests: nothing is cut
    early = {"a@v1": requests(20), "b@v1": requests(20, latency_bucket=index), "c@v1": requests(20)}
    assert check(exp, early) == []


def test_a_worse_scoring_variant_crosses_the_feedback_guardrail():
    rng = np.random.default_rng(0)
    exp = experiment(max_feedback_drop=0.5)

    def scored(mean: float) -> VariantData:
        return VariantData((200, 0, 0, 0, 0), feedback=Summary.of_scores(list(rng.normal(mean, 1, 200))))

    found = check(exp, {"a@v1": scored(4.0), "b@v1": scored(2.5), "c@v1": scored(3.9)})
    assert [(c["variant"], c["guardrail"]) for c in found] == [("b@v1", "feedback")]


def test_a_cut_variant_gets_weight_0_no_traffic_no_promotion_and_the_report_says_so():
    exp = experiment(max_error_rate_increase=0.05).cut_off("b@v1", "error_rate", "broken")
    assert exp.variants["b@v1"] == 0 and exp.cut["b@v1"]["weight"] == 1.0 and exp.cut["b@v1"]["at"] > 0
    assert exp.cut_off("b@v1", "error_rate", "again") is exp
    assert {assign("e", exp, str(u)).variant for u in range(300)} == {"a@v1", "c@v1"}
    again = Experiment.from_dict(exp.as_dict())
    assert again == exp
    rng = np.random.default_rng(1)
    data = {
        v: VariantData((50, 0, 0, 0, 0), feedback=Summary.of_scores(list(rng.normal(m, 1, 300))))
        for v, m in (("a@v1", 3), ("b@v1", 5), ("c@v1", 3))
    }
    out = report("e", exp, data)
    assert out["decision"] != "promote"  # b scores best, but it was cut off
    assert out["guardrails"]["events"] == [{"variant": "b@v1", **exp.cut["b@v1"]}]
    assert out["variants"][1]["cut"]["reason"] == "broken" and out["guardrails"]["crossing"] == []


def test_two_healthy_variants_read_after_every_20_requests_are_rarely_cut():
    """1,000 simulated A/A experiments with a 5 % error rate on both sides, the error guardrail (limit 0)
    checked after every 10 requests per side up to 2,000: a false cut-off stays under alpha."""
    rng = np.random.default_rng(2)
    reads = np.arange(10, 1001, 10)
    errors = [np.cumsum(rng.random((1000, 1000)) < 0.05, axis=1)[:, reads - 1] for _ in range(2)]
    _, low, _ = sequential.rate_difference((errors[0], reads), (errors[1], reads), 0.05, HORIZON)
    cut = ((low > 0) & (reads >= 20)).any(axis=1).mean()
    print(f"\nA/A error guardrail (limit 0, 5 % errors both sides, 100 reads): false cut-off {cut:.1%}")
    assert cut <= 0.05


def test_every_replica_sees_the_same_crossing_from_the_shared_statistics(postgres_url: str):
    from switchboard.experiments import Outcome
    from switchboard.experiments.shared import SharedExperimentStats
    from switchboard.registry.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    a, b = SharedExperimentStats(store, flush_s=60), SharedExperimentStats(store, flush_s=60)
    exp = Experiment({"a@v1": 1.0, "b@v1": 1.0}, guardrails=Guardrails(max_error_rate_increase=0.05))
    for _ in range(30):
        a.record("e", "a@v1", Outcome(ok=True, latency=0.08))
        b.record("e", "b@v1", Outcome(ok=False))
    a.flush()
    b.flush()
    reports = [a.report("e", exp), b.report("e", exp)]
    assert reports[0] == reports[1]
    assert [(c["variant"], c["guardrail"]) for c in reports[0]["guardrails"]["crossing"]] == [("b@v1", "error_rate")]
    for stats in (a, b):
        stats.close()


def metric(server: Server, name: str) -> list:
    text = httpx.get(server.url + "/metrics").text
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_a_failing_variant_is_cut_off_while_the_control_keeps_serving(serve: ServerFactory, root: Path):
    faults = {"beta@v1": {"fail": True}}
    srv = serve(adapter_root=root, admin_key="sk-admin", env={"SWITCHBOARD_TEST_FAULTS": json.dumps(faults)})
    for name in ("alpha", "beta"):
        r = httpx.post(srv.url + "/admin/adapters", json={"name": name, "path": str(root / name)}, headers=ADMIN)
        assert r.status_code == 201, r.text
    definition = {
        "variants": {"alpha": 1, "beta": 1},
        "sticky": "none",
        "guardrails": {"max_error_rate_increase": 0.1},
    }
    assert httpx.put(srv.url + "/admin/experiments/canary", json=definition, headers=ADMIN).status_code == 200
    outcomes: list[tuple[str, int]] = []
    stop = threading.Event()
    body = {"model": "canary", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def client() -> None:
        while not stop.is_set():
            r = httpx.post(srv.v1 + "/chat/completions", json=body, timeout=60)
            outcomes.append((r.headers.get("x-adapter", "unknown"), r.status_code))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:

        def cut() -> dict | None:
            data = httpx.get(srv.url + "/admin/experiments/canary", headers=ADMIN).json()
            return data if data["guardrails"]["events"] else None

        report = wait_for(cut, 120, "the guardrail to cut beta@v1 off", interval=0.5)
        served_before = len(outcomes)
        wait_for(lambda: len(outcomes) >= served_before + 30, 120, "30 more requests")
    finally:
        stop.set()
        for t in threads:
            t.join()
    event = report["guardrails"]["events"][0]
    assert (
        event["variant"] == "beta@v1" and event["guardrail"] == "error_rate" and "error rate 100.0%" in event["reason"]
    )
    rows = {v["variant"]: v for v in report["variants"]}
    assert rows["beta@v1"]["weight"] == 0 and rows["beta@v1"]["cut"]["weight"] == 1
    control = [status for adapter, status in outcomes if adapter == "alpha@v1"]
    assert control and all(status == 200 for status in control)  # 0 failed requests on the control
    # after the cut (and the requests in flight then), every request goes to the control
    late = outcomes[served_before + 5 :]
    assert late and all(adapter == "alpha@v1" and status == 200 for adapter, status in late)
    assert rows["alpha@v1"]["errors"] == 0 and rows["beta@v1"]["errors"] > 0  # the server's own count
    assert all(status == 503 for adapter, status in outcomes if adapter != "alpha@v1")
    events = metric(srv, "switchboard_experiment_guardrail_events_total")
    assert [(s.labels["variant"], s.labels["guardrail"], s.value) for s in events] == [("beta@v1", "error_rate", 1.0)]
    assert "variant beta@v1 cut off by guardrail error_rate" in srv.output()
    listed = httpx.get(srv.url + "/admin/experiments", headers=ADMIN).json()["experiments"][0]
    assert listed["cut"]["beta@v1"]["guardrail"] == "error_rate"
    text = httpx.get(srv.url + "/admin/experiments/canary?format=text", headers=ADMIN).text
    assert "beta@v1 (cut off)" in text and "cut off by guardrail error_rate" in text
