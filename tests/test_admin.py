"""Runtime adapter management on the real server: register, version, alias, remove, validate, evict."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import Server, ServerFactory

ADMIN = {"Authorization": "Bearer sk-admin"}
MSG = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture(scope="module")
def admin_server(serve_module: ServerFactory, tmp_path_factory, root: Path) -> Server:
    work = tmp_path_factory.mktemp("admin-server")
    shutil.copytree(root / "alpha", work / "static" / "static-one")
    return serve_module(
        "--api-key", "sk-infer", "--max-resident-adapters", "4", "--max-lora-rank", "16",
        adapter_dir=work / "static", adapter_root=root, state_dir=work / "state", admin_key="sk-admin",
        max_model_len=256,
    )  # fmt: skip


def admin(server: Server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=ADMIN, timeout=60, **kwargs)


def chat(server: Server, model: str, max_tokens: int = 6, headers: dict | None = None) -> httpx.Response:
    body = {"model": model, "messages": MSG, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return httpx.post(
        server.v1 + "/chat/completions",
        json=body,
        timeout=60,
        headers={"Authorization": "Bearer sk-infer", **(headers or {})},
    )


def answer(server: Server, model: str) -> tuple[str, str]:
    resp = chat(server, model)
    assert resp.status_code == 200, resp.text
    return resp.headers["x-adapter"], resp.json()["choices"][0]["message"]["content"]


def test_admin_auth(admin_server: Server, tiny_server: Server):
    assert httpx.get(admin_server.url + "/admin/adapters").status_code == 401
    inference = httpx.get(admin_server.url + "/admin/adapters", headers={"Authorization": "Bearer sk-infer"})
    assert inference.status_code == 403 and "inference keys" in inference.json()["error"]["message"]
    wrong = httpx.get(admin_server.url + "/admin/adapters", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    off = httpx.get(tiny_server.url + "/admin/adapters", headers=ADMIN)
    assert off.status_code == 403 and "--admin-key" in off.json()["error"]["message"]
    off_vllm = httpx.post(tiny_server.v1 + "/load_lora_adapter", json={"lora_name": "x", "lora_path": "/x"})
    assert off_vllm.status_code == 403


def test_register_serves_without_restart(admin_server: Server, root: Path):
    resp = admin(admin_server, "POST", "/admin/adapters", json={"name": "fresh", "path": str(root / "beta")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["ref"] == "fresh@v1"
    client = openai.OpenAI(base_url=admin_server.v1, api_key="sk-infer", max_retries=0)
    assert "fresh" in {m.id for m in client.models.list().data}
    served, text = answer(admin_server, "fresh")
    assert served == "fresh@v1"
    # the same weights registered under another name answer the same
    assert answer(admin_server, "static-one")[1] != text
    listing = admin(admin_server, "GET", "/admin/adapters").json()
    fresh = next(a for a in listing["adapters"] if a["name"] == "fresh")
    assert fresh["versions"][0]["resident"] is True and fresh["current"] == "v1"


def test_same_name_reload_bumps_version_and_never_serves_old_weights(admin_server: Server, root: Path):
    admin(admin_server, "POST", "/admin/adapters", json={"name": "swap", "path": str(root / "alpha")})
    _, with_alpha = answer(admin_server, "swap")
    resp = admin(admin_server, "POST", "/admin/adapters", json={"name": "swap", "path": str(root / "gamma")})
    assert resp.json()["ref"] == "swap@v2"
    served, with_gamma = answer(admin_server, "swap")
    assert served == "swap@v2"
    admin(admin_server, "POST", "/admin/adapters", json={"name": "gamma-ref", "path": str(root / "gamma")})
    assert with_gamma == answer(admin_server, "gamma-ref")[1] != with_alpha
    assert answer(admin_server, "swap@v1") == ("swap@v1", with_alpha)


def test_a_retried_registration_returns_the_version_it_made(admin_server: Server, root: Path):
    """Same name, identical files (a client retrying after a timeout): the same version, no second copy;
    different files: a new version."""
    first = admin(admin_server, "POST", "/admin/adapters", json={"name": "retry", "path": str(root / "beta")})
    again = admin(admin_server, "POST", "/admin/adapters", json={"name": "retry", "path": str(root / "beta")})
    assert first.status_code == again.status_code == 201
    assert first.json()["ref"] == again.json()["ref"] == "retry@v1"
    other = admin(admin_server, "POST", "/admin/adapters", json={"name": "retry", "path": str(root / "gamma")})
    assert other.json()["ref"] == "retry@v2"
    listed = next(a for a in admin(admin_server, "GET", "/admin/adapters").json()["adapters"] if a["name"] == "retry")
    assert [v["version"] for v in listed["versions"]] == ["v1", "v2"]


def test_explicit_version_and_conflict(admin_server: Server, root: Path):
    ok = admin(
        admin_server,
        "POST",
        "/admin/adapters",
        json={"name": "named", "path": str(root / "beta"), "version": "2026-11-25"},
    )
    assert ok.json()["ref"] == "named@2026-11-25"
    again = admin(
        admin_server,
        "POST",
        "/admin/adapters",
        json={"name": "named", "path": str(root / "beta"), "version": "2026-11-25"},
    )
    assert again.status_code == 409


def test_alias_promote_and_rollback_under_load(admin_server: Server, root: Path):
    for src in ("alpha", "beta"):
        admin(admin_server, "POST", "/admin/adapters", json={"name": "live", "path": str(root / src)})
    assert admin(admin_server, "PUT", "/admin/aliases/prod", json={"target": "live@v1"}).status_code == 200
    results: list[tuple[int, str]] = []

    async def stream_forever(stop: asyncio.Event) -> None:
        body = {"model": "prod", "messages": MSG, "max_tokens": 12, "stream": True, "ignore_eos": True}
        async with httpx.AsyncClient(
            base_url=admin_server.v1, timeout=60, headers={"Authorization": "Bearer sk-infer"}
        ) as ac:
            while not stop.is_set():
                async with ac.stream("POST", "/chat/completions", json=body) as r:
                    lines = [line async for line in r.aiter_lines() if line]
                    ok = r.status_code == 200 and lines[-1] == "data: [DONE]" and "error" not in lines[-2]
                    results.append((r.status_code if ok else 599, r.headers.get("x-adapter", "")))

    async def served_once(target: str) -> None:
        """Hold the alias on `target` until a request started after the move was served by it."""
        seen = len(results)
        deadline = asyncio.get_running_loop().time() + 120
        while not any(a == target for _, a in results[seen:]):
            assert asyncio.get_running_loop().time() < deadline, f"no request reached {target}"
            await asyncio.sleep(0.02)

    async def main() -> None:
        stop = asyncio.Event()
        streams = [asyncio.create_task(stream_forever(stop)) for _ in range(8)]
        async with httpx.AsyncClient(base_url=admin_server.url, headers=ADMIN, timeout=60) as ac:
            await served_once("live@v1")
            for target in ("live@v2", "live@v1", "live@v2"):
                assert (await ac.put("/admin/aliases/prod", json={"target": target})).status_code == 200
                await served_once(target)
            assert (await ac.post("/admin/aliases/prod/rollback")).json()["target"] == "live@v1"
            await served_once("live@v1")
        stop.set()
        await asyncio.gather(*streams)

    asyncio.run(main())
    assert results and all(status == 200 for status, _ in results), results
    assert {adapter for _, adapter in results} <= {"live@v1", "live@v2"}
    assert len({adapter for _, adapter in results}) == 2
    listing = admin(admin_server, "GET", "/admin/adapters").json()
    assert listing["aliases"]["prod"] == "live@v1"


def test_remove_404s_new_requests_while_in_flight_finish(admin_server: Server, root: Path):
    admin(admin_server, "POST", "/admin/adapters", json={"name": "leaving", "path": str(root / "gamma")})

    async def main() -> tuple[int, str | None]:
        body = {"model": "leaving", "messages": MSG, "max_tokens": 80, "stream": True, "ignore_eos": True}
        async with (
            httpx.AsyncClient(timeout=60, headers={"Authorization": "Bearer sk-infer"}) as ac,
            ac.stream("POST", admin_server.v1 + "/chat/completions", json=body) as r,
        ):
            lines = r.aiter_lines()
            await anext(lines)
            removed = await ac.delete(admin_server.url + "/admin/adapters/leaving", headers=ADMIN)
            assert removed.json() == {"removed": ["leaving@v1"]}
            assert chat(admin_server, "leaving").status_code == 404
            rest = [line async for line in lines if line.startswith("data: {")]
            finish = json.loads(rest[-1][6:])["choices"][0]["finish_reason"]
            return r.status_code, finish

    status, finish = asyncio.run(main())
    assert (status, finish) == (200, "length")
    assert "leaving" not in {m["name"] for m in admin(admin_server, "GET", "/admin/adapters").json()["adapters"]}


def test_remove_refuses_while_an_alias_points_at_it(admin_server: Server, root: Path):
    admin(
        admin_server,
        "POST",
        "/admin/adapters",
        json={"name": "aliased", "path": str(root / "beta"), "alias": "aliased-prod"},
    )
    assert admin(admin_server, "DELETE", "/admin/adapters/aliased").status_code == 409
    assert admin(admin_server, "DELETE", "/admin/aliases/aliased-prod").status_code == 200
    assert admin(admin_server, "DELETE", "/admin/adapters/aliased@v1").status_code == 200


def test_lru_eviction_and_transparent_reload(admin_server: Server, root: Path):
    expected = {}
    for i in range(6):
        name = f"lru{i}"
        admin(admin_server, "POST", "/admin/adapters", json={"name": name, "path": str(root / "beta")})
        expected[name] = answer(admin_server, name)[1]
    resident = admin(admin_server, "GET", "/admin/adapters").json()["resident"]
    assert len(resident) <= 4 and "lru0@v1" not in resident
    assert answer(admin_server, "lru0") == ("lru0@v1", expected["lru0"])  # reloaded on demand
    assert "lru0@v1" in admin(admin_server, "GET", "/admin/adapters").json()["resident"]


def test_pinned_adapter_is_never_evicted(admin_server: Server, root: Path):
    admin(admin_server, "POST", "/admin/adapters", json={"name": "vip", "path": str(root / "gamma"), "pinned": True})
    for i in range(5):
        admin(admin_server, "POST", "/admin/adapters", json={"name": f"churn{i}", "path": str(root / "alpha")})
        answer(admin_server, f"churn{i}")
        assert "vip@v1" in admin(admin_server, "GET", "/admin/adapters").json()["resident"]


def test_vllm_compatible_endpoints(admin_server: Server, root: Path):
    url = admin_server.v1
    ok = httpx.post(
        url + "/load_lora_adapter", json={"lora_name": "vl", "lora_path": str(root / "alpha")}, headers=ADMIN
    )
    assert ok.status_code == 200 and ok.text == "Success: LoRA adapter 'vl' added successfully."
    again = httpx.post(
        url + "/load_lora_adapter", json={"lora_name": "vl", "lora_path": str(root / "alpha")}, headers=ADMIN
    )
    assert again.status_code == 400 and again.json()["error"]["message"] == (
        "The lora adapter 'vl' has already been loaded."
    )
    missing = httpx.post(url + "/load_lora_adapter", json={"lora_name": "vl2"}, headers=ADMIN)
    assert missing.status_code == 400
    assert answer(admin_server, "vl")[0] == "vl@v1"
    gone = httpx.post(url + "/unload_lora_adapter", json={"lora_name": "vl"}, headers=ADMIN)
    assert gone.status_code == 200 and gone.text == "Success: LoRA adapter 'vl' removed successfully."
    unknown = httpx.post(url + "/unload_lora_adapter", json={"lora_name": "vl"}, headers=ADMIN)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "The lora adapter 'vl' cannot be found."
    assert (
        httpx.post(
            url + "/load_lora_adapter",
            json={"lora_name": "x", "lora_path": "/x"},
            headers={"Authorization": "Bearer sk-infer"},
        ).status_code
        == 403
    )


def test_cli_thin_client(admin_server: Server, root: Path, capsys: pytest.CaptureFixture):
    from switchboard.cli import main

    env = {"SWITCHBOARD_URL": admin_server.url, "SWITCHBOARD_ADMIN_KEY": "sk-admin"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["adapters", "add", "cli-made", str(root / "beta")]) == 0
        assert "registered cli-made@v1" in capsys.readouterr().out
        assert main(["adapters", "add", "cli-made", str(root / "gamma")]) == 0
        assert main(["adapters", "promote", "cli-prod", "cli-made@v1"]) == 0
        assert main(["adapters", "promote", "cli-prod", "cli-made@v2"]) == 0
        assert "cli-made@v2 (was cli-made@v1)" in capsys.readouterr().out
        assert main(["adapters", "rollback", "cli-prod"]) == 0
        assert "cli-prod -> cli-made@v1" in capsys.readouterr().out
        assert main(["adapters", "list"]) == 0
        listing = capsys.readouterr().out
        assert "cli-made@v2" in listing and "cli-prod" in listing and "ADAPTER" in listing
        assert main(["adapters", "remove", "cli-made@v2"]) == 0
        assert main(["adapters", "remove", "nope"]) == 1
        assert "not found" in capsys.readouterr().err
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_rss_stays_flat_over_load_unload_cycles(admin_server: Server, root: Path):
    def rss_kb() -> int:
        status = Path(f"/proc/{admin_server.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])

    def cycle(i: int) -> None:
        r = admin(admin_server, "POST", "/admin/adapters", json={"name": "cycle", "path": str(root / "beta")})
        assert r.status_code == 201, r.text
        assert admin(admin_server, "DELETE", "/admin/adapters/cycle").status_code == 200

    for i in range(20):  # warm up allocator pools
        cycle(i)
    before = rss_kb()
    for i in range(200):
        cycle(i)
    growth_mb = (rss_kb() - before) / 1024
    print(f"RSS growth over 200 load/unload cycles: {growth_mb:.1f} MB")
    assert growth_mb < 40
