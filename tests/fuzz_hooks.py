"""Schemathesis hooks for tests/test_fuzz.py (loaded by `st run` through SCHEMATHESIS_HOOKS).

Generated chat and completion bodies almost never pass the cross-field rules (a tool message needs its
tool_call_id, tool_calls only on assistant turns, top_logprobs needs logprobs...), so without help the fuzzer
never reaches the engine. Every other body is repaired into one the engine runs: one user message (or a prompt)
built from the generated text, the generated sampling fields kept as they are (temperature, penalties, top_k,
stop, stream, logprobs, seed...), and the cost capped (max_tokens <= 8, n <= 2). The other half stay as
generated. Which half is decided by the body itself, so the run stays deterministic."""

from __future__ import annotations

import json
import zlib
from typing import Any

import schemathesis
from switchboard.api.schemas import REFUSED_CHAT_FIELDS

# dropped from a repaired body: fields whose rules span several fields, or that only ever refuse
DROP = {
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    *REFUSED_CHAT_FIELDS,
    "response_format",
    "echo",
    "suffix",
    "best_of",
    "min_tokens",
    "logit_bias",
    "stop_token_ids",
    "top_logprobs",
}
MODELS = ("alpha", "beta", "gamma", "alpha@v1")


def _text(value: Any) -> str:
    """The first non-blank string in `value` (nested lists and objects searched), or ""."""
    if isinstance(value, str):
        return value[:200] if value.strip() else ""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for item in items:
        if text := _text(item):
            return text
    return ""


def _cap(body: dict[str, Any], field: str, most: int) -> None:
    if isinstance(body.get(field), (int, float)) and not isinstance(body[field], bool):
        body[field] = max(1, min(int(body[field]), most))


def repair(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    fixed = {k: v for k, v in body.items() if k not in DROP}
    if not isinstance(fixed.get("model"), str) or fixed["model"] not in MODELS:
        fixed["model"] = MODELS[zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode()) % len(MODELS)]
    if chat:
        fixed["messages"] = [{"role": "user", "content": _text(body.get("messages")) or "hello"}]
        if fixed.get("logprobs") is True and isinstance(body.get("top_logprobs"), int):
            fixed["top_logprobs"] = body["top_logprobs"]
    else:
        prompt = body.get("prompt")
        fixed["prompt"] = _text(prompt) or "hello"
        if isinstance(fixed.get("logprobs"), int) and not isinstance(fixed["logprobs"], bool):
            fixed["logprobs"] = max(0, min(fixed["logprobs"], 5))
    for field in ("max_tokens", "max_completion_tokens"):
        _cap(fixed, field, 8)
    if "max_tokens" not in fixed and "max_completion_tokens" not in fixed:
        fixed["max_tokens"] = 4
    _cap(fixed, "n", 2)
    return fixed


@schemathesis.hook
def map_body(context: schemathesis.HookContext, body: Any) -> Any:
    path = context.operation.path if context.operation is not None else ""
    if path not in ("/v1/chat/completions", "/v1/completions") or not isinstance(body, dict):
        return body
    if zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode()) % 2:
        return body
    return repair(body, chat=path == "/v1/chat/completions")
