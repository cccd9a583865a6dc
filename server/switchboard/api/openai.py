"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models[/{id}]."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..engine.base import GenerationRequest, SamplingParams
from ..engine.constraints import grammar
from ..errors import AdapterNotFound, InvalidRequest, ShuttingDown
from ..experiments.definitions import CONCLUDED, Experiment
from ..registry import AdapterRef, not_found
from ..routing import Route, RouteContext
from ..services import Services
from ..tenants import may_use
from .auth import Caller, InferenceKey
from .deps import ServicesDep
from .openapi import errors
from .response_schemas import SERVED_BY, SSE, ChatCompletion, Completion, ModelCard, ModelList
from .responses import Prepared, new_request_id, respond
from .schemas import ChatCompletionRequest, CompletionRequest, SamplingFields
from .tenancy import admit, check_route
from .tools import ToolPlan, prompt_messages
from .tools import plan as tool_plan

router = APIRouter()
T = TypeVar("T")

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def prepare(
    services: Services,
    body: SamplingFields,
    prompt_ids: list[int],
    default_max: int,
    route: Route,
    id_prefix: str,
    started: float,
    tools: ToolPlan | None = None,
) -> Prepared:
    """Check the prompt and completion budget against the context window; build the engine request."""
    limit = services.engine.max_model_len
    if len(prompt_ids) >= limit:
        raise InvalidRequest(
            f"this model's maximum context length is {limit} tokens, but the prompt has {len(prompt_ids)} "
            "tokens; shorten the messages",
            param="messages",
            code="context_length_exceeded",
        )
    asked = body.requested_max_tokens()
    room = limit - len(prompt_ids)
    if asked is not None and asked > room:
        raise InvalidRequest(
            f"this model's maximum context length is {limit} tokens; you asked for {len(prompt_ids) + asked} "
            f"({len(prompt_ids)} in the prompt, {asked} for the completion); lower max_tokens to {room} or less",
            param="max_tokens",
            code="context_length_exceeded",
        )
    max_tokens = asked if asked is not None else min(default_max, room)
    if route.ref is not None and (defaults := services.settings.adapter_sampling.get(route.ref.name)) is not None:
        body = body.with_defaults(defaults.model_dump(exclude_none=True))
    if body.min_tokens > max_tokens:
        raise InvalidRequest(
            f"min_tokens ({body.min_tokens}) must not exceed max_tokens ({max_tokens})", param="min_tokens"
        )
    vocab = len(services.engine.tokenizer)
    bias = body.bias()
    for param, ids in (("logit_bias", [t for t, _ in bias]), ("stop_token_ids", body.stop_token_ids or [])):
        if any(t >= vocab for t in ids):
            raise InvalidRequest(f"{param}: token ids must lie in [0, {vocab})", param=param)
    schema = tools.schema() if tools is not None and tools.choice != "auto" else body.json_schema()
    if schema is not None:
        grammar(schema)  # an unusable schema is the client's 400, here rather than in the engine
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        ignore_eos=body.ignore_eos,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        repetition_penalty=body.repetition_penalty,
        logit_bias=bias,
        top_k=max(body.top_k or 0, 0),
        min_p=body.min_p,
        min_tokens=body.min_tokens,
        stop_token_ids=tuple(body.stop_token_ids or ()),
        skip_special_tokens=body.skip_special_tokens,
        logprobs=body.logprob_count(),
        json_schema=schema,
    )
    n = body.n or 1
    most = services.settings.max_batch_size
    if n > most:
        raise InvalidRequest(f"n must be at most {most} (the server's max_batch_size), got {n}", param="n")
    adapter = str(route.ref) if route.ref is not None else None
    request_id = new_request_id(id_prefix)
    gens = tuple(
        GenerationRequest(
            request_id if n == 1 else f"{request_id}-{i}",
            prompt_ids,
            # choice i draws from seed + i: distinct choices, each reproducible (and choice 0 is the n=1 answer)
            replace(params, seed=params.seed + i) if params.seed is not None else params,
            adapter=adapter,
        )
        for i in range(n)
    )
    return Prepared(route, gens, request_id, body.model, started, tools)


