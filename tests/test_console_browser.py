"""The console in a real headless browser (Debian's Chromium under Playwright) against the real server on
the tiny model: answers stream side by side, model output is text, a wrong key is an error in words.
Each page's screenshot lands in docs/console/ (the README shows them)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .browser_support import ADMIN_KEY, INFERENCE_KEY, launch, open_console, screenshot, start_console_server
from .conftest import Server, ServerFactory

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
INFERENCE = {"Authorization": f"Bearer {INFERENCE_KEY}"}

# records, per column, each time its answer's length changed: [ms since page load, length]
WATCH_GROWTH = """() => {
  window.growth = {};
  const columns = document.querySelector('#play-columns');
  new MutationObserver(() => {
    for (const column of columns.querySelectorAll('.column')) {
      const seen = (window.growth[column.dataset.target] ||= []);
      const length = column.querySelector('.answer').textContent.length;
      if (!seen.length || seen[seen.length - 1][1] !== length) seen.push([performance.now(), length]);
    }
  }).observe(columns, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture(scope="module")
def console_server(serve_module: ServerFactory, root: Path) -> Server:
    return start_console_server(serve_module, root)


def ask(tab: Any, targets: list[str], message: str, extra: dict[str, Any], max_tokens: int = 64) -> None:
    for i, target in enumerate([*targets, "", "", ""][:4]):
        tab.locator(".target").nth(i).fill(target)
    tab.fill("#play-message", message)
    tab.fill("#play-max-tokens", str(max_tokens))
    tab.fill("#play-extra", json.dumps(extra))
    tab.click("#play-send")


def wait_answered(tab: Any, count: int, timeout_ms: float = 60_000) -> list[Any]:
    # a function, not an expression: the console's CSP forbids eval, and Playwright evaluates strings with it
    tab.wait_for_function(
        "(count) => document.querySelectorAll('.column .stats').length === count && "
        "[...document.querySelectorAll('.column .stats')].every(s => /tokens\\/s|error/.test(s.textContent))",
        arg=count,
        timeout=timeout_ms,
    )
    return tab.locator(".column").all()


def test_playground_streams_two_adapters_side_by_side(browser: Any, console_server: Server):
    tab = open_console(browser, console_server.url)
    tab.wait_for_function("() => document.querySelectorAll('#target-list option').length > 3")
    tab.evaluate(WATCH_GROWTH)
    ask(tab, ["alpha", "beta"], "Hello! 你好", {"ignore_eos": True, "temperature": 0}, max_tokens=200)
    columns = wait_answered(tab, 2)
    growth = tab.evaluate("window.growth")
    assert set(growth) == {"alpha", "beta"}
    for target, seen in growth.items():
        lengths = [length for _, length in seen]
        assert len(lengths) >= 4, f"{target}: the answer came in {len(lengths)} steps, not streamed: {seen}"
        assert lengths == sorted(lengths), f"{target}: the answer shrank: {seen}"
    # side by side: each column was growing while the other was
    assert max(seen[0][0] for seen in growth.values()) < min(seen[-1][0] for seen in growth.values())
    for column, target in zip(columns, ("alpha", "beta"), strict=True):
        assert column.locator("h3").inner_text().startswith(target)
        assert f"{target}@v1" in column.locator(".served").inner_text()  # the X-Adapter header
        stats = column.locator(".stats").inner_text()
        assert "TTFT" in stats and "200 tokens" in stats and "finish: length" in stats
        assert "你好" in column.locator(".msg.user").inner_text()
    assert tab.locator("#play-history li").count() == 1
    screenshot(tab, "playground")
    assert not tab.errors


def test_html_in_model_output_is_shown_as_text(browser: Any, console_server: Server):
    """The tiny model is made to write HTML (and Chinese) by a JSON schema whose only string it may write is that."""
    html = "<img src=x onerror=window.pwned=1><svg onload=window.pwned=2></svg> 你好，世界"
    schema = {"type": "object", "properties": {"html": {"const": html}}, "required": ["html"]}
    schema["additionalProperties"] = False  # else the model may go on with keys of its own
    extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "page", "schema": schema}}}
    tab = open_console(browser, console_server.url)
    ask(tab, ["alpha", "base"], "Write HTML", extra, max_tokens=200)
    columns = wait_answered(tab, 2, timeout_ms=120_000)
    for column in columns:
        answer = column.locator(".answer")
        assert json.loads(answer.inner_text()) == {"html": html}
        assert answer.locator("img, svg").count() == 0
    assert tab.evaluate("window.pwned") is None
    assert not tab.errors


def test_a_wrong_admin_key_is_an_error_in_words(browser: Any, console_server: Server):
    tab = open_console(browser, console_server.url, page="registry", admin_key="not-the-key")
    tab.wait_for_selector("#banner:not([hidden])")
    assert "invalid admin key" in tab.inner_text("#banner")
    assert tab.evaluate("sessionStorage.getItem('switchboard.adminKey')") == "not-the-key"
    assert not tab.errors


