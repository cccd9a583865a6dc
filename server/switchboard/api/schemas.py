"""OpenAI request bodies, validated once at the edge."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLES = ("system", "developer", "user", "assistant")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)} (tools are not supported)")
        return role

    def text(self) -> str:
        if self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content part of type {part.type!r} is not supported; send text parts only")
            texts.append(part.text)
        return "".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class SamplingFields(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    n: int = Field(default=1, ge=1)
    ignore_eos: bool = False  # vLLM extension, for benchmarks that need a fixed output length
    logprobs: Any = None
    tools: list[Any] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 16:
            raise ValueError("at most 16 stop sequences")
        return [s for s in stops if s]

    @model_validator(mode="after")
    def _unsupported(self) -> SamplingFields:
        if self.n != 1:
            raise ValueError("n > 1 is not supported; send separate requests")
        if self.logprobs:
            raise ValueError("logprobs are not supported")
        if self.tools:
            raise ValueError("tools are not supported")
        return self

    def stop_list(self) -> list[str]:
        return list(self.stop or [])

    def requested_max_tokens(self) -> int | None:
        """The completion budget the client asked for (None: the server's default)."""
        return self.max_tokens


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _messages(self) -> ChatCompletionRequest:
        for message in self.messages:
            message.text()  # raises on missing or non-text content
        if all(m.role in ("system", "developer") for m in self.messages):
            raise ValueError("messages need at least one user or assistant message")
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def chat(self) -> list[dict[str, str]]:
        """Messages as the chat template expects them (developer is OpenAI's new name for system)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = Field()
    echo: bool = False
    suffix: str | None = None

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

    @model_validator(mode="after")
    def _unsupported_completion(self) -> CompletionRequest:
        if self.echo:
            raise ValueError("echo is not supported")
        if self.suffix:
            raise ValueError("suffix is not supported")
        return self


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


FinishReason = Literal["stop", "length"]
