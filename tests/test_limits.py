"""Keys and their limits without a server: token buckets on an injected clock, the limiter's order of checks,
fair share, refunds, key lookup and what a key may use."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from switchboard.errors import AdapterNotFound, Conflict, Forbidden, InvalidRequest, NotFound
from switchboard.limits import Limiter, RateLimited, TokenBucket, duration
from switchboard.registry import Registry
from switchboard.tenants import Keyring, Principal, authorize, define, digest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_limit_per_minute_and_never_above_it():
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one per second
    assert bucket.wait_s(60) == 0
    bucket.take(60)
    assert bucket.remaining() == 0 and bucket.wait_s(1) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.wait_s(1) == pytest.approx(0.5) and bucket.reset_s() == pytest.approx(59.5)
    clock.now += 3600
    assert bucket.remaining() == 60 and bucket.reset_s() == 0
    assert math.isinf(bucket.wait_s(61))  # more than the limit can never be taken


def test_bucket_refund_is_capped_at_the_limit():
    clock = Clock()
    bucket = TokenBucket(100, clock)
    bucket.take(80)
    bucket.give(50)
    assert bucket.remaining() == 70
    bucket.give(500)
    assert bucket.remaining() == 100


def test_reset_durations_read_like_openais():
    assert [duration(s) for s in (0.02, 1.5, 30, 360)] == ["20ms", "1.5s", "30s", "6m0s"]


def key(name: str = "team", **limits: int) -> Principal:
    return Principal(name, digest=digest(name), **limits)  # type: ignore[arg-type]


def test_requests_per_minute_then_retry_after_and_headers():
    clock = Clock()
    limiter = Limiter(clock)
    team = key(rpm=2)
    for _ in range(2):
        limiter.release(limiter.admit(team, 10, 100), 10)
    with pytest.raises(RateLimited) as err:
        limiter.admit(team, 10, 100)
    assert err.value.kind == "requests" and err.value.retry_after == 30 and err.value.status == 429
    assert err.value.headers["x-ratelimit-limit-requests"] == "2"
    assert err.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.value.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.now += 30
    assert limiter.admit(team, 10, 100).headers["x-ratelimit-remaining-requests"] == "0"


def test_tokens_are_charged_up_front_and_the_unused_part_refunded():
    clock = Clock()
    limiter = Limiter(clock)
    team = key(tpm=100)
    ticket = limiter.admit(team, 90, 100)  # prompt + max_tokens
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "10"
    with pytest.raises(RateLimited) as err:
        limiter.admit(team, 20, 100)
    assert err.value.kind == "tokens" and err.value.retry_after == 6  # 10 more tokens at 100/60 per second
    limiter.release(ticket, 30)  # used 30: 60 come back
    limiter.release(ticket, 0)  # a ticket is released once
    assert limiter.admit(team, 70, 100).headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(RateLimited, match="lower max_tokens"):
        limiter.admit(team, 101, 100)  # more than the limit: never, whatever the wait


def test_a_refused_request_takes_nothing():
    limiter = Limiter(Clock())
    team = key(rpm=5, tpm=50)
    with pytest.raises(RateLimited):
        limiter.admit(team, 60, 100)
    ticket = limiter.admit(team, 50, 100)
    assert ticket.headers["x-ratelimit-remaining-requests"] == "4"


def test_open_requests_are_capped_until_one_ends():
    limiter = Limiter(Clock())
    team = key(max_streams=2)
    first, _ = limiter.admit(team, 1, 100), limiter.admit(team, 1, 100)
    with pytest.raises(RateLimited) as err:
        limiter.admit(team, 1, 100)
    assert err.value.kind == "streams" and err.value.retry_after == 1
    limiter.release(first, 1)
    limiter.admit(team, 1, 100)


def test_a_key_over_its_fair_share_is_refused_first_when_the_queue_fills():
    limiter = Limiter(Clock())
    greedy, modest, newcomer = key("greedy"), key("modest"), key("newcomer")
    for _ in range(3):
        limiter.admit(greedy, 1, 5)  # below 80% of max_queue: no fair share yet
    limiter.admit(modest, 1, 5)  # 4 of 5 in flight: fair share applies from now on (5 / 2 keys = 2.5)
    with pytest.raises(RateLimited) as err:
        limiter.admit(greedy, 1, 5)
    assert err.value.kind == "fair_share" and "fair share" in err.value.message
    limiter.admit(modest, 1, 5)  # holds 1, under its share
    limiter.admit(newcomer, 1, 5)  # holds none: always let in (the engine's queue decides)


def test_a_key_created_again_under_its_name_starts_afresh():
    limiter = Limiter(Clock())
    first, second = (Principal("team", rpm=1, created_at=0.0, digest=d) for d in "ab")
    limiter.admit(first, 1, 100)
    with pytest.raises(RateLimited):
        limiter.admit(first, 1, 100)
    limiter.admit(second, 1, 100)


def test_allowed_patterns_judge_what_routing_chose():
    support = Principal("support", allow=("after-sales*",))
    authorize(support, "after-sales")
    authorize(support, "after-sales-v2")
    authorize(support, "shop", experiment="after-sales-ab")  # an experiment is granted by its own name
    for adapter, experiment in (("shop", ""), (None, ""), ("after-sales", "shop-ab")):
        with pytest.raises(Forbidden, match="may use: after-sales\\*"):
            authorize(support, adapter, experiment)
    authorize(Principal("all"), None)  # no patterns: everything, the bare base too
    authorize(None, "anything")  # no keys configured


def test_keys_are_looked_up_by_digest_static_and_admin_keys_by_value():
    principal, secret = define("support", ["after-sales*"], 60, None, 0)
    assert secret.startswith("sb-") and len(secret) > 40 and principal.digest == digest(secret)
    assert principal.max_streams is None and secret not in str(principal.as_record())
    records = {principal.digest: principal.as_record()}
    ring = Keyring(records.get, 1, ["sk-static"], "sk-admin")
    assert ring.lookup(secret) == principal
    assert ring.lookup("sk-static") == Principal("static-1", created_at=0.0)
    assert ring.lookup("sk-admin") == Principal("admin", created_at=0.0)
    assert ring.lookup(secret[:-1]) is None and ring.lookup("") is None
    assert not Keyring(records.get, 0, [], "sk-admin")  # only an admin key: /v1 stays open


@pytest.mark.parametrize("name", ["Upper", "-dash", "admin", "static-3", "x" * 65, "a b"])
def test_key_names_are_checked(name: str):
    with pytest.raises(InvalidRequest):
        define(name, [], None, None, None)


def test_keys_persist_hashed_in_either_store(new_store):
    registry = Registry(new_store())
    principal, secret = define("support", ["after-sales*"], 60, 20000, 4)
    registry.add_key(principal)
    with pytest.raises(Conflict):
        registry.add_key(define("support", [], None, None, None)[0])
    again = Registry(new_store())  # a restart, or another replica
    assert again.api_keys() == [principal]
    assert again.key_by_digest(digest(secret)) == principal.as_record()
    assert secret not in str(again.state())
    again.revoke_key("support")
    with pytest.raises(NotFound, match="key 'support' not found"):
        again.revoke_key("support")
    after = Registry(new_store())
    [revoked] = after.api_keys()  # kept as a tombstone: /v1 keeps needing keys after the last one is revoked
    assert revoked.revoked_at is not None and after.key_count() == 1
    ring = Keyring(after.key_by_digest, after.key_count(), [], None)
    assert ring and ring.lookup(secret) is None
    renewed, fresh = define("support", [], None, None, None)  # a revoked key's name may be used again
    after.add_key(renewed)
    assert Keyring(after.key_by_digest, 1, [], None).lookup(fresh) == renewed


def test_a_failed_change_keeps_the_keys_as_they_were(tmp_path: Path):
    from switchboard.registry.store import JsonStore

    registry = Registry(JsonStore(tmp_path))
    principal, _ = define("support", [], None, None, None)
    registry.add_key(principal)
    with pytest.raises(AdapterNotFound):
        registry.remove("nothing")
    assert registry.key_by_digest(principal.digest) is not None and registry.key_count() == 1
