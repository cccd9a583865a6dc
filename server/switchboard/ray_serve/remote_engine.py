"""RemoteEngine: the Engine the Ray Serve ingress's app talks to. It tokenizes here (the API layer needs
the tokenizer) and generates on the engine replicas, through a Serve handle: each request for an adapter
version carries `multiplexed_model_id = name@version`, so Serve sends it to a replica that holds it.

Streaming goes through Serve: each output of the replica's generator reaches the client as it is made.
Errors the replica raises (queue full, adapter refused) come back as the same SwitchboardError; a replica
lost mid-request is a 503 for that request only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..engine.base import GenerationOutput, GenerationRequest, SchedulerState
from ..errors import EngineFailure, Overloaded, SwitchboardError

logger = logging.getLogger(__name__)


def replica_error(exc: BaseException) -> BaseException:
    """What a failed call on an engine replica means to the client: the replica's own SwitchboardError
    (unwrapped from Ray's RayTaskError), Serve's back-pressure as a 429, anything else as a 503."""
    from ray.exceptions import RayTaskError
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, SwitchboardError):
        return exc.cause
    if isinstance(exc, SwitchboardError):
        return exc
    if isinstance(exc, BackPressureError):
        return Overloaded("every engine replica is at capacity; retry shortly")
    logger.warning("engine replica call failed: %s", exc)
    return EngineFailure(f"an engine replica failed while serving this request ({type(exc).__name__}); retry")


class RemoteEngine:
    """Implements engine.base.Engine by calling the `EngineReplica` deployment."""

    def __init__(self, settings: Settings, replicas: Any, model_dir: Path) -> None:
        self.model_id = settings.base_model_id
        self.model_dir = model_dir
        self.max_model_len = settings.max_model_len
        self.tokenizer: Any = None
        self.model: Any = None
        self._replicas = replicas  # a ray.serve DeploymentHandle of EngineReplica
        self._affinity = settings.ray.affinity
        self._paths: dict[str, Path] = {}
        self._calls: dict[str, Any] = {}  # request id -> the Serve response generator
        self._running: dict[str, str | None] = {}  # request id -> adapter key
        self.pinned: Callable[[str], bool] = lambda key: False  # set by the ingress once its registry exists

    # ---------------------------------------------------------------- Engine protocol
    def load_model(self) -> None:
        """The tokenizer and the context window; the weights live on the replicas."""
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        config = AutoConfig.from_pretrained(self.model_dir)
        text_config = getattr(config, "text_config", config)
        limit = getattr(text_config, "max_position_embeddings", None) or self.max_model_len
        self.max_model_len = min(self.max_model_len, limit)
        self.model = "ray-serve"

    async def start(self) -> None:
        """Load the tokenizer, then wait until an engine replica answers: the ingress is not ready (its
        /ready says 503) before something can generate."""
        if self.model is None:
            await asyncio.to_thread(self.load_model)
        started = time.monotonic()
        while True:
            answers = await self._replicas.broadcast("stats").results_async(timeout_s=10, return_exceptions=True)
            if any(isinstance(a, dict) for a in answers):
                return
            if time.monotonic() - started > 30:
                logger.info("waiting for an engine replica to start (%.0f s)", time.monotonic() - started)
                started = time.monotonic()
            await asyncio.sleep(1)

    async def shutdown(self) -> None:
        for call in list(self._calls.values()):
            call.cancel()

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationOutput]:
        key = request.adapter
        options: dict[str, Any] = {"stream": True}
        if key is not None and self._affinity:
            options["multiplexed_model_id"] = key
        path = str(self._paths[key]) if key is not None and key in self._paths else None
        if key is not None and path is None:
            raise EngineFailure(f"adapter '{key}' is not loaded in the engine")
        pinned = key is not None and self.pinned(key)
        call = self._replicas.options(**options).generate.remote(request, path, pinned)
        self._calls[request.request_id] = call
        self._running[request.request_id] = key
        finished = False
        try:
            async for out in call:
                finished = out.finish_reason is not None
                yield out
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - mapped to what the client is told
            raise replica_error(exc) from None
        finally:
            self._calls.pop(request.request_id, None)
            self._running.pop(request.request_id, None)
            if not finished:
                call.cancel()  # the replica's generator is cancelled, which aborts the request there

    def abort(self, request_id: str) -> None:
        call = self._calls.get(request_id)
        if call is not None:
            call.cancel()

    async def add_adapter(self, key: str, path: Path) -> None:
        """Validated by the ingress's registration already; a replica loads it on its first request."""
        self._paths[key] = Path(path)

    async def remove_adapter(self, key: str) -> None:
        """The version was removed: every replica unloads it once its requests there have finished."""
        self._paths.pop(key, None)
        results = await self._replicas.broadcast("forget", key).results_async(timeout_s=30, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):  # a replica that is gone holds nothing
                logger.warning("an engine replica did not confirm unloading %s: %s", key, result)

    def resident_adapters(self) -> list[str]:
        return list(self._paths)

    def occupancy(self) -> dict[str, int]:
        """Requests this ingress has in flight on the replicas (their own queues are per replica)."""
        n = len(self._calls)
        return {"pending": n, "running": n}

    def scheduler_state(self) -> SchedulerState:
        """The ingress's requests on the replicas, as running; KV use is each replica's own (not summed
        here: /admin/replicas has the replicas' figures)."""
        adapters = tuple(sorted({key for key in self._running.values() if key is not None}))
        return SchedulerState(running=len(self._running), running_adapters=adapters)

    def describe(self) -> dict[str, str]:
        return {"engine": "ray-serve", "device": "replicas", "dtype": "per replica", "quantize": "per replica"}

    # ---------------------------------------------------------------- for /admin/replicas
    async def replica_stats(self) -> list[dict[str, Any]]:
        """Each engine replica's own account: id, resident adapters, loads, evictions, requests served
        (a replica that does not answer within 10 s is listed with the error)."""
        results = await self._replicas.broadcast("stats").results_async(timeout_s=10, return_exceptions=True)
        stats = [r if isinstance(r, dict) else {"replica": None, "error": str(r)} for r in results]
        return sorted(stats, key=lambda r: str(r.get("replica")))
