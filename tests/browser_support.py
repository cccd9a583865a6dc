"""What the console's browser tests share (not collected): Debian's Chromium driven by Playwright, the console
server, and helpers to wait on the page.

Chromium comes from Debian's `chromium` package (/usr/bin/chromium; `make browser` installs it): browsers
cannot be downloaded here, so Playwright is told where it is. Without it (or without the `playwright` package)
the browser tests skip saying so, unless SWITCHBOARD_REQUIRE_BROWSER is set (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = Path(os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER = "SWITCHBOARD_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_KEY = "console-admin-key"
INFERENCE_KEY = "console-inference-key"
# where screenshot() saves the pages: unset = nowhere (a test run leaves the repo as it was); the README's come
# from `SWITCHBOARD_SCREENSHOTS=docs/console make test ARGS=tests/test_console_browser.py`
SCREENSHOTS = os.environ.get("SWITCHBOARD_SCREENSHOTS")


def missing_browser(why: str) -> NoReturn:
    """Skip a browser test, or fail it where CI requires the browser (REQUIRE_BROWSER set)."""
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{why}, and {REQUIRE_BROWSER} is set")
    pytest.skip(why)


def launch() -> Iterator[Any]:
    """A headless Chromium (Debian's) under Playwright, closed afterwards."""
    if not CHROMIUM.exists():
        missing_browser(f"{CHROMIUM} not found: install Debian's chromium (make browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_browser("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_console(browser: Any, url: str, page: str = "playground", admin_key: str = ADMIN_KEY) -> Any:
    """A fresh tab (its own session storage) on a console page, keys entered once in the key form. The tab
    records its uncaught script errors (`errors`) and the confirmations it asked for (`dialogs`, each accepted)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.errors, tab.dialogs = [], []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))

    def accept(dialog: Any) -> None:  # the console asks before each change
        tab.dialogs.append(dialog.message)
        dialog.accept()

    tab.on("dialog", accept)
    tab.goto(f"{url}/console/#{page}")
    tab.wait_for_selector("body[data-ready]", state="attached")
    tab.fill("#admin-key", admin_key)
    tab.fill("#inference-key", INFERENCE_KEY)
    tab.click("#keys button[type=submit]")
    return tab


def screenshot(tab: Any, name: str) -> None:
    """Save the page as NAME.png in $SWITCHBOARD_SCREENSHOTS when set (docs/console/ for the README)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def start_console_server(serve_module: Any, root: Path) -> Any:
    """The console's test server: the tiny model, an inference key, the admin key, `root` as adapter dir and root."""
    keys = {"adapter_dir": root, "adapter_root": root, "admin_key": ADMIN_KEY, "max_model_len": 256}
    return serve_module("--console", "--api-key", INFERENCE_KEY, **keys)
