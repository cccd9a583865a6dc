"""Take the README's console screenshots against a running server (the real model and bundled adapters):

    switchboard serve --config adapters/switchboard.yaml --admin-key KEY --state-dir /tmp/shots-state &
    python docs/console/screenshots.py http://127.0.0.1:8000 KEY

Drives Debian's chromium with Playwright, as tests/test_console_browser.py does; changes the server's
registry (an alias, an experiment), so point it at a throwaway state dir.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main(url: str, admin_key: str) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.on("dialog", lambda dialog: dialog.accept())
        tab.goto(f"{url}/console/#playground")
        tab.wait_for_selector("body[data-ready]", state="attached")
        tab.fill("#admin-key", admin_key)
        tab.click("#keys button[type=submit]")
        tab.wait_for_function("() => document.querySelectorAll('#target-list option').length > 3")
        for i, target in enumerate(["after-sales", "shop", "base", ""]):
            tab.locator(".target").nth(i).fill(target)
        tab.fill("#play-message", "我收到的毯子破了，怎么办？")
        tab.fill("#play-max-tokens", "80")
        tab.click("#play-send")
        tab.wait_for_function(
            "() => [...document.querySelectorAll('.column .stats')].every(s => s.textContent.includes('tokens/s'))",
            timeout=300_000,
        )
        tab.screenshot(path=str(OUT / "playground.png"), full_page=True)

        for target in ("shop@v1", "after-sales@v1"):
            httpx.put(f"{url}/admin/aliases/assistant", json={"target": target}, headers=admin).raise_for_status()
        tab.goto(f"{url}/console/#registry")
        tab.wait_for_selector("tr[data-alias='assistant']")
        tab.screenshot(path=str(OUT / "registry.png"), full_page=True)

        tab.goto(f"{url}/console/#experiments")
        tab.fill("#exp-name", "greeting-ab")
        tab.fill("#exp-variants", "pre-sales=50, shop=50")
        tab.click("#exp-form button[type=submit]")
        tab.wait_for_selector("#exp-table")
        rng = random.Random(0)
        for i in range(16):
            answer = httpx.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "greeting-ab",
                    "user": f"user-{i}",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "你好，请问几天能发货？"}],
                },
                timeout=120,
            ).raise_for_status()
            score = rng.choice([3, 4, 5]) if "shop" in answer.headers.get("x-experiment", "") else rng.choice([2, 3, 4])
            httpx.post(f"{url}/v1/feedback", json={"id": answer.json()["id"], "score": score}).raise_for_status()
        time.sleep(4)
        tab.screenshot(path=str(OUT / "experiments.png"), full_page=True)

        tab.goto(f"{url}/console/#traffic")
        tab.wait_for_selector("#traffic-totals")
        time.sleep(3)
        tab.screenshot(path=str(OUT / "traffic.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
