"""OpenAI request bodies, validated once at the edge."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..engine.constraints import schema_text

ROLES = ("system", "developer", "user", "assistant", "tool")
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names
# OpenAI chat fields Switchboard refuses with a 400 naming the field (tests/fuzz_hooks.py drops them too)
REFUSED_CHAT_FIELDS = (
    "functions",
    "function_call",
    "audio",
    "modalities",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "moderation",
)
MAX_MESSAGES = 2048  # checked before anything is tokenized (60,000 empty messages took 2 s to refuse)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCall(BaseModel):
    """A call an earlier assistant turn made (`messages[i].tool_calls[j]`)."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; none: no arguments
    strict: bool | None = None  # forced calls always follow the schema; auto calls are parsed, not enforced


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDefinition


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(json_schema_extra={"enum": list(ROLES)})  # checked below, with a message naming them
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        return role

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"tool_calls belong to assistant messages, not {self.role}")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        self.text()  # here, so a message without usable content is named by its index (param messages.N)
        return self

    def text(self) -> str:
        if self.content is None:
            if self.tool_calls:
                return ""
            raise ValueError(f"content is required in a {self.role} message (without tool_calls)")
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text":
                raise ValueError(f"content part of type {part.type!r} is not supported; send text parts only")
            if part.text is None:
                raise ValueError("a content part of type 'text' needs its text")
            texts.append(part.text)
        return "".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = None  # ignored: there is no obfuscation padding to turn on or off


# Every field of the request bodies is honoured, accepted and ignored, or refused (docs/api.md lists them all;
# tests/test_schemas.py checks the official `openai` package's fields are each declared here). A field in
# REFUSED is a 400 naming it unless its value asks for nothing (`accepts`), e.g. `tools: []`, `n: 1`.
IGNORED = {
    # chat: metadata and hints that change nothing in the result
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "safety_identifier",
    "prediction",
}


def _none_or(*values: Any) -> Any:
    """Accepts None and exactly `values` (0 is not False, True is not 1)."""
    return lambda v: v is None or any(type(v) is type(ok) and v == ok for ok in values)


REFUSED: dict[str, tuple[Any, str]] = {
    # field: (accepts(value), why it is refused)
    "best_of": (_none_or(1), "best_of > 1 is not supported; send n > 1 and pick among the choices yourself"),
    "echo": (_none_or(False), "echo is not supported"),
    "suffix": (_none_or(""), "suffix is not supported"),
    "functions": (_none_or([]), "functions is OpenAI's deprecated form of tools; send tools"),
    "function_call": (_none_or("none", "auto"), "function_call is OpenAI's deprecated form of tool_choice; send tools"),
    "audio": (_none_or(), "audio output is not supported"),
    "modalities": (_none_or(["text"]), "only the text modality is supported"),
    "reasoning_effort": (_none_or(), "this model does not reason; send no reasoning_effort"),
    "verbosity": (_none_or(), "verbosity is not supported by this model"),
    "web_search_options": (_none_or(), "web search is not supported"),
    "moderation": (_none_or(), "moderation is not supported"),
}


