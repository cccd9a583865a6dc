"""Graceful drain: what `switchboard serve` does on SIGTERM (and Ctrl-C), so a rolling update loses nothing.

1. At once: /ready answers 503 and new inference requests get 503 `shutting_down` (Retry-After: 1), while the
   listener stays open for `drain_delay_s`, so load balancers and Kubernetes see the replica leave.
2. Then the listener closes; requests in flight get `shutdown_grace_s` to finish.
3. Streams still running then are aborted: each ends with an error event and `data: [DONE]`.
4. The lifespan ends (registry and experiment counters flushed, engine stopped); the exit status is 0.

Ctrl-C (SIGINT) skips the drain delay; a second signal stops at once, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .config import Settings
from .listener import http_protocol
from .services import Services

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain window before its own graceful shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain_delay_s: float,
        grace_s: float,
        on_drain: Callable[[], None],
        on_deadline: Callable[[], int],
    ) -> None:
        super().__init__(config)
        self.drain_delay_s, self.grace_s = drain_delay_s, grace_s
        self.on_drain, self.on_deadline = on_drain, on_deadline
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it records the signal and raises it again once shut down, so a drained server would
        # still die by SIGTERM (exit 143). A drain that completed is a clean exit.
        if self.draining or self._loop is None or not self.started:
            self.should_exit = True
            self.force_exit = self.draining  # a second signal: stop now
            return
        self.draining = True
        delay = self.drain_delay_s if sig == signal.SIGTERM else 0.0
        self._loop.call_soon_threadsafe(self._begin, delay)

    def _begin(self, delay: float) -> None:
        logger.info("draining: not ready, new requests refused; closing the listener in %.1fs", delay)
        self.on_drain()
        assert self._loop is not None
        self._loop.call_later(delay, self._close)

    def _close(self) -> None:
        logger.info("closing the listener; in-flight requests have %.1fs to finish", self.grace_s)
        self.should_exit = True
        assert self._loop is not None
        self._loop.call_later(self.grace_s, self._deadline)

    def _deadline(self) -> None:
        aborted = self.on_deadline()
        if aborted:
            logger.warning("shutdown grace period over: aborted %d requests still generating", aborted)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run `app` (whose lifespan puts Services on app.state) until a signal, then drain."""

    def services() -> Services | None:
        found: Services | None = getattr(app.state, "services", None)  # None before the lifespan started
        return found

    def drain() -> None:
        if (s := services()) is not None:
            s.drain()

    def deadline() -> int:
        return s.abort_all() if (s := services()) is not None else 0

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's own timeout comes after ours: by then every stream has been ended cleanly
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        http=http_protocol(settings.header_timeout_s),
        access_log=False,  # ours (api/access.py) says more, once per request
        # json: uvicorn's records go to the root logger's JSON handler instead of its own text handlers
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    DrainingServer(config, settings.drain_delay_s, settings.shutdown_grace_s, drain, deadline).run()
