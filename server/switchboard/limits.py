"""Per-key limits on this replica: requests and tokens per minute (token buckets), requests open at once, and
a fair share of the queue when it fills up (docs/tenants.md).

In memory, per replica: with N replicas behind a load balancer each enforces a key's limits on its own, so a
key gets up to N times its limits in all. Pure and clock-injected, so the tests drive time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import SwitchboardError
from .tenants import Principal

FAIR_SHARE_FROM = 0.8  # fair share applies once requests in flight reach this fraction of max_queue


class RateLimited(SwitchboardError):
    """A key went over one of its limits: OpenAI's 429, with Retry-After and the x-ratelimit-* headers."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, kind: str, retry_after_s: float, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.kind = kind  # requests, tokens, streams or fair_share (switchboard_rate_limited_total's label)
        self.retry_after = max(1, math.ceil(retry_after_s)) if math.isfinite(retry_after_s) else 60
        self.headers = headers


class TokenBucket:
    """`limit` per minute: holds up to `limit`, refills at limit/60 per second."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.level = float(limit)
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, n: float) -> float:
        """Seconds until `n` could be taken (0: now; inf: never, `n` is over the limit)."""
        self._refill()
        if n > self.limit:
            return math.inf
        return max(0.0, (n - self.level) / self.rate)

    def take(self, n: float) -> None:
        self._refill()
        self.level -= n

    def give(self, n: float) -> None:
        self._refill()
        self.level = min(float(self.limit), self.level + n)

    def remaining(self) -> int:
        self._refill()
        return max(0, int(self.level))

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        self._refill()
        return (self.limit - self.level) / self.rate


def duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass
class Account:
    """One key's buckets and requests in flight on this replica."""

    principal: Principal
    requests: TokenBucket | None
    tokens: TokenBucket | None
    open: int = 0

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining())
                out[f"x-ratelimit-reset-{kind}"] = duration(bucket.reset_s())
        return out


@dataclass
class Ticket:
    """An admitted request: what it was charged, released (with the tokens it used) when it ends."""

    account: Account
    charged: int
    headers: dict[str, str]
    released: bool = False


@dataclass
class Limiter:
    """Admits or refuses each keyed request before it reaches the engine."""

    clock: Callable[[], float] = time.monotonic
    fair_from: float = FAIR_SHARE_FROM
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _account(self, principal: Principal) -> Account:
        # keyed by name and digest: a key revoked and created again under its name starts afresh
        key = (principal.name, principal.digest)
        account = self.accounts.get(key)
        if account is None or account.principal != principal:
            account = Account(
                principal,
                TokenBucket(principal.rpm, self.clock) if principal.rpm else None,
                TokenBucket(principal.tpm, self.clock) if principal.tpm else None,
                account.open if account is not None else 0,
            )
            self.accounts[key] = account
        return account

    def in_flight(self) -> int:
        return sum(a.open for a in self.accounts.values())

    def admit(self, principal: Principal, tokens: int, max_queue: int) -> Ticket:
        """Count a request of `principal` that may use `tokens` (prompt + max_tokens), or raise RateLimited.
        Checked in order: requests open at once, fair share of a filling queue, requests/min, tokens/min;
        nothing is taken unless every check passes."""
        with self._lock:
            account = self._account(principal)
            name = principal.name
            if principal.max_streams and account.open >= principal.max_streams:
                raise RateLimited(
                    f"key '{name}' has {account.open} requests open, its limit (max_streams); retry when one ends",
                    "streams",
                    1,
                    account.headers(),
                )
            total = self.in_flight()
            if total >= self.fair_from * max_queue and account.open > 0:
                active = sum(1 for a in self.accounts.values() if a.open > 0)
                share = max_queue / active
                if account.open >= share:
                    raise RateLimited(
                        f"the server is busy ({total} of {max_queue} requests) and key '{name}' holds "
                        f"{account.open}, its fair share of {share:.3g}; retry shortly",
                        "fair_share",
                        1,
                        account.headers(),
                    )
            waits = []
            if account.requests is not None:
                waits.append(("requests", account.requests.wait_s(1), account.requests.limit))
            if account.tokens is not None:
                waits.append(("tokens", account.tokens.wait_s(tokens), account.tokens.limit))
            for kind, wait, limit in waits:
                if wait > 0:
                    per_minute = f"{limit} {kind} per minute"
                    message = (
                        f"key '{name}': this request needs {tokens} tokens (prompt + max_tokens), more than its "
                        f"limit of {per_minute}; lower max_tokens"
                        if math.isinf(wait)
                        else f"key '{name}' is over its limit of {per_minute}; retry in {math.ceil(wait)}s"
                    )
                    raise RateLimited(message, kind, wait, account.headers())
            if account.requests is not None:
                account.requests.take(1)
            if account.tokens is not None:
                account.tokens.take(tokens)
            account.open += 1
            return Ticket(account, tokens, account.headers())

    def release(self, ticket: Ticket, used: int) -> None:
        """The request ended having used `used` tokens: refund the rest of its charge and close it (once)."""
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            ticket.account.open -= 1
            if ticket.account.tokens is not None and used < ticket.charged:
                ticket.account.tokens.give(ticket.charged - used)

    def forget(self, name: str) -> None:
        """Drop a revoked key's buckets (requests still open keep their tickets)."""
        with self._lock:
            for key in [k for k in self.accounts if k[0] == name]:
                del self.accounts[key]
