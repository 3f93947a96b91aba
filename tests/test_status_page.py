"""The live status page at `/`, in a real headless browser (Debian's chromium driven by
playwright) against the reference stack: both models are shown, a restart is on the page
within two seconds without a reload, a unit's last lines show on a click, and a failed
unit shows its reason. Set SUPERVISE_SCREENSHOT=PATH to keep a screenshot."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import Run, cli, wait_until
from tests.test_reference_stack import fresh_deploy, http_status, summary

CHROMIUM = "/usr/bin/chromium"
# This machine (and CI) has no network: no downloaded browser, nothing phoning home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REFLECTED_WITHIN = 2.0  # the requirement: a restart shows on the page within two seconds
PAGE_WAIT = 30.0  # anything else the page is waited for (first load, a failure)
SECRET = "sk-test-5f1c9a7e2b"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def text_of(page: Page, selector: str) -> str:
    return (page.text_content(selector) or "").strip()


def wait_for_text(page: Page, selector: str, wanted: str, timeout: float) -> None:
    """Poll the DOM until `selector`'s text contains `wanted` (the page is never
    reloaded); fail with what it shows instead."""
    try:
        page.wait_for_function(
            "([selector, wanted]) => (document.querySelector(selector)?.textContent ?? '')"
            ".includes(wanted)",
            arg=[selector, wanted],
            timeout=timeout * 1000,
            polling=50,
        )
    except Exception as exc:
        shown = page.text_content(selector) if page.query_selector(selector) else "nothing"
        raise AssertionError(
            f"want {selector} showing {wanted!r}, got {shown!r} after {timeout:g} s"
        ) from exc


def test_the_status_page_shows_both_models_live_and_a_failed_units_reason(
    tmp_path: Path, browser: Browser
) -> None:
    stack, env = fresh_deploy(tmp_path, days=1)
    (tmp_path / ".env").write_text(f"BROKER_API_KEY={SECRET}\n")
    run = Run(stack, env=env)
    base = f"http://127.0.0.1:{env['PORT']}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        wait_until(lambda: http_status(f"{base}/readyz") == 200, "/readyz 200", timeout=90)
        for model in ("alpha", "beta"):
            summary(run, model)  # the agents are done: nothing else restarts servers
        page.goto(f"{base}/")
        for model in ("alpha", "beta"):
            wait_for_text(page, f'section[data-model="{model}"] h2', f"model {model}", PAGE_WAIT)
        wait_for_text(page, 'tr[data-unit="alpha/trade"] .c-ready', "yes", PAGE_WAIT)
        assert text_of(page, 'tr[data-unit="alpha/trade"] .c-tools').startswith("2 · ")
        assert text_of(page, 'tr[data-unit="math"] .c-state') == "running"
        page.evaluate("window.notReloaded = true")
        old_pid = text_of(page, 'tr[data-unit="alpha/trade"] .c-pid')
        old_restarts = int(text_of(page, 'tr[data-unit="alpha/trade"] .c-restarts'))

        restarted = cli("restart", "alpha/trade", "-c", str(stack))
        assert restarted.returncode == 0, restarted.stderr
        returned = time.monotonic()
        page.wait_for_function(
            "([old, restarts]) => {"
            "  const row = document.querySelector('tr[data-unit=\"alpha/trade\"]');"
            "  return row && row.querySelector('.c-pid').textContent !== old"
            "    && row.querySelector('.c-pid').textContent !== '–'"
            "    && Number(row.querySelector('.c-restarts').textContent) === restarts"
            "    && row.querySelector('.c-ready').textContent === 'yes';"
            "}",
            arg=[old_pid, old_restarts + 1],
            timeout=REFLECTED_WITHIN * 1000,
            polling=50,
        )
        shown_after = time.monotonic() - returned
        assert page.evaluate("window.notReloaded") is True
        new_pid = text_of(page, 'tr[data-unit="alpha/trade"] .c-pid')
        status = cli("status", "alpha/trade", "--json", "-c", str(stack)).stdout
        assert f'"pid": {new_pid}' in status, (new_pid, status, shown_after)

        page.click('tr[data-unit="alpha/trade"]')
        wait_for_text(page, "#detail-logs", "trade: serving http://127.0.0.1:", PAGE_WAIT)
        wait_for_text(page, "#detail-why", "alpha/trade is running", PAGE_WAIT)

        failing = cli("set", "beta", "TODAY_DATE=notadate", "--no-rollback", "-c", str(stack))
        assert failing.returncode == 1, failing.stdout
        reason = "TODAY_DATE 'notadate' is not a date"
        wait_for_text(page, 'tr[data-unit="beta/trade"] .c-state', "failed", PAGE_WAIT)
        wait_for_text(page, 'tr[data-unit="beta/trade"] .c-reason', reason, PAGE_WAIT)
        wait_for_text(page, 'section[data-model="beta"] h2 .reason', reason, PAGE_WAIT)
        assert text_of(page, 'section[data-model="alpha"] h2 .state') == "running"
        page.click('tr[data-unit="beta/trade"]')
        wait_for_text(page, "#detail-why", "beta/trade failed at", PAGE_WAIT)
        wait_for_text(page, "#detail-logs", reason, PAGE_WAIT)
        page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
        target = os.environ.get("SUPERVISE_SCREENSHOT")
        if target:
            shutil.copy(tmp_path / "status-page.png", target)

        assert SECRET not in page.content()
        assert all(url.startswith(f"{base}/") for url in requested), requested
        assert page.evaluate("window.notReloaded") is True
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    finally:
        page.close()
        assert run.stop(timeout=30) == 0