def test_register_shows_the_new_version_without_a_reload(browser: Any, console_server: Server, root: Path):
    shutil.copytree(root / "beta", root / "gamma-next")  # other files: identical ones are a retry of v1
    tab = open_console(browser, console_server.url, page="registry")
    tab.wait_for_selector('tr[data-ref="gamma@v1"]')
    tab.evaluate("() => { window.notReloaded = true; }")
    tab.fill("#reg-name", "gamma")
    tab.fill("#reg-path", str(root / "gamma-next"))
    tab.click("#reg-form button[type=submit]")
    tab.wait_for_selector('tr[data-ref="gamma@v2"]')
    assert tab.evaluate("window.notReloaded") is True
    assert "registered gamma@v2" in tab.inner_text("#banner")
    row = tab.locator('tr[data-ref="gamma@v2"]')
    assert "current" in row.inner_text() and "loaded" in row.inner_text()
    screenshot(tab, "registry")
    # and removed again, after the confirmation
    row.locator("button", has_text="Remove").click()
    tab.wait_for_selector('tr[data-ref="gamma@v2"]', state="detached")
    assert "removed gamma@v2" in tab.inner_text("#banner")
    assert tab.dialogs == [
        f"Register gamma (next version) from {root / 'gamma-next'}?",
        "Remove gamma@v2? New requests for it get a 404; requests already running finish on it.",
    ]
    assert not tab.errors


def test_promote_and_roll_back_an_alias(browser: Any, console_server: Server):
    tab = open_console(browser, console_server.url, page="registry")
    for target in ("alpha@v1", "beta@v1"):
        tab.fill("#alias-name", "console-live")
        tab.fill("#alias-target", target)
        tab.click("#alias-form button[type=submit]")
        tab.wait_for_selector(f'tr[data-alias="console-live"] td.target:text-is("{target}")')
    row = tab.locator('tr[data-alias="console-live"]')
    assert row.locator("td.history").inner_text() == "alpha@v1"
    assert "console-live → beta@v1 (was alpha@v1)" in tab.inner_text("#banner")
    row.locator("button", has_text="Roll back").click()
    tab.wait_for_selector('tr[data-alias="console-live"] td.target:text-is("alpha@v1")')
    assert not tab.errors


def test_a_refused_registration_shows_the_servers_message_as_text(browser: Any, console_server: Server, root: Path):
    tab = open_console(browser, console_server.url, page="registry")
    tab.wait_for_selector('tr[data-ref="alpha@v1"]')
    tab.fill("#reg-name", "<img src=x onerror=window.pwned=1>")
    tab.fill("#reg-path", str(root / "alpha"))
    tab.click("#reg-form button[type=submit]")
    tab.wait_for_selector("#banner.error")
    message = tab.inner_text("#banner")
    assert message.startswith("400: ") and "<img src=x onerror=window.pwned=1>" in message
    assert tab.locator("#banner img").count() == 0 and tab.evaluate("window.pwned") is None
    assert not tab.errors


def chat(server: Server, model: str, n: int, user: str | None = None) -> list[str]:
    """`n` short requests for `model` with the inference key; returns the completion ids."""
    client = openai.OpenAI(base_url=server.v1, api_key=INFERENCE_KEY, max_retries=0)
    return [
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, user=user or f"u{i}"
        ).id
        for i in range(n)
    ]


def test_traffic_shows_each_adapters_rate_from_the_servers_metrics(browser: Any, console_server: Server):
    tab = open_console(browser, console_server.url, page="traffic")
    tab.wait_for_selector("#traffic-totals")
    cell = "#traffic-totals tr[data-series='gamma@v1'] td.requests"
    count = f'() => Number(document.querySelector("{cell}")?.textContent ?? 0)'
    before = tab.evaluate(count)
    chat(console_server, "gamma", 3)
    tab.wait_for_function(f"() => ({count})() === {before + 3}", timeout=20_000)
    # a rate point above zero for gamma once the next sample is in
    tab.wait_for_function(
        "() => Number(document.querySelector(\"[data-chart='requests'] path[data-series='gamma@v1']\")"
        "?.dataset.peak) > 0",
        timeout=20_000,
    )
    screenshot(tab, "traffic")
    assert not tab.errors


def chart_total(tab: Any, chart: str) -> float:
    return tab.evaluate(
        "(chart) => [...document.querySelectorAll(`[data-chart='${chart}'] rect[data-bar]`)]"
        ".reduce((sum, bar) => sum + Number(bar.dataset.value), 0)",
        chart,
    )


def test_an_experiments_chart_follows_its_traffic(browser: Any, console_server: Server):
    tab = open_console(browser, console_server.url, page="experiments")
    tab.fill("#exp-name", "console-ab")
    tab.fill("#exp-variants", "alpha=50, beta=50")
    tab.click("#exp-form button[type=submit]")
    tab.wait_for_selector("[data-chart='requests'] rect[data-bar='alpha@v1']", state="attached")  # 0 high
    assert chart_total(tab, "requests") == 0
    ids = chat(console_server, "console-ab", 6)
    feedback = httpx.post(f"{console_server.v1}/feedback", json={"id": ids[0], "score": 1}, headers=INFERENCE)
    feedback.raise_for_status()
    # no reload: the report refreshes itself every few seconds
    tab.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-chart='requests'] rect[data-bar]\")]"
        ".reduce((sum, bar) => sum + Number(bar.dataset.value), 0) === 6",
        timeout=30_000,
    )
    assert tab.locator("#exp-table tr[data-variant]").count() == 2
    assert tab.locator("[data-chart='requests-over-time'] path[data-series]").count() == 2
    screenshot(tab, "experiments")
    tab.fill("#exp-alias", "console-winner")
    tab.click("text=Conclude…")
    tab.wait_for_selector("#banner.notice:has-text('concluded console-ab')")
    assert tab.dialogs[-1].startswith("Conclude console-ab: stop the experiment and point alias console-winner at ")
    assert httpx.get(f"{console_server.url}/admin/experiments/console-ab", headers=ADMIN).status_code == 404
    assert not tab.errors
