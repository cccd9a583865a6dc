"""What the listening socket runs: uvicorn's own HTTP protocol, with a deadline for the request headers.

uvicorn closes idle kept-alive connections (`timeout_keep_alive`), but a connection that has begun a request and
stopped mid-headers, or that never sent a byte, stays open for as long as the client likes: a few hundred such
clients hold as many file descriptors (slowloris). Here a connection gets `header_timeout_s` to deliver a whole
request head, counted from connecting, or, on a kept-alive connection, from the first byte of its next request;
past it the connection is closed. Bodies and responses are not timed: a long stream is never cut.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


class HeaderDeadline(asyncio.Protocol):
    """Mixed in before uvicorn's HTTP protocol (h11 or httptools: both set `cycle` when a request's headers are
    complete, and keep `loop` and `transport`)."""

    header_timeout_s: float = 10.0
    cycle: Any
    loop: Any
    transport: Any
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        between = self.cycle is None or self.cycle.response_complete  # these bytes begin a request
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a request's headers are complete
            self._disarm()
        elif between and self._header_timer is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            logger.debug("closing a connection that sent no complete request headers in %.1fs", self.header_timeout_s)
            self.transport.close()


def http_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's default HTTP protocol class (httptools when installed, else h11) with the header deadline."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return type("HeaderDeadlineProtocol", (HeaderDeadline, AutoHTTPProtocol), {"header_timeout_s": header_timeout_s})
