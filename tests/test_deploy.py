"""Static checks of deploy/: the compose file, Prometheus and Grafana provisioning, and the dashboard.

There is no Docker engine here, so nothing is started: the files are parsed and checked against the repo (every
mounted path exists), the server's settings (every SWITCHBOARD_* variable is a setting) and the server's real
/metrics exposition (every metric a dashboard query names is one the server exposes). The images are checked in
tests/test_images.py, the GPU smoke script in tests/test_gpu_smoke.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from switchboard.config import Settings

from tests.deploy_support import DEPLOY, DOCKERFILE, REPO, exposed  # noqa: F401  (exposed is a fixture used below)

COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "switchboard.json"
DATASOURCE_UID = "prometheus"


# --- helpers ---------------------------------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes, short or long syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out.append((source, target))
    return out


def _targets(service: dict) -> dict[str, str]:
    return {target: source for source, target in _mounts(service)}


def _container_ports(service: dict) -> set[str]:
    return {str(p).split(":")[-1] if not isinstance(p, dict) else str(p["target"]) for p in service.get("ports", [])}


def _environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return {k: (v if sep else None) for k, sep, v in (item.partition("=") for item in env)}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels inside collapsed rows
    return out


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def _variable_queries(dashboard: dict) -> list[str]:
    out = []
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        out.append(query["query"] if isinstance(query, dict) else query)
    return out


METRIC = re.compile(r"\bswitchboard_[A-Za-z0-9_:]*")
SELECTOR = re.compile(r"\b(switchboard_[A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


# --- docker compose --------------------------------------------------------------------------------------------


def test_compose_services():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"switchboard", "prometheus", "grafana"}

    sb = services["switchboard"]
    assert sb["build"]["context"] == ".."
    assert sb["build"]["dockerfile"] == "deploy/Dockerfile"
    assert ((DEPLOY / sb["build"]["context"]) / sb["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert "8000" in _container_ports(sb)
    env = _environment(sb)
    assert "SWITCHBOARD_ADMIN_KEY" in env
    assert env["SWITCHBOARD_ADMIN_KEY"] in (None, "${SWITCHBOARD_ADMIN_KEY}"), "the admin key comes from the shell"
    targets = _targets(sb)
    assert {"/data/state", "/data/cache"} <= set(targets)
    for name in env:
        if name.startswith("SWITCHBOARD_"):
            assert name.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{name} is no setting"
    test = sb["healthcheck"]["test"]
    assert any("/ready" in part for part in test)
    assert "8000" in " ".join(test)

    prom = services["prometheus"]
    assert prom["image"].startswith("prom/prometheus")
    assert "9090" in _container_ports(prom)
    assert _targets(prom)["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"

    graf = services["grafana"]
    assert graf["image"].startswith("grafana/grafana")
    assert "3000" in _container_ports(graf)
    assert _targets(graf)["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert "./grafana/dashboards" in _targets(graf).values()
    genv = _environment(graf)
    assert genv["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert genv["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # no well-known password, and the unauthenticated services are not published on every interface
    assert genv["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    for service in (prom, graf):
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), service["ports"]


def test_compose_mounts_exist_and_volumes_are_declared():
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, _target in _mounts(service):
            if source.startswith((".", "/", "~")):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"{name}: mounted {source} is not in the repo"
                assert path.is_relative_to(REPO), f"{name}: mounted {source} is outside the repo"
            else:
                assert source in declared, f"{name}: volume {source} is not declared at the top level"


def test_compose_dashboard_provider_path_is_mounted():
    """The provider's path inside Grafana is where the compose file mounts deploy/grafana/dashboards."""
    provider_files = list((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
    paths = {p["options"]["path"] for f in provider_files for p in yaml.safe_load(f.read_text())["providers"]}
    mounts = _targets(_compose()["services"]["grafana"])
    assert paths
    for path in paths:
        assert (DEPLOY / mounts[path]).resolve() == DASHBOARD.parent


@pytest.mark.parametrize("backend", ["compose_spec", "compose_pydantic"])
def test_compose_validates_against_the_compose_spec(backend):
    """Validated by a Compose Specification implementation from PyPI where one is installed."""
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    text = COMPOSE.read_text()
    if backend == "compose_spec":  # the compose_spec Rust crate's validating parser
        from compose_spec import PyCompose

        compose = PyCompose.from_yaml(text)
        compose.validate()
        assert sorted(compose.service_names()) == ["grafana", "prometheus", "switchboard"]
    else:  # pydantic models generated from the official compose-spec JSON schema (additional properties forbidden)
        from compose_pydantic import ComposeSpecificationFactory, TextSpecStrategy

        spec = ComposeSpecificationFactory(TextSpecStrategy())(text)
        assert set(spec.services) == {"switchboard", "prometheus", "grafana"}


# --- Prometheus and Grafana provisioning -----------------------------------------------------------------------


def test_prometheus_scrapes_switchboard():
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["switchboard"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert "switchboard:8000" in targets
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert interval == "5s"


def test_grafana_provisioning():
    files = sorted(GRAFANA_PROVISIONING.rglob("*.y*ml"))
    assert files
    docs = {f.relative_to(GRAFANA_PROVISIONING).parts[0]: yaml.safe_load(f.read_text()) for f in files}
    assert all(doc["apiVersion"] == 1 for doc in docs.values())
    (datasource,) = docs["datasources"]["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = docs["dashboards"]["providers"]
    assert provider["type"] == "file"


# --- the dashboard ---------------------------------------------------------------------------------------------


def test_dashboard_shape():
    dash = _dashboard()
    assert dash["uid"] == "switchboard"
    assert 36 <= dash["schemaVersion"] <= 41
    names = [v["name"] for v in dash["templating"]["list"]]
    assert {"adapter", "experiment"} <= set(names)
    for query in _variable_queries(dash):
        assert query.startswith("label_values(")
    panels = _panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), f"panel {panel['title']!r} has no query"
        assert all(t.get("refId") for t in targets)
        assert len({t["refId"] for t in targets}) == len(targets)
        for ds in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            if ds is not None:
                assert ds == {"type": "prometheus", "uid": DATASOURCE_UID}, f"panel {panel['title']!r}: datasource"
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_dashboard_metric_names_are_exposed(exposed):  # noqa: F811
    dash = _dashboard()
    used = {name for text in [*_exprs(dash), *_variable_queries(dash)] for name in METRIC.findall(text)}
    assert used
    unknown = sorted(used - set(exposed))
    assert not unknown, f"the dashboard queries metrics the server does not expose: {unknown}"


def test_dashboard_label_matchers_exist_on_their_metrics(exposed):  # noqa: F811
    dash = _dashboard()
    for text in [*_exprs(dash), *_variable_queries(dash)]:
        for name, body in SELECTOR.findall(text):
            labels = set(MATCHER.findall(body))
            assert labels <= exposed[name], f"{name} has no label(s) {sorted(labels - exposed[name])}: {text}"
    for query in _variable_queries(dash):
        name, label = re.fullmatch(r"label_values\((switchboard_\w+)(?:\{[^}]*\})?,\s*(\w+)\)", query).groups()
        assert label in exposed[name]


def test_dashboard_histogram_quantiles_are_over_buckets_by_le():
    for expr in _exprs(_dashboard()):
        if "histogram_quantile" in expr:
            assert "_bucket" in expr, expr
            for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
                assert "le" in {g.strip() for g in group.split(",")}, expr


def test_dashboard_covers_the_issue(exposed):  # noqa: F811
    """Per adapter and per variant: requests, TTFT/latency percentiles, tokens/s, errors; the engine's gauges."""
    exprs = _exprs(_dashboard())
    text = "\n".join(exprs)
    for name in [
        "switchboard_requests_total",
        "switchboard_completion_tokens_total",
        "switchboard_time_to_first_token_seconds_bucket",
        "switchboard_request_latency_seconds_bucket",
        "switchboard_inter_token_latency_seconds_bucket",
        "switchboard_requests_in_flight",
        "switchboard_batch_size",
        "switchboard_resident_adapters",
        "switchboard_adapter_loads_total",
        "switchboard_adapter_evictions_total",
        "switchboard_adapter_load_seconds_bucket",
        "switchboard_registry_changes_total",
        "switchboard_feedback_score_total",
        "switchboard_feedback_total",
        "switchboard_experiment_guardrail_events_total",
    ]:
        assert name in exposed, f"the server no longer exposes {name}"
        assert name in text, f"no panel shows {name}"
    assert any('status!~"2.."' in e for e in exprs), "no error-rate query"
    for by in ("adapter, version", "experiment, variant"):
        for metric in ("switchboard_time_to_first_token_seconds_bucket", "switchboard_requests_total"):
            assert any(by in e and metric in e for e in exprs), f"no {metric} query by ({by})"
