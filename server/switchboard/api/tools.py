"""Tool calling: the tools described in the prompt, forced calls constrained by their JSON schemas, and calls
parsed out of the model's text, whole or streamed.

The prompt follows the Hermes format that Qwen and Hermes models are trained on, written into the system
message, so any chat template works: the tools as JSON inside `<tools>`, a call as a JSON object
`{"name", "arguments"}` inside `<tool_call>`, earlier calls written back the same way in assistant turns,
and results (`tool` messages) as `<tool_response>` blocks in a user turn.

- `tool_choice: "auto"` (the default when tools are sent): the model writes text, calls or both; each
  `<tool_call>` block naming a known function with an arguments object becomes a call.
- `"required"`: the output is constrained to a JSON array of calls, `[{"name": <one of the tools>,
  "arguments": <that tool's parameters schema>}, ...]` (one call when `parallel_tool_calls` is false).
- a named function: the output is constrained to that function's parameters schema: the arguments.
- `"none"`: the tools are left out of the prompt and the answer is text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..engine.constraints import grammar
from ..errors import InvalidRequest
from .schemas import ChatCompletionRequest

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|$)", re.S)
_ANY_PARAMETERS = {"type": "object"}


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolPlan:
    """What the request's tools and tool_choice ask of this completion."""

    choice: str  # "auto", "required" or "named"
    functions: dict[str, dict[str, Any]]  # name -> {"description", "parameters"}
    named: str | None = None
    parallel: bool = True

    def parameters(self, name: str) -> dict[str, Any]:
        return self.functions[name].get("parameters") or _ANY_PARAMETERS

    def schema(self) -> str | None:
        """The JSON schema (serialized) the output is constrained to; None for `auto`."""
        if self.choice == "named":
            assert self.named is not None
            return json.dumps(self.parameters(self.named), ensure_ascii=False)
        if self.choice == "required":
            one_of = [
                {
                    "type": "object",
                    "properties": {"name": {"const": name}, "arguments": self.parameters(name)},
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
                for name in self.functions
            ]
            calls: dict[str, Any] = {"type": "array", "items": {"anyOf": one_of}, "minItems": 1}
            if not self.parallel:
                calls["maxItems"] = 1
            return json.dumps(calls, ensure_ascii=False)
        return None

    def instructions(self) -> str:
        """The system-prompt text that describes the tools and how to answer."""
        shown = [self.named] if self.named else list(self.functions)  # a named call needs only its function
        tools = "\n".join(
            json.dumps({"type": "function", "function": {"name": name, **self.functions[name]}}, ensure_ascii=False)
            for name in shown
        )
        head = f"You can call functions. Their JSON schemas:\n<tools>\n{tools}\n</tools>\n"
        if self.choice == "named":
            return head + f"Reply with the arguments of the function {self.named} as one JSON object."
        if self.choice == "required":
            return head + 'Reply with a JSON array of calls: [{"name": <function name>, "arguments": <JSON object>}].'
        return head + (
            "To call a function, reply with a block per call, each holding a JSON object:\n"
            f'{OPEN}\n{{"name": <function name>, "arguments": <JSON object>}}\n{CLOSE}'
        )

    def parse(self, text: str, finish_reason: str) -> tuple[str | None, list[dict[str, Any]], str]:
        """(content, tool calls, finish_reason) of a finished choice's text."""
        calls: list[tuple[str, Any]] | None
        content: str | None = None
        if self.choice == "named":
            assert self.named is not None
            calls = [(self.named, text)]  # cut short by max_tokens: the arguments are cut too ("length")
        elif self.choice == "required":
            calls = self._array(text)
        else:
            calls, content = self._blocks(text)
        if not calls:  # a cut or unparsable forced call, or an answer in text: the text is the content
            return text, [], finish_reason
        reason = finish_reason if finish_reason == "length" or self.choice == "named" else "tool_calls"
        return content, [tool_call(i, name, args) for i, (name, args) in enumerate(calls)], reason

    def _known(self, call: Any) -> tuple[str, Any] | None:
        if not isinstance(call, dict) or call.get("name") not in self.functions:
            return None
        args = call.get("arguments", call.get("parameters", {}))
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        return (call["name"], args) if isinstance(args, dict) else None

    def _array(self, text: str) -> list[tuple[str, Any]] | None:
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            return None
        calls = [self._known(item) for item in items] if isinstance(items, list) else [None]
        return None if None in calls else [c for c in calls if c is not None]

    def _blocks(self, text: str) -> tuple[list[tuple[str, Any]] | None, str | None]:
        calls = []
        for match in _BLOCK.finditer(text):
            try:
                call = self._known(json.loads(match.group(1)))
            except json.JSONDecodeError:
                call = None
            if call is None:
                return None, None  # one block that is not a call: the whole answer is text
            calls.append(call)
        if not calls:
            return None, None
        rest = _BLOCK.sub("", text).strip()
        return (calls if self.parallel else calls[:1]), (rest or None)


def tool_call(index: int, name: str, arguments: Any) -> dict[str, Any]:
    """One entry of a message's `tool_calls` (arguments serialized compactly unless already text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return {"index": index, "id": call_id(), "type": "function", "function": {"name": name, "arguments": text}}


def plan(body: ChatCompletionRequest) -> ToolPlan | None:
    """The request's tool plan; None when no tool may be called (no tools, or tool_choice "none")."""
    choice = body.tool_choice if body.tool_choice is not None else "auto"
    if not body.tools or choice == "none":
        return None
    functions = {
        t.function.name: t.function.model_dump(include={"description", "parameters"}, exclude_none=True)
        for t in body.tools
    }
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    result = ToolPlan("named" if named else str(choice), functions, named, body.parallel_tool_calls is not False)
    if result.choice != "auto":  # the forced call is compiled to a grammar: refuse a schema it cannot use here
        for name in [named] if named else list(functions):
            try:
                grammar(json.dumps(result.parameters(name), ensure_ascii=False))
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"tools: the parameters schema of {name!r} cannot be used: {exc.message}", param="tools"
                ) from exc
    return result


