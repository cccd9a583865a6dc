"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..engine.base import GenerationRequest, SamplingParams
from ..errors import InvalidRequest
from ..registry import BASE, AdapterRef
from ..routing import Route, RouteContext
from .auth import check_inference_key
from .observe import observed
from .schemas import ChatCompletionRequest, CompletionRequest, SamplingFields
from .streaming import collect, sse_chunks

router = APIRouter()

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def served_by(ref: AdapterRef | None) -> str:
    return str(ref) if ref is not None else BASE


class Prepared:
    """A validated request bound to one adapter version and turned into engine input."""

    def __init__(self, route: Route, gen: GenerationRequest, model: str, started: float) -> None:
        self.route = route
        self.ref = route.ref
        self.gen = gen
        self.model = model
        self.started = started


def prepare(
    request: Request,
    body: SamplingFields,
    prompt_ids: list[int],
    default_max: int,
    route: Route,
    id_prefix: str,
    started: float,
) -> Prepared:
    ref = route.ref
    services = request.app.state.services
    engine = services.engine
    limit = engine.max_model_len
    if len(prompt_ids) >= limit:
        raise InvalidRequest(
            f"this model's maximum context length is {limit} tokens, but the prompt has {len(prompt_ids)} "
            "tokens; shorten the messages",
            param="messages",
            code="context_length_exceeded",
        )
    asked = body.requested_max_tokens()  # type: ignore[attr-defined]
    room = limit - len(prompt_ids)
    if asked is not None and asked > room:
        raise InvalidRequest(
            f"this model's maximum context length is {limit} tokens; you asked for {len(prompt_ids) + asked} "
            f"({len(prompt_ids)} in the prompt, {asked} for the completion); lower max_tokens to {room} or less",
            param="max_tokens",
            code="context_length_exceeded",
        )
    max_tokens = asked if asked is not None else min(default_max, room)
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        ignore_eos=body.ignore_eos,
    )
    request_id = f"{id_prefix}-{uuid.uuid4().hex}"
    gen = GenerationRequest(request_id, prompt_ids, params, adapter=str(ref) if ref is not None else None)
    return Prepared(route, gen, body.model, started)


def route(request: Request, body: SamplingFields, api_key: str | None) -> Route:
    services = request.app.state.services
    headers = {k.lower(): v for k, v in request.headers.items()}
    ctx = RouteContext(
        model=body.model,
        path=request.url.path,
        headers=headers,
        api_key=api_key,
        user=body.user or headers.get(services.settings.experiment_user_header.lower()),
    )
    return services.router.route(ctx)


async def _respond(request: Request, prepared: Prepared, body: SamplingFields, kind: str) -> Any:
    headers = {"X-Adapter": served_by(prepared.ref), "X-Request-Id": prepared.gen.request_id}
    if prepared.route.experiment:
        headers["X-Experiment"] = f"{prepared.route.experiment}/{prepared.route.variant}"
    services = request.app.state.services
    created = int(time.time())
    stream = observed(services, prepared.route, prepared.gen, prepared.started)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = sse_chunks(stream, prepared.gen.request_id, prepared.model, created, kind, include_usage)
        first = await anext(chunks)  # surfaces queue-full and engine errors as a status code
        return StreamingResponse(
            _prepend(first, chunks),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache"},
        )
    text, reason, usage = await collect(request, stream)
    if kind == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        obj = "text_completion"
    payload = {
        "id": prepared.gen.request_id,
        "object": obj,
        "created": created,
        "model": prepared.model,
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": None,
    }
    return JSONResponse(payload, headers=headers)


async def _prepend(first: str, rest):
    yield first
    async for item in rest:
        yield item


def _chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    try:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    except Exception as exc:  # jinja TemplateError from a template's raise_exception, e.g. role order
        raise InvalidRequest(f"messages do not fit the model's chat template: {exc}", param="messages") from exc
    return list(ids)


async def chat_completions(request: Request, body: ChatCompletionRequest) -> Any:
    started = time.perf_counter()
    api_key = check_inference_key(request)
    chosen = route(request, body, api_key)
    services = request.app.state.services
    prompt_ids = _chat_prompt(services.engine.tokenizer, body.chat())
    prepared = prepare(request, body, prompt_ids, services.settings.default_max_tokens, chosen, "chatcmpl", started)
    return await _respond(request, prepared, body, "chat")


async def completions(request: Request, body: CompletionRequest) -> Any:
    started = time.perf_counter()
    api_key = check_inference_key(request)
    chosen = route(request, body, api_key)
    tokenizer = request.app.state.services.engine.tokenizer
    if isinstance(body.prompt, str):
        prompt_ids = list(tokenizer(body.prompt, add_special_tokens=True)["input_ids"])
    else:
        vocab = len(tokenizer)
        if any(not isinstance(t, int) or t < 0 or t >= vocab for t in body.prompt):
            raise InvalidRequest(f"prompt token ids must lie in [0, {vocab})", param="prompt")
        prompt_ids = list(body.prompt)
    prepared = prepare(request, body, prompt_ids, COMPLETIONS_DEFAULT_MAX_TOKENS, chosen, "cmpl", started)
    return await _respond(request, prepared, body, "text")


# The same handlers also answer under any path prefix, so route rules can match on the path
# (e.g. /scenarios/after-sales/v1/chat/completions).
for prefix in ("", "/{route_prefix:path}"):
    router.add_api_route(
        f"{prefix}/v1/chat/completions", chat_completions, methods=["POST"], include_in_schema=not prefix
    )
    router.add_api_route(f"{prefix}/v1/completions", completions, methods=["POST"], include_in_schema=not prefix)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    check_inference_key(request)
    services = request.app.state.services
    registry = services.registry
    base_id = services.settings.base_model_id
    created = services.started_at
    card = {"object": "model", "created": created, "owned_by": "switchboard"}
    data = [{"id": base_id, **card, "root": base_id, "parent": None, "max_model_len": services.engine.max_model_len}]
    for name in registry.names():
        ref = registry.current(name)
        if ref is not None:
            data.append(
                {"id": name, **card, "root": str(registry.path(ref)), "parent": base_id, "version": ref.version}
            )
    for alias, target in sorted(registry.aliases().items()):
        data.append({"id": alias, **card, "root": target, "parent": base_id, "alias_of": target})
    return JSONResponse({"object": "list", "data": data})
