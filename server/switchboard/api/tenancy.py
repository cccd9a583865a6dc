"""A keyed request's way through its key's rules: may it use what routing chose (403), do its limits let it in
(429), and, when it ends, the tokens it did not use go back to its tokens-per-minute bucket."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from ..engine.base import GenerationOutput
from ..limits import Limiter, RateLimited, Ticket
from ..routing import Route
from ..services import Services
from ..tenants import authorize
from .auth import Caller

logger = logging.getLogger(__name__)


def check_route(caller: Caller, route: Route) -> None:
    """403 unless the caller's key may use the adapter (or experiment) routing chose, whatever the request named."""
    authorize(caller.principal, route.ref.name if route.ref is not None else None, route.experiment)


def admit(services: Services, caller: Caller, tokens: int) -> Meter | None:
    """Count the request against its key's limits (None: no key, nothing to count), or raise RateLimited."""
    principal = caller.principal
    if principal is None:
        return None
    try:
        ticket = services.limiter.admit(principal, tokens, services.settings.max_queue)
    except RateLimited as exc:
        services.metrics.rate_limited.labels(principal.name, exc.kind).inc()
        logger.info("key %s refused: over its %s limit", principal.name, exc.kind)
        raise
    return Meter(services.limiter, ticket)


@dataclass
class Meter:
    """An admitted request's ticket and the tokens it has used so far (its prompt once, each choice's completion)."""

    limiter: Limiter
    ticket: Ticket
    prompt: int = 0
    completion: dict[int, int] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return self.ticket.headers

    def close(self) -> None:
        """Release the ticket with what was used (once; later calls do nothing)."""
        self.limiter.release(self.ticket, self.prompt + sum(self.completion.values()))

    async def wrap(
        self, stream: AsyncGenerator[tuple[int, GenerationOutput], None]
    ) -> AsyncGenerator[tuple[int, GenerationOutput], None]:
        """`stream`, counting its tokens; the ticket is released when it ends, fails or is closed."""
        try:
            async for index, out in stream:
                self.prompt = out.prompt_tokens
                self.completion[index] = out.completion_tokens
                yield index, out
        finally:
            self.close()
            await stream.aclose()
