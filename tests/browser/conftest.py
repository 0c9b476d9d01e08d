"""Headless Chromium (Debian's `chromium`, driven by Playwright) against the real server.

Fake camera and microphone come from Chromium's own flags; screenshots are kept under
`artifacts/browser/` for CI to publish.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-background-networking",  # running as root, offline
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",  # WebGL without a GPU
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def launch(playwright, extra_flags: list[str] | None = None) -> Browser:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it with apt-get"
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS + (extra_flags or []))


@pytest.fixture(scope="module")
def browser():
    # module scope: Playwright's sync API keeps an event loop running in this thread while it
    # is open, and later tests call asyncio.run()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest):
    """A fresh page; its uncaught script errors are collected, and a screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page: Page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))  # type: ignore[attr-defined]
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
