"""The web console (/console, when `console` is on): static files only, served with a strict CSP.

The console holds no secret and has no endpoint of its own: its pages call the same API as any client, with
the keys the user types in (kept in the tab's session storage), so it opens nothing the keys do not. The CSP
allows scripts, styles and connections from this origin only, and no inline script or style, so text that
reaches the page (adapter names, model output) can never run, even if a page forgot to escape it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ..errors import NotFound

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def console_files() -> dict[str, Path]:
    """The files the console may serve: those in its folder with a known type (nothing else can be named)."""
    return {p.name: p for p in sorted(CONSOLE_DIR.iterdir()) if p.is_file() and p.suffix in TYPES}


FILES = console_files()


@router.get("/console")
async def console_root() -> Response:
    # the pages load their modules relative to /console/
    return RedirectResponse("/console/", status_code=307, headers=HEADERS)


@router.get("/console/{name}")
async def console_file(name: str) -> Response:
    path = FILES.get(name)
    if path is None:
        raise NotFound(f"console file '{name}' not found")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


@router.get("/console/")
async def console_index() -> Response:
    return await console_file("index.html")
