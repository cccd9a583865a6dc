"""Rendering, looking up and validating the Helm chart's objects, for tests/test_helm.py (not collected).

Renderer: helm-python-sdk, Helm v4's own Go SDK (the engine of `helm template` and `helm lint`) in a PyPI wheel.
Validator: kubernetes-validate's strict schemas of the Kubernetes API for built-in kinds, and the CRD schemas
pinned in deploy/helm/schemas/ (made strict the same way) for ServiceMonitor and InferencePool.
A missing tool skips the test that needs it, unless SWITCHBOARD_REQUIRE_DEPLOY_TOOLS is set (CI), where it fails.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.deploy_support import missing_tool

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "switchboard"
SCHEMAS = REPO / "deploy" / "helm" / "schemas"
KUBERNETES_VERSION = "1.37"  # the newest schemas kubernetes-validate 1.37.0 ships
RELEASE, NAMESPACE = "sb", "llm"
TOOLS = {  # import name -> what CI installs
    "helm_python": "helm-python-sdk==0.2.2",
    "kubernetes_validate": "kubernetes-validate==1.37.0",
    "jsonschema": "jsonschema==4.26.0",  # kubernetes-validate's validator, also used for the CRD schemas
}
# (apiVersion, kind) -> the pinned schema of a custom resource (deploy/helm/schemas/README.md says where from)
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("inference.networking.k8s.io/v1", "InferencePool"): "inference.networking.k8s.io/inferencepool_v1.json",
}


def tool(module: str) -> ModuleType:
    """Import one of TOOLS, or skip (fail, under SWITCHBOARD_REQUIRE_DEPLOY_TOOLS) saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing_tool(f"{TOOLS[module]} is not installed ({exc}); pip install {TOOLS[module]}")


def render(helm: ModuleType, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The chart's objects as `helm template sb deploy/helm/switchboard -n llm [-f values]` prints them."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


# --- looking up objects ----------------------------------------------------------------------------------------


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def server_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", f"{RELEASE}-switchboard")


def pod_container(deployment: dict[str, Any]) -> dict[str, Any]:
    """The one container of a Deployment's pod."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def epp_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The endpoint picker's config file, read from the ConfigMap mounted where its --config-file points."""
    epp = one(objects, "Deployment", f"{RELEASE}-switchboard-epp")
    args = pod_container(epp)["args"]
    path = Path(args[args.index("--config-file") + 1])
    (mount,) = [m for m in pod_container(epp)["volumeMounts"] if m["mountPath"] == str(path.parent)]
    (volume,) = [v for v in epp["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = one(objects, "ConfigMap", volume["configMap"]["name"])
    return yaml.safe_load(configmap["data"][path.name])


# --- schemas ---------------------------------------------------------------------------------------------------


def strict_schema(schema: Any) -> Any:
    """A CRD's structural schema as kubeconform's --strict reads it: objects with declared properties take no others
    (unless they preserve unknown fields), so a misspelled field fails as it would on `kubectl apply`."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    return schema


def validate(kubernetes_validate: ModuleType, obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        schema = strict_schema(json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text()))
        schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API server, as for CRDs
        validator = tool("jsonschema").Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors
        )
    else:  # raises on an invalid object, and on a kind it has no schema for (SchemaNotFoundError)
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
