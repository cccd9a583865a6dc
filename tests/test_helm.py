"""The Helm chart (deploy/helm/switchboard), rendered by real Helm and validated object by object, without a cluster.

Renderer: helm-python-sdk, Helm v4's own Go SDK (the engine of `helm template` and `helm lint`) in a PyPI wheel.
Validator: kubernetes-validate's strict schemas of the Kubernetes API for built-in kinds, and the CRD schemas
pinned in deploy/helm/schemas/ (made strict the same way) for ServiceMonitor and InferencePool. Beyond the
schemas: the container's flags, env and rendered config load as the server's Settings, the objects point at each
other (Service, HPA, ServiceMonitor, InferencePool, endpoint picker), and every metric the HPA and the endpoint
picker read is one the server exports.

A missing tool skips these tests, unless SWITCHBOARD_REQUIRE_DEPLOY_TOOLS is set (CI), where it fails them.
The rendering, lookup and validation helpers are in tests/helm_support.py.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from switchboard.cli import build_parser, settings_overrides
from switchboard.config import load_settings

from tests.deploy_support import _dockerfile_env, exposed  # noqa: F401  (exposed is a fixture used below)
from tests.helm_support import (
    CHART,
    CRD_SCHEMAS,
    KUBERNETES_VERSION,
    NAMESPACE,
    RELEASE,
    SCHEMAS,
    epp_config,
    one,
    pod_container,
    render,
    server_deployment,
    tool,
    validate,
)

SECRETS = {  # what the referenced Secrets hold in these tests
    "SWITCHBOARD_ADMIN_KEY": "admin-secret",
    "SWITCHBOARD_API_KEYS": '["key-1", "key-2"]',
    "SWITCHBOARD_REGISTRY": "postgresql://switchboard:pw@db.internal/switchboard",
}


def _gpu_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values-gpu.yaml").read_text())


def _all_on(base: dict[str, Any], adapters: dict[str, Any]) -> dict[str, Any]:
    """Every optional object and setting on, over `base`."""
    values = copy.deepcopy(base)
    values.update(
        {
            "adapters": adapters,
            "autoscaling": {"enabled": True},
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "inferencePool": {"enabled": True},
            "secrets": {
                "adminKey": {"existingSecret": "switchboard-admin"},
                "apiKeys": {"existingSecret": "switchboard-api"},
                "registry": {"existingSecret": "switchboard-db", "key": "url"},
            },
            "imagePullSecrets": [{"name": "registry-login"}],
            "podAnnotations": {"example.com/team": "llm"},
            "extraEnv": [{"name": "LOG_FORMAT", "value": "json"}],
            "extraVolumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}],
            "extraVolumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        }
    )
    return values


VALUE_SETS: dict[str, dict[str, Any] | None] = {
    "default": None,
    "gpu": _gpu_values(),
    "all-on-gpu": _all_on(_gpu_values(), {"source": "create"}),
    "all-on-cpu": _all_on({"cache": {"writable": True}}, {"source": "existingClaim", "existingClaim": "adapters"}),
}
OPTIONAL_KINDS = {"PersistentVolumeClaim", "HorizontalPodAutoscaler", "ServiceMonitor", "InferencePool"}


# --- tools -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> ModuleType:
    return tool("helm_python")


@pytest.fixture(scope="module")
def kubernetes_validate() -> ModuleType:
    return tool("kubernetes_validate")


@pytest.fixture(scope="module")
def jsonschema() -> ModuleType:
    return tool("jsonschema")


@pytest.fixture(scope="module")
def rendered(helm) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, values) for name, values in VALUE_SETS.items()}


def test_pinned_schemas_are_documented():
    readme = (SCHEMAS / "README.md").read_text()
    for path in CRD_SCHEMAS.values():
        assert (SCHEMAS / path).is_file(), path
        assert path in readme, f"deploy/helm/schemas/README.md does not say where {path} came from"


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_rendered_object_validates(rendered, kubernetes_validate, jsonschema, values):
    objects = rendered[values]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    if values.startswith("all-on"):
        assert OPTIONAL_KINDS - {"PersistentVolumeClaim"} <= kinds
        assert {"ServiceAccount", "Role", "RoleBinding"} <= kinds
    else:
        assert not kinds & OPTIONAL_KINDS, "an optional object rendered without its flag"
    for obj in objects:
        assert obj["metadata"].get("namespace") in (None, NAMESPACE)
        validate(kubernetes_validate, obj)


def test_the_validators_reject_broken_objects(rendered, kubernetes_validate, jsonschema):
    """The checks above can fail: a wrong type, a misspelled field and a misspelled CRD field are all refused."""
    objects = rendered["all-on-gpu"]
    deployment = copy.deepcopy(server_deployment(objects))
    pod_container(deployment)["ports"][0]["containerPort"] = "http"
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(server_deployment(objects))
    pod_container(deployment)["readinesProbe"] = pod_container(deployment).pop("readinessProbe")
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    for kind, field in [("ServiceMonitor", "endpoint"), ("InferencePool", "targetPort")]:
        obj = copy.deepcopy(one(objects, kind))
        obj["spec"][field] = obj["spec"].get(field + "s")
        with pytest.raises(AssertionError, match=field):
            validate(kubernetes_validate, obj)


def test_chart_lints_clean(helm):
    for values in VALUE_SETS.values():
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
        assert not report["errors"], report
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
        assert not problems, problems


# --- the server container --------------------------------------------------------------------------------------


def _container_settings(objects: list[dict[str, Any]], tmp_path: Path, monkeypatch) -> Any:
    """Settings as `switchboard serve` builds them in the pod: image ENV < container env < config file < flags."""
    deployment = server_deployment(objects)
    container = pod_container(deployment)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert container["command"] == ["switchboard"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "serve"

    # the config file is the ConfigMap's key, mounted where --config says
    config_dir, config_name = str(Path(args.config).parent), Path(args.config).name
    configmap = one(objects, "ConfigMap", volumes[mounts[config_dir]]["configMap"]["name"])
    config = tmp_path / config_name
    config.write_text(configmap["data"][config_name])

    for name in [n for n in os.environ if n.startswith("SWITCHBOARD_")]:
        monkeypatch.delenv(name)
    env = dict(_dockerfile_env())
    for item in container["env"]:
        if "valueFrom" in item:
            assert "secretKeyRef" in item["valueFrom"], item
            env[item["name"]] = SECRETS[item["name"]]
        else:
            env[item["name"]] = item["value"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(config, **settings_overrides(args))
    assert str(settings.state_dir) in mounts, "the registry file must be on a volume"
    if "SWITCHBOARD_CACHE_DIR" in {item["name"] for item in container["env"]}:
        assert str(settings.cache_dir) in mounts, "a writable cache must be a volume"
    return settings


@pytest.mark.parametrize("values", VALUE_SETS)
def test_container_starts_with_the_rendered_settings(rendered, tmp_path, monkeypatch, values):
    settings = _container_settings(rendered[values], tmp_path, monkeypatch)
    gpu = "gpu" in values
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.engine == ("vllm" if gpu else "hf")
    assert settings.state_dir == Path("/data/state")
    image_cache = Path(_dockerfile_env()["SWITCHBOARD_CACHE_DIR"])  # the model converted at build time
    assert settings.cache_dir == (Path("/data/cache") if values == "all-on-cpu" else image_cache)
    assert settings.default_adapter == "shop"
    assert settings.engine_args.get("quantization") == ("fp8" if gpu else None)
    if values.startswith("all-on"):
        assert settings.adapter_dir == Path("/adapters")
        assert settings.effective_adapter_roots() == [Path("/adapters")]
        assert settings.admin_key.get_secret_value() == SECRETS["SWITCHBOARD_ADMIN_KEY"]
        assert [k.get_secret_value() for k in settings.api_keys] == ["key-1", "key-2"]
        assert settings.registry == SECRETS["SWITCHBOARD_REGISTRY"]
    else:
        assert settings.adapter_dir == Path("/app/adapters"), "without a volume: the adapters in the image"
        assert settings.admin_key is None and settings.api_keys == [] and settings.registry is None


def test_probes_and_draining(rendered):
    for values, objects in rendered.items():
        deployment = server_deployment(objects)
        container = pod_container(deployment)
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, values
        # the server listens only after its model loaded: the startup probe waits for that, then liveness counts
        startup = container["startupProbe"]
        assert startup["httpGet"] == {"path": "/health", "port": "http"}, values
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= (600 if "gpu" in values else 180), f"{values}: {budget} s to load the model"
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, values
        assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in container["ports"]
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        sleep = int(command[1])
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        delay, finish = float(env["SWITCHBOARD_DRAIN_DELAY_S"]), float(env["SWITCHBOARD_SHUTDOWN_GRACE_S"])
        assert finish >= 120, "in-flight requests get as long as the longest request"
        assert sleep >= 5 and grace > sleep + delay + finish, "the pod's grace covers preStop, drain and finish"


def test_gpu_values_switch_image_engine_and_resources(rendered):
    cpu, gpu = pod_container(server_deployment(rendered["default"])), pod_container(server_deployment(rendered["gpu"]))
    assert cpu["image"] == "switchboard:0.3.2"
    assert gpu["image"] == "switchboard:cuda"
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert cpu["args"][cpu["args"].index("--engine") + 1] == "hf"
    assert gpu["args"][gpu["args"].index("--engine") + 1] == "vllm"
    spec = server_deployment(rendered["gpu"])["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in gpu["volumeMounts"]


def test_adapter_volume_choices(rendered, helm):
    def adapter_volume(objects):
        volumes = server_deployment(objects)["spec"]["template"]["spec"]["volumes"]
        return next((v for v in volumes if v["name"] == "adapters"), None)

    assert adapter_volume(rendered["default"]) is None
    assert adapter_volume(rendered["all-on-cpu"])["persistentVolumeClaim"] == {
        "claimName": "adapters",
        "readOnly": True,
    }
    created = one(rendered["all-on-gpu"], "PersistentVolumeClaim")
    assert adapter_volume(rendered["all-on-gpu"])["persistentVolumeClaim"]["claimName"] == created["metadata"]["name"]
    assert created["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not [o for o in rendered["all-on-cpu"] if o["kind"] == "PersistentVolumeClaim"]
    for bad, message in [
        ({"adapters": {"source": "s3"}}, "adapters.source must be none, existingClaim or create"),
        ({"adapters": {"source": "existingClaim"}}, "adapters.existingClaim is required"),
        ({"config": {"port": 9000}}, "config.port is set by the chart"),
    ]:
        with pytest.raises(helm.HelmError, match=re.escape(message)):
            render(helm, bad)


# --- autoscaling, monitoring, the InferencePool ----------------------------------------------------------------


def test_hpa_scales_the_server_on_queue_depth(rendered):
    for values in ("all-on-gpu", "all-on-cpu"):
        objects = rendered[values]
        hpa, deployment = one(objects, "HorizontalPodAutoscaler"), server_deployment(objects)
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"], target["name"]) == (
            "apps/v1",
            "Deployment",
            deployment["metadata"]["name"],
        )
        ((metric),) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] == "switchboard_queue_depth"
        assert metric["pods"]["target"]["type"] == "AverageValue"
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert server_deployment(rendered["default"])["spec"]["replicas"] == 1


def test_service_monitor_scrapes_the_server_service(rendered):
    objects = rendered["all-on-cpu"]
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", f"{RELEASE}-switchboard")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    others = [o for o in objects if o["kind"] == "Service" and o is not service]
    assert others and not any(selector.items() <= o["metadata"]["labels"].items() for o in others)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_inference_pool_selects_the_server_pods_and_names_its_endpoint_picker(rendered):
    objects = rendered["all-on-gpu"]
    pool, server = one(objects, "InferencePool"), server_deployment(objects)
    epp = one(objects, "Deployment", f"{RELEASE}-switchboard-epp")
    pods = server["spec"]["template"]["metadata"]["labels"]
    selector = pool["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pods.items()
    assert not selector.items() <= epp["spec"]["template"]["metadata"]["labels"].items(), "the picker is no endpoint"
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [pod_container(server)["ports"][0]["containerPort"]]

    ref = pool["spec"]["endpointPickerRef"]
    assert ref.get("kind", "Service") == "Service" and "port" in ref  # the CRD's CEL rule
    epp_service = one(objects, "Service", ref["name"])
    assert ref["port"]["number"] in {p["port"] for p in epp_service["spec"]["ports"]}
    assert epp_service["spec"]["selector"].items() <= epp["spec"]["template"]["metadata"]["labels"].items()
    args = pod_container(epp)["args"]
    assert args[args.index("--pool-name") + 1] == pool["metadata"]["name"]
    assert args[args.index("--pool-namespace") + 1] == NAMESPACE
    assert args[args.index("--pool-group") + 1] == pool["apiVersion"].split("/")[0]

    # the picker's identity may read its pool and the pods
    account = epp["spec"]["template"]["spec"]["serviceAccountName"]
    binding = one(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    role = one(objects, "Role", binding["roleRef"]["name"])
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("inference.networking.k8s.io", "inferencepools"), ("", "pods")} <= granted

    config = epp_config(objects)
    assert (config["apiVersion"], config["kind"]) == ("inference.networking.x-k8s.io/v1alpha1", "EndpointPickerConfig")
    plugins = {p.get("name", p["type"]) for p in config["plugins"]}
    used = {p["pluginRef"] for profile in config["schedulingProfiles"] for p in profile["plugins"]}
    used |= {s["pluginRef"] for s in config["data"]["sources"]}
    used |= {e["pluginRef"] for s in config["data"]["sources"] for e in s["extractors"]}
    assert used <= plugins, f"unknown plugin refs {used - plugins}"
    assert "lora-affinity-scorer" in used


def _metric_names_read(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Metric name -> who reads it: the HPA's Pods metrics and the endpoint picker's model-server metrics."""
    names = {}
    for metric in one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]:
        names[metric["pods"]["metric"]["name"]] = "HPA"
    (extractor,) = [p for p in epp_config(objects)["plugins"] if p["type"] == "core-metrics-extractor"]
    for engine in extractor["parameters"]["engineConfigs"]:
        for field, spec in engine.items():
            if field.endswith("Spec") and spec:
                names[spec.split("{")[0]] = f"endpoint picker {field}"
    return names


def test_metrics_the_autoscaler_and_endpoint_picker_read_are_exported(rendered, exposed):  # noqa: F811
    read = _metric_names_read(rendered["all-on-gpu"])
    assert set(read) == {
        "switchboard_queue_depth",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:lora_requests_info",
    }
    missing = {name: who for name, who in read.items() if name not in exposed}
    assert not missing, f"read but not exported by switchboard.metrics.Metrics: {missing}"
    # the picker reads the adapters from these labels of the LoRA info metric
    lora_labels = {"running_lora_adapters", "waiting_lora_adapters", "max_lora"}
    assert lora_labels <= exposed["vllm:lora_requests_info"], exposed["vllm:lora_requests_info"]
