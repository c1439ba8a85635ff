"""Browser tests of the web console: the system's Chromium driven by Playwright, against the
app served over real HTTP with a real worker. Without a Chromium only these tests skip."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# No sandbox: CI runs as root in a container. The rest keeps the browser from reaching
# for the network or updates on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Sync runs of a test tenant finish in seconds; generous for a loaded 2-core machine.
SYNC_TIMEOUT_MS = 90_000


def chromium_path() -> str | None:
    """The system's Chromium (Debian's `chromium` package); Playwright's own builds are never
    downloaded."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found for the browser tests: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, base_url: str, viewport: dict | None = None):
    context = browser.new_context(base_url=base_url, viewport=viewport or DESKTOP)
    context.set_default_timeout(15_000)
    return context.new_page()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) at desktop width."""
    page = new_page(browser, live_server)
    yield page
    page.context.close()


def sign_in(page, key: str) -> None:
    page.goto("/signin")
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Datasets").wait_for()


def upload_file(
    page, path: Path | None = None, *, name: str = "", content: bytes = b"", file_name: str = "", sync_now: bool = True
) -> None:
    """Fill and send the upload form (the file from ``path``, or ``content`` as ``file_name``)."""
    page.goto("/upload")
    if path is not None:
        page.get_by_label("Dataset file").set_input_files(path)
    else:
        page.get_by_label("Dataset file").set_input_files(
            {"name": file_name, "mimeType": "text/csv", "buffer": content}
        )
    if name:
        page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Sync now").set_checked(sync_now)
    page.get_by_role("button", name="Upload").click()
