"""Tenants end to end: keys created through the admin API and the CLI, used with the official openai client
against the real server on the tiny model; what a key may use (403), its limits (429), revocation (401), and the
key never in the registry file, /metrics or the logs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, ServerFactory, wait_for

ADMIN = {"Authorization": "Bearer sk-admin"}
MSG = [{"role": "user", "content": "hi"}]
SLOW = "gamma"  # its requests wait DELAY_S before the engine (SWITCHBOARD_TEST_FAULTS): they stay open
DELAY_S = 6
SECRETS: dict[str, str] = {}  # every key this module created, by name: none may leak


@pytest.fixture(scope="module")
def server(serve_module: ServerFactory, tiny_adapters: dict[str, Path], tmp_path_factory) -> Server:
    faults = json.dumps({f"{SLOW}@v1": {"delay_s": DELAY_S}})
    env = {"SWITCHBOARD_TEST_FAULTS": faults, "SWITCHBOARD_MAX_QUEUE": "5"}
    state = tmp_path_factory.mktemp("tenants-state")
    srv = serve_module(adapters=tiny_adapters, admin_key="sk-admin", state_dir=state, max_model_len=256, env=env)
    srv.state = state  # --state-dir: where registry.json is
    return srv


def create(server: Server, name: str, **spec) -> str:
    r = httpx.post(server.url + "/admin/keys", json={"name": name, **spec}, headers=ADMIN, timeout=30)
    assert r.status_code == 201, r.text
    SECRETS[name] = r.json()["key"]
    return r.json()["key"]


def client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=60)


def chat(server: Server, key: str, model: str = "alpha") -> httpx.Response:
    body = {"model": model, "messages": MSG, "max_tokens": 2, "ignore_eos": True}
    return httpx.post(
        server.v1 + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def in_flight(server: Server, adapter: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "switchboard_requests_in_flight":
            return sum(s.value for s in family.samples if s.labels.get("adapter") == adapter)
    return 0.0


def rate_limited(server: Server) -> dict[tuple[str, str], float]:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return {
        (s.labels["key"], s.labels["kind"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "switchboard_rate_limited"
        for s in family.samples
        if s.name.endswith("_total")
    }


@pytest.fixture
def slow_requests(server: Server) -> Iterator[list[Future]]:
    """Requests to the slow adapter sent from threads (they stay open DELAY_S); waited for after the test."""
    pool = ThreadPoolExecutor(8)
    futures: list[Future] = []
    yield futures
    for future in futures:
        future.result(timeout=120)
    pool.shutdown()
    wait_for(lambda: in_flight(server, SLOW) == 0, 60, "the slow requests to end")


def hold(server: Server, futures: list[Future], key: str, count: int) -> None:
    """Open `count` more requests of `key` to the slow adapter and wait until the server holds them."""
    before = in_flight(server, SLOW)
    pool = ThreadPoolExecutor(count)
    futures += [pool.submit(chat, server, key, SLOW) for _ in range(count)]
    wait_for(lambda: in_flight(server, SLOW) >= before + count, 60, f"{count} open requests of the slow adapter")


def test_a_created_key_is_needed_and_works(server: Server):
    assert httpx.get(server.v1 + "/models", timeout=10).status_code == 200  # no inference key yet: open
    key = create(server, "everything")
    assert key.startswith("sb-")
    raw = client(server, key).chat.completions.with_raw_response.create(model="alpha", messages=MSG, max_tokens=2)
    assert raw.headers["x-adapter"] == "alpha@v1" and "x-ratelimit-limit-requests" not in raw.headers
    assert httpx.get(server.v1 + "/models", timeout=10).status_code == 401  # a key exists: every /v1 call needs one
    with pytest.raises(openai.AuthenticationError):
        client(server, key + "x").models.list()
    client(server, "sk-admin").models.list()  # the admin key still works on /v1
    # an inference key never manages anything
    assert httpx.get(server.url + "/admin/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    listed = httpx.get(server.url + "/admin/keys", headers=ADMIN).json()["keys"]
    assert [k["name"] for k in listed] == ["everything"] and "key" not in listed[0] and "digest" not in listed[0]
    again = httpx.post(server.url + "/admin/keys", json={"name": "everything"}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_a_restricted_key_gets_403_for_anything_else_whatever_the_header_or_model(server: Server):
    for name, variants in (("alpha-ab", {"alpha": 1, "beta": 1}), ("mixed", {"alpha": 1, "beta": 1})):
        r = httpx.put(f"{server.url}/admin/experiments/{name}", json={"variants": variants}, headers=ADMIN)
        assert r.status_code == 200, r.text
    key = create(server, "support", allow=["alpha*"])
    c = client(server, key)
    assert c.chat.completions.with_raw_response.create(model="alpha", messages=MSG, max_tokens=2).status_code == 200
    ids = {m.id for m in c.models.list().data}  # the base model's id, and only what the key may use
    assert {"alpha", "alpha-ab"} <= ids and not ids & {"beta", "gamma", "mixed"} and len(ids) == 3
    assert c.models.retrieve("alpha").id == "alpha" and c.models.retrieve("alpha-ab").id == "alpha-ab"
    for hidden in ("beta", "mixed"):  # what the key may not use is not found, as OpenAI answers
        with pytest.raises(openai.NotFoundError) as missing:
            c.models.retrieve(hidden)
        assert "available:" in missing.value.message and "gamma" not in missing.value.message
    ab = c.chat.completions.with_raw_response.create(model="alpha-ab", messages=MSG, max_tokens=2, user="u1")
    assert ab.headers["x-experiment"].startswith("alpha-ab/")  # an allowed experiment, whichever variant
    refused = [
        {"model": "beta"},
        {"model": "alpha", "extra_headers": {"X-Adapter": "beta"}},
        {"model": "alpha", "extra_headers": {"X-Adapter": "base"}},
        {"model": "mixed"},  # its variant may be alpha: the experiment's name is what is granted
    ]
    for kwargs in refused:
        with pytest.raises(openai.PermissionDeniedError) as err:
            c.chat.completions.create(messages=MSG, max_tokens=2, **kwargs)
        assert err.value.status_code == 403 and err.value.code == "model_forbidden"
        assert "key 'support' may not use" in err.value.message and "alpha*" in err.value.message


def test_requests_per_minute_429_with_retry_after_and_ratelimit_headers(server: Server):
    key = create(server, "rpm-two", rpm=2)
    c = client(server, key)
    first = c.chat.completions.with_raw_response.create(model="alpha", messages=MSG, max_tokens=2)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    c.chat.completions.create(model="alpha", messages=MSG, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="alpha", messages=MSG, max_tokens=2)
    headers = err.value.response.headers
    assert err.value.code == "rate_limit_exceeded" and "2 requests per minute" in err.value.message
    assert 1 <= int(headers["retry-after"]) <= 30
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "2"
    assert rate_limited(server)[("rpm-two", "requests")] == 1


def test_tokens_per_minute_charge_prompt_and_max_tokens(server: Server):
    key = create(server, "tpm-hundred", tpm=100)
    c = client(server, key)
    raw = c.chat.completions.with_raw_response.create(
        model="alpha", messages=MSG, max_tokens=40, extra_body={"ignore_eos": True}
    )
    prompt = raw.parse().usage.prompt_tokens
    assert raw.headers["x-ratelimit-limit-tokens"] == "100"
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(100 - prompt - 40)
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="alpha", messages=MSG, max_tokens=60)
    assert "100 tokens per minute" in err.value.message and int(err.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError, match="lower max_tokens"):
        c.chat.completions.create(model="alpha", messages=MSG, max_tokens=200)
    assert rate_limited(server)[("tpm-hundred", "tokens")] == 2


def test_max_streams_counts_an_open_stream(server: Server, slow_requests: list[Future]):
    key = create(server, "one-stream", max_streams=1)
    c = client(server, key)
    opened = threading.Event()

    def stream() -> str:
        chunks = c.chat.completions.create(model=SLOW, messages=MSG, max_tokens=3, stream=True)
        opened.set()
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    slow_requests.append(ThreadPoolExecutor(1).submit(stream))
    wait_for(lambda: in_flight(server, SLOW) == 1, 60, "the stream to be open")
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="alpha", messages=MSG, max_tokens=2)
    assert "requests open" in err.value.message and err.value.response.headers["retry-after"] == "1"
    slow_requests[0].result(timeout=120)
    assert c.chat.completions.create(model="alpha", messages=MSG, max_tokens=2).choices
    assert rate_limited(server)[("one-stream", "streams")] == 1


def test_a_key_over_its_fair_share_is_refused_before_others(server: Server, slow_requests: list[Future]):
    greedy, modest = create(server, "greedy"), create(server, "modest")
    hold(server, slow_requests, greedy, 3)
    hold(server, slow_requests, modest, 1)  # 4 of max_queue 5 in flight: fair share is 5 / 2 keys
    refused = chat(server, greedy)
    assert refused.status_code == 429, refused.text
    assert (
        refused.json()["error"]["code"] == "rate_limit_exceeded" and "fair share" in refused.json()["error"]["message"]
    )
    assert chat(server, modest).status_code == 200  # the other key still gets in
    assert rate_limited(server)[("greedy", "fair_share")] == 1


def test_the_cli_creates_lists_and_revokes_and_a_revoked_key_gets_401(server: Server, capsys):
    from switchboard.cli import main

    base = ["keys", "--url", server.url, "--admin-key", "sk-admin"]
    assert main([*base, "create", "cli-team", "--allow", "beta*", "--rpm", "60", "--max-streams", "4"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    SECRETS["cli-team"] = key
    assert chat(server, key, "beta").status_code == 200
    assert main([*base, "list"]) == 0
    listed = capsys.readouterr().out
    assert "cli-team" in listed and "beta*" in listed and key not in listed
    assert main([*base, "revoke", "cli-team"]) == 0
    with pytest.raises(openai.AuthenticationError):
        client(server, key).chat.completions.create(model="beta", messages=MSG, max_tokens=2)
    assert main([*base, "revoke", "cli-team"]) == 1  # 404: gone
    assert "key 'cli-team' not found" in capsys.readouterr().err


def test_keys_never_appear_in_the_registry_metrics_or_logs(server: Server):
    assert len(SECRETS) >= 6
    stored = (server.state / "registry.json").read_text()
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    logs = server.output()
    assert '"keys"' in stored and "rpm-two" in stored and 'key="greedy"' in metrics
    assert " key=greedy" in logs  # the access log names the key (request.state.key_name)
    for secret in SECRETS.values():
        for where, text in (("registry.json", stored), ("/metrics", metrics), ("the log", logs)):
            assert secret not in text and secret[3:20] not in text, f"a key appears in {where}"


def test_keys_survive_a_restart(serve_module: ServerFactory, server: Server):
    key = create(server, "durable", allow=["alpha"])
    again = serve_module.restart(server)
    assert client(again, key).chat.completions.create(model="alpha", messages=MSG, max_tokens=2).choices
    with pytest.raises(openai.PermissionDeniedError):
        client(again, key).chat.completions.create(model="beta", messages=MSG, max_tokens=2)
    with pytest.raises(openai.AuthenticationError):  # revoked before the restart: still revoked
        client(again, SECRETS["cli-team"]).models.list()


def test_keys_in_postgresql_reach_every_replica_and_so_does_a_revocation(
    serve: ServerFactory, postgres_url: str, tiny_adapters: dict[str, Path]
):
    a, b = (serve("--registry", postgres_url, admin_key="sk-admin", adapters=tiny_adapters) for _ in range(2))
    key = create(a, "shared", allow=["base"], rpm=100)

    def served_on_b() -> bool:
        return chat(b, key, "base").status_code == 200

    wait_for(served_on_b, 30, "replica b to accept the key created on a")
    with pytest.raises(openai.PermissionDeniedError):
        client(b, key).chat.completions.create(model="alpha", messages=MSG, max_tokens=2)
    with psycopg_connect(postgres_url) as conn:
        stored = json.dumps(conn.execute("SELECT name, digest, record FROM sb_keys").fetchall())
    assert "shared" in stored and key not in stored
    assert httpx.delete(a.url + "/admin/keys/shared", headers=ADMIN).json() == {"revoked": "shared"}
    wait_for(lambda: chat(b, key, "base").status_code == 401, 30, "replica b to refuse the revoked key")


def psycopg_connect(url: str):
    import psycopg

    return psycopg.connect(url)
