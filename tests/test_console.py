"""The console is static files behind a strict CSP, off unless asked for, and no way around the keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .browser_support import ADMIN_KEY, INFERENCE_KEY, start_console_server
from .conftest import Server, ServerFactory


@pytest.fixture(scope="module")
def console_server(serve_module: ServerFactory, root: Path) -> Server:
    return start_console_server(serve_module, root)


def test_the_console_is_off_unless_asked_for(tiny_server: Server):
    assert httpx.get(f"{tiny_server.url}/console/").status_code == 404
    assert httpx.get(f"{tiny_server.url}/console/app.js").status_code == 404


def test_every_console_file_comes_with_a_strict_csp(console_server: Server):
    redirect = httpx.get(f"{console_server.url}/console")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/console/"
    for name, kind in (("", "text/html"), ("app.js", "text/javascript"), ("console.css", "text/css")):
        response = httpx.get(f"{console_server.url}/console/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(kind)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"


def test_only_the_console_files_can_be_named(console_server: Server):
    for name in ("nope.js", "..%2Fapp.py", "%2E%2E%2F__init__.py", "api.py"):
        response = httpx.get(f"{console_server.url}/console/{name}")
        assert response.status_code == 404, name
        assert "error" in response.json()


def test_the_console_holds_no_key_and_the_api_still_wants_one(console_server: Server):
    """The pages are public; everything they show comes from the API, which still asks for the keys."""
    page = httpx.get(f"{console_server.url}/console/").text
    assert ADMIN_KEY not in page and INFERENCE_KEY not in page
    assert httpx.get(f"{console_server.url}/admin/adapters").status_code == 401
    wrong = httpx.get(f"{console_server.url}/admin/adapters", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    inference = httpx.get(f"{console_server.url}/admin/adapters", headers={"Authorization": f"Bearer {INFERENCE_KEY}"})
    assert inference.status_code == 403
    assert httpx.get(f"{console_server.url}/v1/models").status_code == 401


def test_the_admin_view_has_what_the_registry_page_shows(console_server: Server, root: Path):
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.put(
        f"{console_server.url}/admin/aliases/console-prod", json={"target": "alpha"}, headers=admin
    ).raise_for_status()
    httpx.put(
        f"{console_server.url}/admin/aliases/console-prod", json={"target": "beta"}, headers=admin
    ).raise_for_status()
    view = httpx.get(f"{console_server.url}/admin/adapters", headers=admin).raise_for_status().json()
    assert response.json()["target"] == "alpha@v1"
    assert view["alias_history"]["console-prod"] == ["alpha@v1"]
    assert view["adapter_roots"] == [str(root)]
    assert isinstance(view["experiments"], list)
    versions = {v["ref"]: v for a in view["adapters"] for v in a["versions"]}
    assert versions["alpha@v1"]["resident"] and versions["alpha@v1"]["load_s"] > 0
    assert "manifest" in versions["alpha@v1"]  # the fixture adapters have none: null
