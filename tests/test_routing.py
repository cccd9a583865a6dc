"""Routing: header, then model, then (for the base id) route rules, then the default adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchboard.config import RouteRule
from switchboard.errors import AdapterNotFound, Forbidden, InvalidRequest
from switchboard.registry import AdapterRef, Registry
from switchboard.routing import RouteContext, Router

BASE_ID = "gemma3-270m"


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    for name in ("pre-sales", "after-sales", "marketing", "shop"):
        reg.add(name, Path(f"/adapters/{name}"))
    reg.add("after-sales", Path("/adapters/after-sales-2"))  # v2 becomes current
    return reg


def ctx(
    model: str = BASE_ID, path: str = "/v1/chat/completions", headers: dict | None = None, api_key: str | None = None
) -> RouteContext:
    return RouteContext(
        model=model, path=path, headers={k.lower(): v for k, v in (headers or {}).items()}, api_key=api_key
    )


class RefRouter(Router):
    """The router, answering just the adapter version (experiments are tested in test_experiments.py)."""

    def route(self, ctx: RouteContext) -> AdapterRef | None:  # type: ignore[override]
        return super().route(ctx).ref


def router(registry: Registry, rules=(), default: str | None = None) -> Router:
    return RefRouter(registry, BASE_ID, list(rules), default)


def test_model_names_adapter_current_version(registry: Registry):
    assert router(registry).route(ctx("after-sales")) == AdapterRef("after-sales", "v2")
    assert router(registry).route(ctx("after-sales@v1")) == AdapterRef("after-sales", "v1")


def test_header_wins_over_model(registry: Registry):
    assert router(registry).route(ctx("pre-sales", headers={"X-Adapter": "marketing"})) == AdapterRef("marketing", "v1")


def test_header_base_forces_bare_model(registry: Registry):
    assert router(registry, default="shop").route(ctx("pre-sales", headers={"X-Adapter": "base"})) is None


def test_base_id_without_rules_or_default_is_bare(registry: Registry):
    assert router(registry).route(ctx()) is None


def test_default_adapter_for_base_id(registry: Registry):
    assert router(registry, default="shop").route(ctx()) == AdapterRef("shop", "v1")


def test_rules_in_order_before_default(registry: Registry):
    rules = [
        RouteRule(adapter="after-sales", path_prefix="/scenarios/after-sales/"),
        RouteRule(adapter="pre-sales", header="X-Scenario", value="pre-sales"),
        RouteRule(adapter="marketing", api_key="sk-marketing"),
        RouteRule(adapter="base", header="X-Raw"),
    ]
    r = router(registry, rules, default="shop")
    assert r.route(ctx(path="/scenarios/after-sales/v1/chat/completions")) == AdapterRef("after-sales", "v2")
    assert r.route(ctx(headers={"X-Scenario": "pre-sales"})) == AdapterRef("pre-sales", "v1")
    assert r.route(ctx(headers={"X-Scenario": "other"})) == AdapterRef("shop", "v1")
    assert r.route(ctx(api_key="sk-marketing")) == AdapterRef("marketing", "v1")
    assert r.route(ctx(headers={"X-Raw": "1"})) is None
    # rules only apply when model is the base id
    assert r.route(ctx("pre-sales", path="/scenarios/after-sales/v1/chat/completions")) == AdapterRef("pre-sales", "v1")


def test_a_key_rule_binds_the_key_whatever_the_header_or_model_names(registry: Registry):
    registry.set_alias("after-sales-prod", "after-sales@v2")
    rules = [RouteRule(adapter="after-sales", api_key="sk-support"), RouteRule(adapter="base", api_key="sk-raw")]
    r = router(registry, rules, default="shop")
    assert r.route(ctx(api_key="sk-support")) == AdapterRef("after-sales", "v2")
    # naming what the rule routes to, by any of its names, is served
    for named in ("after-sales", "after-sales@v2", "after-sales-prod"):
        assert r.route(ctx(named, api_key="sk-support")) == AdapterRef("after-sales", "v2")
        assert r.route(ctx(headers={"X-Adapter": named}, api_key="sk-support")) == AdapterRef("after-sales", "v2")
    for request in (
        ctx("marketing", api_key="sk-support"),
        ctx(headers={"X-Adapter": "marketing"}, api_key="sk-support"),
        ctx(headers={"X-Adapter": "base"}, api_key="sk-support"),
        ctx("after-sales@v1", api_key="sk-support"),  # another version is another adapter
        ctx("after-sales", api_key="sk-raw"),
    ):
        with pytest.raises(Forbidden, match="bound by a route rule to") as err:
            r.route(request)
        assert err.value.status == 403
    assert r.route(ctx(headers={"X-Adapter": "base"}, api_key="sk-raw")) is None
    # other keys, and no key, route as before
    assert r.route(ctx("marketing", api_key="sk-other")) == AdapterRef("marketing", "v1")
    assert r.route(ctx(headers={"X-Adapter": "marketing"})) == AdapterRef("marketing", "v1")


def test_unknown_names_404_with_available(registry: Registry):
    with pytest.raises(AdapterNotFound) as err:
        router(registry).route(ctx("sales"))
    assert "'sales' not found" in err.value.message
    assert BASE_ID in err.value.message and "after-sales" in err.value.message
    assert err.value.status == 404
    with pytest.raises(AdapterNotFound):
        router(registry).route(ctx("after-sales@v7"))
    with pytest.raises(AdapterNotFound) as err:
        router(registry).route(ctx(headers={"X-Adapter": "ghost"}))
    assert err.value.param == "X-Adapter"


def test_adapter_ref_prints_name_at_version():
    assert str(AdapterRef("sales", "v3")) == "sales@v3"
    assert AdapterRef.parse("sales@v3") == ("sales", "v3")
    assert AdapterRef.parse("sales") == ("sales", None)


@pytest.mark.parametrize("name", ["", "base", "../x", "a b", "x" * 65, "-lead"])
def test_registry_refuses_bad_names(name: str):
    with pytest.raises(InvalidRequest):
        Registry().add(name, Path("/x"))


def test_rule_needs_a_condition():
    with pytest.raises(ValueError):
        RouteRule(adapter="x")
    with pytest.raises(ValueError):
        RouteRule(adapter="x", path_prefix="/a", value="v")