def route(request: Request, services: Services, body: SamplingFields, caller: Caller) -> Route:
    """Where the request goes, once the caller's key may use it (403 otherwise)."""
    if services.draining:
        raise ShuttingDown("this server is shutting down; retry on another replica")
    headers = {k.lower(): v for k, v in request.headers.items()}
    ctx = RouteContext(
        model=body.model,
        path=request.url.path,
        headers=headers,
        api_key=caller.key,
        user=body.user or headers.get(services.settings.experiment_user_header.lower()),
    )
    chosen = services.router.route(ctx)
    check_route(caller, chosen)
    return chosen


def charge(prepared: Prepared) -> int:
    """Tokens a request may use, charged to its key up front: the prompt once, max_tokens per choice."""
    first = prepared.gens[0]
    return len(first.prompt_ids) + first.params.max_tokens * len(prepared.gens)


# Chat templates and tokenization run off the event loop (a long prompt must not stall other requests), one at a
# time in their own thread: a fast tokenizer used from several threads at once can fail ("Already borrowed").
_TOKENIZE = ThreadPoolExecutor(1, thread_name_prefix="switchboard-tokenize")


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_TOKENIZE, fn, *args)


def _chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    try:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    except Exception as exc:  # jinja TemplateError from a template's raise_exception, e.g. role order
        raise InvalidRequest(f"messages do not fit the model's chat template: {exc}", param="messages") from exc
    return list(ids)


async def chat_completions(
    request: Request, services: ServicesDep, caller: InferenceKey, body: ChatCompletionRequest
) -> Response:
    started = time.perf_counter()
    chosen = route(request, services, body, caller)
    tools = tool_plan(body)
    messages = prompt_messages(body, tools)
    prompt_ids = await _off_loop(_chat_prompt, services.engine.tokenizer, messages)
    default_max = services.settings.default_max_tokens
    prepared = prepare(services, body, prompt_ids, default_max, chosen, "chatcmpl", started, tools)
    return await respond(request, services, prepared, body, "chat", admit(services, caller, charge(prepared)))


async def completions(
    request: Request, services: ServicesDep, caller: InferenceKey, body: CompletionRequest
) -> Response:
    started = time.perf_counter()
    chosen = route(request, services, body, caller)
    tokenizer = services.engine.tokenizer
    if isinstance(body.prompt, str):
        prompt_ids = await _off_loop(lambda: list(tokenizer(body.prompt, add_special_tokens=True)["input_ids"]))
    else:
        vocab = len(tokenizer)
        if any(not isinstance(t, int) or t < 0 or t >= vocab for t in body.prompt):
            raise InvalidRequest(f"prompt token ids must lie in [0, {vocab})", param="prompt")
        prompt_ids = [int(t) for t in body.prompt]
    prepared = prepare(services, body, prompt_ids, COMPLETIONS_DEFAULT_MAX_TOKENS, chosen, "cmpl", started)
    return await respond(request, services, prepared, body, "text", admit(services, caller, charge(prepared)))


# The same handlers also answer under any path prefix, so route rules can match on the path
# (e.g. /scenarios/after-sales/v1/chat/completions).
# 404: an unknown model; 429: the queue is full.
for prefix in ("", "/{route_prefix:path}"):
    for path, handler, answer in (
        ("chat/completions", chat_completions, ChatCompletion),
        ("completions", completions, Completion),
    ):
        router.add_api_route(
            f"{prefix}/v1/{path}",
            handler,
            methods=["POST"],
            include_in_schema=not prefix,
            responses={200: {"model": answer, "content": SSE, "headers": SERVED_BY}, **errors(403, 404, 429)},
        )


def _card(services: Services, model_id: str, **fields: Any) -> dict[str, Any]:
    """One entry of /v1/models: OpenAI's model object plus where it comes from (`parent`, `root`)."""
    return {"id": model_id, "object": "model", "created": services.started_at, "owned_by": "switchboard", **fields}


def _base_card(services: Services) -> dict[str, Any]:
    base_id = services.settings.base_model_id
    return _card(services, base_id, root=base_id, parent=None, max_model_len=services.engine.max_model_len)


