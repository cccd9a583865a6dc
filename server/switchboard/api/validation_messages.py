"""One message for a request that failed validation, naming the field, what it must be and what came.

Pydantic's own messages mislead where a field takes several types ("messages.0.content.str: Input should be a
valid string" for a content list with a bad part) and never say what was sent; here a union's branches are
folded into the one place they share ("messages.0.content: expected a string or a list, got a number"), or into
the branch the value reached deepest, and each message ends with the value received (cut short)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

# error types that mean "wrong type": what the field expects
EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "none_required": "null",
}
BASIC_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "tuple"}
SHOWN = 40  # characters of a received value quoted in a message


def kind(value: Any) -> str:
    """The JSON kind of `value`, for "got ...": `null`, `true`, `a number (3.5)`, `a string ('x')`, `a list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"a number ({_short(value)})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (str, int, float)) else str(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _is_tag(part: Any) -> bool:
    """A union branch in a location (`str`, `list[TextPart]`, `function-after[...]`, `VariantWeight`)."""
    return isinstance(part, str) and ("[" in part or part in BASIC_TAGS or part[:1].isupper())


def _where(loc: Sequence[Any]) -> tuple[list[str], bool]:
    """The field path without the request part ("body", "query", "path") and union branches; and whether a
    branch was dropped."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    return [str(p) for p in parts if not _is_tag(p)], any(_is_tag(p) for p in parts)


def _union_point(loc: Sequence[Any]) -> list[str]:
    """The field path up to the first union branch."""
    before: list[Any] = []
    for part in loc:
        if _is_tag(part):
            break
        before.append(part)
    return _where(before)[0]


def _describe(error: dict[str, Any]) -> str:
    """What is wrong with one value, ending with what was received when that helps."""
    type_ = error.get("type", "")
    value = error.get("input")
    if type_ == "missing":
        return "this field is required"
    if type_ == "extra_forbidden":
        return "unknown field; this endpoint takes the fields listed in docs/api.md"
    if type_ in EXPECTED:
        return f"expected {EXPECTED[type_]}, got {kind(value)}"
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if type_ == "value_error":  # our own validators: their messages already say what came
        return msg
    msg = msg.replace("Input should be", "must be").replace(" after validation", "")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and "got" not in msg:
        msg += f", got {_short(value)}"
    return msg


def validation_message(errors: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """The message and `param` (dotted path) for FastAPI's validation errors: the first problem, and how many
    more there are."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    where, in_union = _where(first.get("loc", ()))
    if first.get("type") == "model_attributes_type" and not where:
        return "request body must be a JSON object", None
    if first.get("type") == "missing" and not where:
        return "request body is required: a JSON object", None
    problem = _describe(first)
    places = {tuple(_union_point(e.get("loc", ()))) for e in errors}
    if in_union:
        point = _union_point(first.get("loc", ()))
        branches = [e for e in errors if _union_point(e.get("loc", ())) == point]
        deepest = max(branches, key=lambda e: len(_where(e.get("loc", ()))[0]))
        if len(_where(deepest.get("loc", ()))[0]) > len(point):  # the value matched a branch's type; a part is wrong
            where, problem = _where(deepest.get("loc", ()))[0], _describe(deepest)
        else:
            wanted = [EXPECTED[e["type"]] for e in branches if e.get("type") in EXPECTED]
            expected = " or ".join(dict.fromkeys(wanted)) or "another type"
            where, problem = point, f"expected {expected}, got {kind(first.get('input'))}"
    param = ".".join(where) or None
    extra = len(places) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra > 0 else ""
    return (f"{param}: {problem}{more}" if param else f"{problem}{more}"), param
