"""The response formats of `loadgen.py`'s structured-output scenarios (`json-S`): a few JSON schemas shaped like
what clients of a shop assistant ask for, and json_object, sent as OpenAI `response_format`; and the check of what
came back, with jsonschema, independent of the server's grammar engine.

- `order`: nested objects, an array of objects, a `pattern`, bounded integers and numbers;
- `ticket`: string enums, a boolean, a bounded free-text string;
- `product_zh`: Chinese keys, Chinese enum values and Chinese free text (multi-byte tokens);
- `review`: an array of strings, an enum, a bounded integer;
- `json_object`: any JSON object (`{"type": "json_object"}`).
Strings carry `maxLength` and arrays `maxItems`, as a client that wants an answer in bounded time would write them:
without bounds a base model's document may never close before `max_tokens` (then it is counted as cut, not as
invalid). Every object has `additionalProperties: false` (OpenAI's strict mode requires it).
"""

from __future__ import annotations

import json
from typing import Any


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A closed object whose properties are all required."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


SCHEMAS: dict[str, dict[str, Any]] = {
    "order": _object({
        "order_id": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{6}$"},
        "customer": _object({"name": _text(40), "city": _text(30)}),
        "items": {"type": "array", "minItems": 1, "maxItems": 3, "items": _object({
            "sku": _text(12), "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
        })},
        "total": {"type": "number", "minimum": 0, "maximum": 100000},
    }),
    "ticket": _object({
        "category": {"type": "string", "enum": ["shipping", "refund", "product", "account", "other"]},
        "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
        "summary": _text(80),
        "needs_human": {"type": "boolean"},
    }),
    "product_zh": _object({
        "名称": _text(20),
        "类别": {"type": "string", "enum": ["服装", "电子产品", "家居", "食品"]},
        "价格": {"type": "number", "minimum": 0, "maximum": 100000},
        "卖点": {"type": "array", "maxItems": 3, "items": _text(15)},
    }),
    "review": _object({
        "tags": {"type": "array", "minItems": 1, "maxItems": 4, "items": _text(20)},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
    }),
    "json_object": {"type": "object"},
}  # fmt: skip
FORMATS = tuple(SCHEMAS)
CHECKS = ("valid", "cut", "invalid")  # what `check` says of a constrained completion


def response_format(name: str) -> dict[str, Any]:
    """The OpenAI `response_format` body of format `name`."""
    if name == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": SCHEMAS[name]}}


def check(name: str, text: str, finish_reason: str | None) -> str:
    """`valid` when `text` is a JSON document that format `name`'s schema accepts; otherwise `cut` when max_tokens
    ended the completion (finish_reason `length`: the document could not close), else `invalid`."""
    import jsonschema  # the dev extra; only structured runs need it

    try:
        jsonschema.validate(json.loads(text), SCHEMAS[name])
        return "valid"
    except (ValueError, jsonschema.ValidationError):
        return "cut" if finish_reason == "length" else "invalid"
