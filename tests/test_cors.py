"""CORS: off by default; with --cors-origin a browser app on that origin may call the API, others may not."""

from __future__ import annotations

import httpx

from .conftest import Server, ServerFactory

APP = "https://chat.example.com"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
BODY = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_cors_only_for_the_configured_origin(serve: ServerFactory, tiny_adapters, tiny_server: Server):
    server = serve("--cors-origin", APP, adapters={"alpha": tiny_adapters["alpha"]}, max_model_len=256)
    url = f"{server.v1}/chat/completions"
    preflight = httpx.options(url, headers=PREFLIGHT, timeout=30)
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == APP
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = httpx.post(url, json=BODY, headers={"Origin": APP}, timeout=60)
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == APP
    assert "X-Adapter" in answer.headers["access-control-expose-headers"]
    other = httpx.options(url, headers={**PREFLIGHT, "Origin": "https://evil.example"}, timeout=30)
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    # the default: no CORS headers at all
    plain = httpx.post(f"{tiny_server.v1}/chat/completions", json=BODY, headers={"Origin": APP}, timeout=60)
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
