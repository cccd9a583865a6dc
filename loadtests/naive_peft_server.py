"""A naive PEFT server: the textbook multi-LoRA baseline that S-LoRA compares against.

The base model (the same dir and dtype Switchboard serves: `switchboard.models.resolve_model_dir`, with its chat
template) and every adapter go into one `PeftModel`. Requests are served one at a time: an asyncio lock admits one,
`model.set_adapter(name)` switches to its adapter (or `disable_adapter()` for the base), and a token-by-token
greedy loop with a KV cache streams the output. No batching, no scheduling: what you get by wrapping PEFT in a web
server. OpenAI-compatible enough for `loadgen.py`: POST /v1/chat/completions (model = adapter name or the base id,
stream, stream_options.include_usage, max_tokens, ignore_eos, temperature), GET /v1/models, /ready, /health.

Usage: `python loadtests/naive_peft_server.py --model gemma3-270m --adapter NAME=DIR ... --port 8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from peft import PeftModel
from switchboard.config import load_settings
from switchboard.models import resolve_model_dir
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

BASE = "base"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "auto": torch.bfloat16}


class NaiveModel:
    """One PeftModel holding every adapter; `generate` runs one request on the calling thread."""

    def __init__(self, model_dir: Path, dtype: torch.dtype, adapters: dict[str, Path]) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        names = list(adapters)
        self.model = PeftModel.from_pretrained(base, str(adapters[names[0]]), adapter_name=names[0])
        for name in names[1:]:
            self.model.load_adapter(str(adapters[name]), adapter_name=name)
        self.model.eval()
        self.adapters = set(names)
        eos = base.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.stop_ids.add(self.tokenizer.eos_token_id)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return list(ids)

    @torch.inference_mode()
    def generate(
        self, adapter: str | None, prompt: list[int], params: dict[str, Any], emit: Callable[[int], None],
        cancelled: threading.Event,
    ) -> None:  # fmt: skip
        """Greedy (temperature 0) or sampled decoding, one token per forward pass; `emit` gets each token id."""
        if adapter is not None:
            self.model.set_adapter(adapter)
        temperature = float(params.get("temperature") or 0.0)
        with self.model.disable_adapter() if adapter is None else nullcontext():
            cache = DynamicCache(config=self.model.config)
            ids = torch.tensor([prompt])
            for _ in range(params["max_tokens"]):
                logits = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
                logits = logits[0, -1].float()
                if temperature > 0:
                    token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1))
                else:
                    token = int(logits.argmax())
                emit(token)
                if cancelled.is_set() or (token in self.stop_ids and not params["ignore_eos"]):
                    return
                ids = torch.tensor([[token]])


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse({"error": error}, status_code=status)


def create_app(model: NaiveModel, base_id: str) -> FastAPI:
    app = FastAPI(title="naive PEFT server")
    lock = asyncio.Lock()  # one request at a time
    worker = ThreadPoolExecutor(max_workers=1)  # and one generation at a time even if a cancelled one lingers

    async def tokens(adapter: str | None, prompt: list[int], params: dict[str, Any]) -> AsyncIterator[int]:
        """The request's token ids as they are made; stops the generation if the consumer goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(token: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, token)

        def run() -> None:
            try:
                model.generate(adapter, prompt, params, emit, cancelled)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        async with lock:
            job = loop.run_in_executor(worker, run)
            try:
                while (token := await queue.get()) is not None:
                    yield token
                await job  # re-raise a failed generation
            finally:
                cancelled.set()

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        return JSONResponse({"status": "ready", "model": base_id})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        ids = [base_id, *sorted(model.adapters)]
        return JSONResponse(
            {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "naive"} for i in ids]}
        )

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        name = body.get("model")
        if name not in model.adapters and name not in (base_id, BASE):
            return _error(404, f"model '{name}' not found; available: {base_id}, {', '.join(sorted(model.adapters))}")
        adapter = name if name in model.adapters else None
        try:
            prompt = model.prompt_ids([{"role": m["role"], "content": m["content"]} for m in body["messages"]])
        except Exception as exc:  # a malformed message or one the chat template rejects
            return _error(400, f"messages do not fit the chat template: {exc}", "messages")
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
        params = {
            "max_tokens": max_tokens,
            "ignore_eos": bool(body.get("ignore_eos")),
            "temperature": body.get("temperature"),
        }
        request_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                    "choices": [choice]}  # fmt: skip

        async def events() -> AsyncIterator[str]:
            ids: list[int] = []
            sent = ""
            yield _sse(chunk({"role": "assistant", "content": ""}, None))
            async for token in tokens(adapter, prompt, params):
                ids.append(token)
                text = model.tokenizer.decode(ids, skip_special_tokens=True)
                if len(text) > len(sent) and not text.endswith("\ufffd"):  # hold back half a UTF-8 character
                    yield _sse(chunk({"content": text[len(sent) :]}, None))
                    sent = text
            text = model.tokenizer.decode(ids, skip_special_tokens=True)
            if len(text) > len(sent):  # what was held back
                yield _sse(chunk({"content": text[len(sent) :]}, None))
            finish = "length" if len(ids) >= max_tokens else "stop"
            yield _sse(chunk({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": len(prompt), "completion_tokens": len(ids),
                         "total_tokens": len(prompt) + len(ids)}  # fmt: skip
                yield _sse({"id": request_id, "object": "chat.completion.chunk", "created": created, "model": name,
                            "choices": [], "usage": usage})  # fmt: skip
            yield "data: [DONE]\n\n"

        if body.get("stream"):
            return StreamingResponse(events(), media_type="text/event-stream")
        ids = [token async for token in tokens(adapter, prompt, params)]
        message = {"role": "assistant", "content": model.tokenizer.decode(ids, skip_special_tokens=True)}
        choice = {"index": 0, "message": message, "finish_reason": "length" if len(ids) >= max_tokens else "stop"}
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(ids), "total_tokens": len(prompt) + len(ids)}
        return JSONResponse({"id": request_id, "object": "chat.completion", "created": created, "model": name,
                             "choices": [choice], "usage": usage})  # fmt: skip

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m", help="base model (embedded name or HF dir)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR", help="a PEFT adapter (repeat)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    if not args.adapter:
        parser.error("give at least one --adapter NAME=DIR")
    adapters = {name: Path(path) for name, _, path in (spec.partition("=") for spec in args.adapter)}
    settings = load_settings(None, model=args.model)  # the same cache dir (SWITCHBOARD_CACHE_DIR) as the server
    model_dir = resolve_model_dir(settings.model, settings.cache_dir)
    started = time.perf_counter()
    model = NaiveModel(model_dir, DTYPES[args.dtype], adapters)
    print(f"loaded {model_dir} + {len(adapters)} adapters in {time.perf_counter() - started:.1f}s", flush=True)
    uvicorn.run(create_app(model, settings.base_model_id), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