def _refuse_unless_accepted(cls: Any, value: Any, info: ValidationInfo) -> Any:
    accepts, why = REFUSED[str(info.field_name)]
    if not accepts(value):
        raise ValueError(why)
    return value


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions: OpenAI's, then vLLM's sampling extensions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN: "a finite number", not "at most 2"

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int | None = Field(default=None, ge=1)  # at most max_batch_size (checked against the settings)
    # vLLM's sampling extensions (vllm.SamplingParams)
    top_k: int | None = Field(default=None, ge=-1)  # -1, 0 or None: off
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False  # for benchmarks that need a fixed output length
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop sequences")
        return [s for s in stops if s]

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (bias or {}).items():
            if not key.isdigit():
                raise ValueError(f"keys are token ids (non-negative integers), got {key!r}")
            if not -100.0 <= value <= 100.0:
                raise ValueError(f"biases lie in [-100, 100], got {value} for token {key}")
        return bias

    @field_validator("stop_token_ids")
    @classmethod
    def _stop_token_ids(cls, ids: list[int] | None) -> list[int] | None:
        if ids and min(ids) < 0:
            raise ValueError("token ids are non-negative integers")
        return ids

    def stop_list(self) -> list[str]:
        return list(self.stop or [])

    def requested_max_tokens(self) -> int | None:
        """The completion budget the client asked for (None: the server's default)."""
        return self.max_tokens

    def with_defaults(self, defaults: dict[str, Any]) -> SamplingFields:
        """A copy whose fields the request left unset take `defaults` (an adapter's configured sampling)."""
        unset = {k: v for k, v in defaults.items() if k not in self.model_fields_set}
        return self.model_copy(update=unset) if unset else self

    def bias(self) -> tuple[tuple[int, float], ...]:
        """logit_bias as (token id, bias) pairs."""
        return tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items())

    def logprob_count(self) -> int | None:
        """None: no logprobs; k: each token's logprob and the k most likely alternatives."""
        return None

    def json_schema(self) -> str | None:
        """The JSON schema (serialized) response_format asks the output to match; None: free text."""
        return None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    response_format: Any = None
    tools: list[Tool] | None = None
    tool_choice: Any = None  # "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}
    parallel_tool_calls: bool | None = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None
    moderation: Any = None
    # accepted and ignored (IGNORED)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: Any = None
    safety_identifier: str | None = None
    prediction: Any = None

    _refused_chat = field_validator(*REFUSED_CHAT_FIELDS)(_refuse_unless_accepted)

    @field_validator("response_format")
    @classmethod
    def _response_format(cls, value: Any) -> Any:
        """text, json_object, or json_schema with a `schema` object (compiled later: engine/constraints.py)."""
        kind = value.get("type") if isinstance(value, dict) else None
        if value is not None and kind not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format is {'type': 'text' | 'json_object' | 'json_schema', ...}")
        if kind == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise ValueError("response_format json_schema needs {'name': str, 'schema': {...}, 'strict': bool}")
            if not isinstance(spec.get("schema"), dict):
                raise ValueError("response_format json_schema.schema must be a JSON schema object")
        return value

    def json_schema(self) -> str | None:
        return schema_text(self.response_format)

    @field_validator("tools")
    @classmethod
    def _tools(cls, tools: list[Tool] | None) -> list[Tool] | None:
        names = [t.function.name for t in tools or []]
        if len(set(names)) != len(names):
            raise ValueError("function names must be unique")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, choice: Any, info: ValidationInfo) -> Any:
        names = [t.function.name for t in info.data.get("tools") or []]
        if isinstance(choice, dict):
            function = choice.get("function")
            name = function.get("name") if choice.get("type") == "function" and isinstance(function, dict) else None
            if not isinstance(name, str):
                raise ValueError("'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")
            if name not in names:
                raise ValueError(f"names {name!r}, not among the tools ({', '.join(names) or 'none sent'})")
        elif choice not in (None, "none", "auto", "required"):
            raise ValueError("'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")
        elif choice == "required" and not names:
            raise ValueError("'required' needs tools")
        if choice not in (None, "none", "auto") and schema_text(info.data.get("response_format")) is not None:
            raise ValueError("a forced tool call and a JSON response_format exclude each other; send one")
        return choice

    @model_validator(mode="after")
    def _messages(self) -> ChatCompletionRequest:
        if all(m.role in ("system", "developer") for m in self.messages):
            raise ValueError("messages need at least one user or assistant message")
        return self

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return top

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = Field()
    logprobs: int | None = Field(default=None, ge=0, le=5, strict=True)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    _refused_completion = field_validator("echo", "suffix", "best_of")(_refuse_unless_accepted)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, prompt: str | list[str] | list[int]) -> str | list[int]:
        if isinstance(prompt, list):
            if not prompt:
                raise ValueError("prompt must not be empty")
            if all(isinstance(p, str) for p in prompt):
                if len(prompt) != 1:
                    raise ValueError("one prompt per request is supported; send separate requests")
                return cls._prompt(str(prompt[0]))
            return [int(p) for p in prompt]
        if not prompt:
            raise ValueError("prompt must not be empty")
        return prompt

    def logprob_count(self) -> int | None:
        return self.logprobs


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
