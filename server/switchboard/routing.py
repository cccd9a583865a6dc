"""Request → adapter: which concrete adapter version (or the bare base) serves a request.

First match wins: the `X-Adapter` header; then `model` naming an adapter (or NAME@VERSION); when
`model` is the base model's id: the configured route rules, then the default adapter, else the base.
A route rule with `api_key` binds that key: a request with it that names anything else than the adapters
its rules route to (by header or `model`) is refused (403), never silently routed elsewhere.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from .config import RouteRule
from .errors import Forbidden
from .experiments import RUNNING, assign, sticky_key
from .registry import BASE, AdapterRef, Registry, not_found

ADAPTER_HEADER = "x-adapter"


@dataclass(frozen=True)
class RouteContext:
    """What routing may look at: nothing else of the HTTP request reaches it."""

    model: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    api_key: str | None = None
    user: str | None = None  # sticky key for experiments (OpenAI `user`, else the configured header)


@dataclass(frozen=True)
class Route:
    """Where a request goes: one adapter version (None = bare base), and the experiment that chose it."""

    ref: AdapterRef | None
    experiment: str = ""
    variant: str = ""
    assignment: str = ""  # how the experiment chose: keyed, random or fallback (experiments.assignment)


class Router:
    def __init__(
        self, registry: Registry, base_model_id: str, rules: list[RouteRule], default_adapter: str | None
    ) -> None:
        self.registry = registry
        self.base_model_id = base_model_id
        self.rules = rules
        self.default_adapter = default_adapter

    def _named(self, text: str, param: str, ctx: RouteContext) -> Route:
        if text == BASE:
            return Route(None)
        ref = self.registry.lookup(text)
        if ref is not None:
            return Route(ref)
        experiment = self.registry.experiment(text)
        if experiment is not None and experiment.state != RUNNING:  # over: its winner (else control) serves
            ref = self.registry.lookup(experiment.serving)
            if ref is None:
                raise not_found("adapter", experiment.serving, self.registry.available(), param=param)
            return Route(ref)
        if experiment is not None:
            chosen = assign(text, experiment, sticky_key(experiment.sticky, ctx.user, ctx.headers))
            return Route(chosen.ref, text, chosen.variant, chosen.basis)
        available = [self.base_model_id, *self.registry.available(), *sorted(self.registry.experiments())]
        raise not_found("adapter", text, available, param=param)

    def _rule_matches(self, rule: RouteRule, ctx: RouteContext) -> bool:
        if rule.path_prefix is not None and not ctx.path.startswith(rule.path_prefix):
            return False
        if rule.header is not None:
            value = ctx.headers.get(rule.header.lower())
            if value is None or (rule.value is not None and value != rule.value):
                return False
        return rule.api_key is None or _same_key(ctx.api_key, rule.api_key)

    def _check_bound(self, text: str, ctx: RouteContext) -> None:
        """403 when the request's key is bound by route rules to adapters that `text` is not one of."""
        bound = [r.adapter for r in self.rules if r.api_key is not None and _same_key(ctx.api_key, r.api_key)]
        if not bound or text in bound:
            return
        ref = self.registry.lookup(text) if text != BASE else None
        if ref is not None and any(self.registry.lookup(b) == ref for b in bound if b != BASE):
            return
        raise Forbidden(
            f"this API key is bound by a route rule to {', '.join(bound)}; it may not name '{text[:64]}' "
            "(send the base model's id, or one of those)",
            code="model_forbidden",
        )

    def route(self, ctx: RouteContext) -> Route:
        """Resolve the request to one adapter version (ref None = the bare base model)."""
        header = ctx.headers.get(ADAPTER_HEADER)
        if header:
            self._check_bound(header.strip(), ctx)
            return self._named(header.strip(), "X-Adapter", ctx)
        if ctx.model != self.base_model_id:
            self._check_bound(ctx.model, ctx)
            return self._named(ctx.model, "model", ctx)
        for rule in self.rules:
            if self._rule_matches(rule, ctx):
                return self._named(rule.adapter, "model", ctx)
        if self.default_adapter:
            return self._named(self.default_adapter, "model", ctx)
        return Route(None)


def _same_key(sent: str | None, configured: str) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), configured.encode())
