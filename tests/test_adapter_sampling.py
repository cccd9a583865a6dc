"""Per-adapter sampling defaults (`adapter_sampling`): a request's unset fields take its adapter's defaults,
the fields it sets itself win, and other adapters and the bare base are untouched."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from switchboard.api.openai import prepare
from switchboard.api.schemas import ChatCompletionRequest
from switchboard.cli import build_parser, settings_overrides
from switchboard.config import Settings, load_settings
from switchboard.engine.base import SamplingParams
from switchboard.registry import AdapterRef
from switchboard.routing import Route

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "hi"}]


def params_for(settings: Settings, adapter: str | None, **fields: Any) -> SamplingParams:
    services: Any = SimpleNamespace(settings=settings, engine=SimpleNamespace(max_model_len=64, tokenizer=[0] * 100))
    body = ChatCompletionRequest(model="m", messages=MESSAGES, **fields)
    route = Route(AdapterRef(adapter, "1") if adapter else None)
    return prepare(services, body, [1, 2, 3], 16, route, "chatcmpl", 0.0).gens[0].params


def test_an_adapters_defaults_fill_the_fields_a_request_leaves_unset():
    settings = Settings(adapter_sampling={"after-sales": {"repetition_penalty": 1.2, "frequency_penalty": 0.3}})
    params = params_for(settings, "after-sales", temperature=0)
    assert (params.repetition_penalty, params.frequency_penalty, params.temperature) == (1.2, 0.3, 0.0)


def test_a_value_the_request_sets_overrides_the_adapters_default():
    settings = Settings(adapter_sampling={"after-sales": {"repetition_penalty": 1.2, "frequency_penalty": 0.3}})
    params = params_for(settings, "after-sales", repetition_penalty=1.0, frequency_penalty=0.0)
    assert (params.repetition_penalty, params.frequency_penalty) == (1.0, 0.0)


def test_other_adapters_and_the_base_model_keep_the_plain_defaults():
    settings = Settings(adapter_sampling={"after-sales": {"repetition_penalty": 1.2}})
    assert params_for(settings, "marketing").repetition_penalty == 1.0
    assert params_for(settings, None).repetition_penalty == 1.0


def test_adapter_sampling_is_checked_and_set_by_a_repeated_flag():
    with pytest.raises(ValidationError):
        Settings(adapter_sampling={"a": {"repetition_penalty": 0}})
    with pytest.raises(ValidationError):
        Settings(adapter_sampling={"a": {"beam_width": 2}})
    args = build_parser().parse_args(["serve", "--adapter-sampling", "after-sales={repetition_penalty: 1.1}"])
    settings = load_settings(None, **settings_overrides(args))
    assert settings.adapter_sampling["after-sales"].repetition_penalty == 1.1


def test_eval_takes_sampling_fields_and_refuses_unknown_ones():
    args = build_parser().parse_args(["eval", "--sampling", "repetition-penalty=1.1", "--sampling", "top_k=5"])
    assert dict(args.sampling) == {"repetition_penalty": 1.1, "top_k": 5}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--sampling", "beam_width=2"])