def _adapter_card(services: Services, model_id: str, ref: AdapterRef) -> dict[str, Any]:
    root = str(services.registry.path(ref))
    return _card(services, model_id, root=root, parent=services.settings.base_model_id, version=ref.version)


def _alias_card(services: Services, alias: str, target: str) -> dict[str, Any]:
    return _card(services, alias, root=target, parent=services.settings.base_model_id, alias_of=target)


def _experiment_card(services: Services, name: str, experiment: Experiment) -> dict[str, Any]:
    """An A/B experiment a client calls by its name: `root` is its control (the winner once concluded); while
    it runs, each caller gets a variant by weight (`experiment.variants`)."""
    serving = experiment.winner if experiment.state == CONCLUDED and experiment.winner else experiment.control
    variants = [{"variant": v, "weight": w} for v, w in experiment.variants.items()]
    info = {"state": experiment.state, "control": experiment.control, "winner": experiment.winner, "variants": variants}
    return _card(services, name, root=serving, parent=services.settings.base_model_id, experiment=info)


async def list_models(services: ServicesDep, caller: InferenceKey) -> JSONResponse:
    """The base model first, then each adapter at its current version, then the aliases and experiments; for a
    key with `allow` patterns, only the adapters (aliases by their target) and experiments it may use."""
    registry, principal = services.registry, caller.principal

    def usable(name: str) -> bool:
        return principal is None or may_use(principal, name)

    data = [_base_card(services)]  # always: rules or the default adapter may route the base id to what a key may use
    for name in registry.names():
        ref = registry.current(name)
        if ref is not None and usable(name):
            data.append(_adapter_card(services, name, ref))
    aliases = sorted(registry.aliases().items())
    data += [_alias_card(services, a, target) for a, target in aliases if usable(AdapterRef.parse(target)[0])]
    experiments = sorted(registry.experiments().items())
    data += [_experiment_card(services, name, exp) for name, exp in experiments if usable(name)]
    return JSONResponse({"object": "list", "data": data})


async def retrieve_model(services: ServicesDep, caller: InferenceKey, model_id: str) -> JSONResponse:
    """OpenAI's retrieve-model: the base model id, an adapter name, `name@version` or an alias, as
    /v1/models shows it (a `name@version` that is not current gets its own entry, same fields). For a key with
    `allow` patterns, what it may not use is not found, as OpenAI answers for a model the key has no access to."""
    registry, principal = services.registry, caller.principal

    def usable(name: str) -> bool:
        return principal is None or may_use(principal, name)

    def missing() -> AdapterNotFound:
        aliases = [a for a, target in sorted(registry.aliases().items()) if usable(AdapterRef.parse(target)[0])]
        available = [n for n in registry.names() if usable(n)] + aliases
        return not_found("model", model_id, [services.settings.base_model_id, *available], param="model")

    if model_id == services.settings.base_model_id:
        return JSONResponse(_base_card(services))
    target = registry.aliases().get(model_id)
    if target is not None:
        if not usable(AdapterRef.parse(target)[0]):
            raise missing()
        return JSONResponse(_alias_card(services, model_id, target))
    experiment = registry.experiment(model_id)
    if experiment is not None:
        if not usable(model_id):
            raise missing()
        return JSONResponse(_experiment_card(services, model_id, experiment))
    ref = registry.lookup(model_id)
    if ref is None or not usable(ref.name):
        raise missing()
    return JSONResponse(_adapter_card(services, model_id, ref))


# The model list answers under the same prefixes, so a client whose base_url carries one
# (http://HOST/scenarios/after-sales/v1) can list and retrieve models. The id is a path: a base
# model id may hold a slash ("google/gemma-3-270m-it"; the openai client sends it as %2F).
for prefix in ("", "/{route_prefix:path}"):
    router.add_api_route(
        f"{prefix}/v1/models",
        list_models,
        methods=["GET"],
        include_in_schema=not prefix,
        responses={200: {"model": ModelList}},
    )
    router.add_api_route(
        f"{prefix}/v1/models/{{model_id:path}}",
        retrieve_model,
        methods=["GET"],
        include_in_schema=not prefix,
        responses={200: {"model": ModelCard}, **errors(404)},
    )
