"""Structured outputs (`response_format` json_object / json_schema) on the hf engine: llguidance's mask applied per
row. The tiny model is random, so only the constraint makes its output valid JSON; schemas bound their strings and
arrays (maxLength, maxItems) so that each document closes well within max_tokens."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
import torch
from switchboard.engine.constraints import JSON_OBJECT, Grammars, constrain, grammar, mask_row
from switchboard.errors import InvalidRequest
from transformers import AutoTokenizer

from .conftest import Server

MSG = [{"role": "user", "content": "Reply in JSON."}]
SHORT = {"type": "string", "maxLength": 8}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


SCHEMAS = {
    "order": obj(  # nested objects, an enum, an array of objects, required and optional fields
        ["order_id", "status", "customer", "items"],
        order_id=SHORT,
        status={"type": "string", "enum": ["pending", "shipped", "delivered"]},
        customer=obj(["name", "city"], name=SHORT, city={"type": "string", "enum": ["北京", "上海", "Köln"]}),
        items={"type": "array", "items": obj(["sku", "qty"], sku=SHORT, qty={"type": "integer", "minimum": 1,
                                                                            "maximum": 9}), "maxItems": 2},
        gift={"type": "boolean"},
    ),
    "chinese": obj(  # Chinese enum values and free Chinese-or-not text
        ["reply", "note"], reply={"type": "string", "enum": ["已发货", "退款处理中", "请稍候"]},
        note={"type": "string", "maxLength": 6},
    ),
    "ticket": obj(  # an integer enum, an array of enums, a boolean
        ["priority", "tags", "escalate"], priority={"type": "integer", "enum": [1, 2, 3]},
        tags={"type": "array", "items": {"type": "string", "enum": ["billing", "shipping"]}, "maxItems": 3},
        escalate={"type": "boolean"},
    ),
}  # fmt: skip


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}


def test_mask_leaves_other_rows_and_allows_only_the_grammars_tokens(tiny_model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    grammars = Grammars(tokenizer, len(tokenizer))
    row = grammars.constraint(json.dumps({"type": "string", "enum": ["yes", "no"]}))
    logits = torch.randn(3, len(tokenizer))
    before = logits.clone()
    constrain(logits, [None, row, None])
    assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])
    kept = torch.isfinite(logits[1]).nonzero()[:, 0].tolist()
    assert kept and all(logits[1, t] == before[1, t] for t in kept)
    texts = [tokenizer.decode([t]) for t in kept]
    assert all('"yes"'.startswith(s) or '"no"'.startswith(s) for s in texts), texts
    assert not row.ends(tokenizer.encode('"', add_special_tokens=False)[0])
    for token in tokenizer.encode('yes"', add_special_tokens=False)[:-1]:
        assert not row.ends(token)
    assert row.ends(tokenizer.encode('yes"', add_special_tokens=False)[-1])  # the document is complete


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fill", [0, -1, None], ids=["few allowed", "few banned", "half"])
def test_mask_row_bans_exactly_the_cleared_bits(fill: int | None, dtype: torch.dtype):
    vocab = 1000  # not a multiple of 32: the last word's high bits lie past the vocabulary
    shape = (vocab // 32 + 1,)
    words = torch.full(shape, fill, dtype=torch.int32) if fill is not None else torch.randint(-(2**31), 2**31, shape)
    words = words.to(torch.int32)
    words[[0, 5, 31]] = torch.tensor([0x12345678, -0x0F0F0F10, 0x7FFFFFFF], dtype=torch.int32)
    banned = ((words[:, None] >> torch.arange(32, dtype=torch.int32)) & 1).reshape(-1)[:vocab] == 0
    logits = torch.randn(3, vocab).to(dtype)
    before = logits.clone()
    mask_row(logits[1], words.numpy())
    assert torch.equal(torch.isneginf(logits[1]), banned)
    assert torch.equal(logits[1][~banned], before[1][~banned])
    assert torch.equal(logits[[0, 2]], before[[0, 2]])


def test_unusable_schema_is_invalid_request():
    with pytest.raises(InvalidRequest) as info:
        grammar(json.dumps({"type": "objectx"}))
    assert info.value.param == "response_format" and "objectx" in str(info.value)


@pytest.fixture(scope="module")
def client(tiny_server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.v1, api_key="unused", timeout=120)


def test_schemas_validate_when_mixed_with_free_rows_in_one_batch(client: openai.OpenAI):
    def constrained(name: str, seed: int) -> tuple[str, Any]:
        out = client.chat.completions.create(
            model="alpha", messages=MSG, max_tokens=200, seed=seed, response_format=response_format(SCHEMAS[name])
        )
        return name, out.choices[0]

    def free(seed: int) -> Any:
        return client.chat.completions.create(model="beta", messages=MSG, max_tokens=24, seed=seed).choices[0]

    constrained(  # the first constrained request waits for the engine's llguidance tokenizer (once)
        "ticket", 0
    )
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(constrained, name, seed) for seed in (1, 2) for name in SCHEMAS]
        frees = [pool.submit(free, seed) for seed in range(3)]
        results = [job.result() for job in jobs]
        free_choices = [job.result() for job in frees]
    for name, choice in results:
        assert choice.finish_reason == "stop", (name, choice.message.content)
        jsonschema.validate(json.loads(choice.message.content), SCHEMAS[name])
    assert all(c.finish_reason in ("stop", "length") and c.message.content for c in free_choices)
    assert any(not _is_json(c.message.content) for c in free_choices)  # the free rows were not constrained


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_json_object_gives_an_object(client: openai.OpenAI, tiny_model_dir: Path):
    # inside a free string nearly every token is allowed, so a random model rarely closes one: favour closing
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    favour = {str(t): 50 for s in ("{}", "}") for t in tokenizer.encode(s, add_special_tokens=False)[:1]}
    out = client.chat.completions.create(
        model="alpha", messages=MSG, max_tokens=50, response_format={"type": "json_object"}, logit_bias=favour
    )
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_document_cut_by_max_tokens_finishes_with_length(client: openai.OpenAI):
    out = client.chat.completions.create(
        model="alpha", messages=MSG, max_tokens=3, response_format=response_format(SCHEMAS["order"])
    )
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3
    assert out.choices[0].message.content.startswith('{"')


@pytest.mark.parametrize(
    "fmt",
    [
        response_format({"type": "objectx"}),
        response_format({"type": "string", "pattern": "(["}),
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "grammar"},
    ],
    ids=["bad type", "bad pattern", "no schema", "unknown type"],
)
def test_unusable_response_format_is_400(client: openai.OpenAI, fmt: dict[str, Any]):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="alpha", messages=MSG, max_tokens=4, response_format=fmt)  # type: ignore[arg-type]
    assert info.value.param == "response_format" and info.value.type == "invalid_request_error"


def test_vllm_gets_the_schema_as_structured_outputs():
    from dataclasses import dataclass

    from switchboard.engine.vllm_engine import structured_outputs

    @dataclass
    class Params:  # the fields of vllm.sampling_params.StructuredOutputsParams that we set
        json: str | None = None
        json_object: bool | None = None
        disable_any_whitespace: bool = False

    schema = json.dumps(SCHEMAS["ticket"])
    assert structured_outputs(Params, None) is None
    assert structured_outputs(Params, schema) == Params(json=schema, disable_any_whitespace=True)
    assert structured_outputs(Params, JSON_OBJECT) == Params(json_object=True, disable_any_whitespace=True)