def prompt_messages(body: ChatCompletionRequest, tools: ToolPlan | None) -> list[dict[str, str]]:
    """The conversation as plain role/content messages for any chat template: the tools in the system message,
    earlier calls as `<tool_call>` blocks, tool results as `<tool_response>` blocks in one user turn."""
    messages: list[dict[str, str]] = []
    for m in body.messages:
        role = "system" if m.role == "developer" else m.role
        content = m.text()
        if m.role == "assistant" and m.tool_calls:
            blocks = [f"{OPEN}\n{_written_call(c.function.name, c.function.arguments)}\n{CLOSE}" for c in m.tool_calls]
            content = "\n".join([content, *blocks] if content else blocks)
        if m.role == "tool":
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
            if messages and messages[-1]["role"] == "user" and messages[-1]["content"].endswith("</tool_response>"):
                messages[-1]["content"] += "\n" + content  # several results answer one turn
                continue
        messages.append({"role": role, "content": content})
    if tools is not None:
        if messages[0]["role"] == "system":
            messages[0]["content"] += "\n\n" + tools.instructions()
        else:
            messages.insert(0, {"role": "system", "content": tools.instructions()})
    return messages


def _written_call(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments)
    except json.JSONDecodeError:
        args = arguments
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


class ToolStream:
    """One streamed choice's deltas: text passes through as content until a call may begin; a forced named
    call streams its arguments as they are made; other calls are sent whole when the choice ends."""

    def __init__(self, tools: ToolPlan) -> None:
        self.tools = tools
        self.text = ""  # everything generated
        self.sent = 0  # chars of `text` sent as content (auto) or as arguments (named)
        self.holding = False  # auto: a call has begun; the rest waits for the end

    def feed(self, delta: str) -> dict[str, Any] | None:
        """The delta (OpenAI chat-chunk `delta`) to send now for `delta` text; None: nothing yet."""
        self.text += delta
        if self.tools.choice == "named":
            out: dict[str, Any] = {"index": 0, "function": {"arguments": delta}}
            if self.sent == 0:
                out = tool_call(0, str(self.tools.named), delta)
            self.sent += len(delta)
            return {"tool_calls": [out]} if delta else None
        if self.tools.choice == "required" or self.holding:
            return None
        start = self.text.find(OPEN, self.sent)
        if start >= 0:
            self.holding = True
            return self._content(start)
        return self._content(len(self.text) - _partial_open(self.text))

    def _content(self, upto: int) -> dict[str, Any] | None:
        piece, self.sent = self.text[self.sent : upto], max(self.sent, upto)
        return {"content": piece} if piece else None

    def finish(self, finish_reason: str) -> tuple[dict[str, Any] | None, str]:
        """(the last delta, the finish_reason) when the choice ends."""
        if self.tools.choice == "named":
            return (None if self.sent else {"tool_calls": [tool_call(0, str(self.tools.named), "")]}), finish_reason
        _, calls, reason = self.tools.parse(self.text, finish_reason)
        if not calls:  # text after all: send what was held back
            return self._content(len(self.text)), reason
        delta: dict[str, Any] = {"tool_calls": calls}
        rest = _BLOCK.sub("", self.text[self.sent :]).strip() if self.tools.choice == "auto" else ""
        if rest:
            delta["content"] = rest
        return delta, reason


def _partial_open(text: str) -> int:
    """How many trailing chars of `text` could be the start of `<tool_call>` (held back until known)."""
    for size in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-size:]):
            return size
    return 0
