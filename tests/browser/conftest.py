"""Headless Chromium (Debian's `chromium`, driven by Playwright) against the real server.

Fake camera and microphone come from Chromium's own flags (media made here with ffmpeg
and espeak-ng); an emulated Quest 3 comes from Meta's IWER, injected as an init script
(the shipped page never loads it). Screenshots are kept under `artifacts/browser/` for CI
to publish.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import TEST_DATA, Server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
IWER = ROOT / "node_modules" / "iwer" / "build" / "iwer.min.js"

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


def headset_script() -> str:
    """IWER with a Quest 3 installed over Chromium's own `navigator.xr`, which has no device
    behind it (hence forceInstall); the device is `window.__xrDevice` for the tests to drive."""
    assert IWER.exists(), "node_modules/iwer is missing: `make test` runs npm ci"
    return (
        IWER.read_text()
        + "\n;(() => { const device = new IWER.XRDevice(IWER.metaQuest3);"
        + " device.installRuntime({ forceInstall: true }); window.__xrDevice = device; })();"
    )


def open_with_key(page: Page, server: Server, view: str = "") -> None:
    """The web client at `view` (`#ar`, `?xr_scale=...`) with the admin key already in local
    storage, as after a user entered it once (entering one is tested on its own)."""
    page.add_init_script(f"localStorage.setItem('xrserve-key', {server.admin_key!r})")
    page.goto(f"{server.url}/web/{view}")
    page.wait_for_selector("#status[data-state=connected]", timeout=30_000)


def collect_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of the page, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


@contextmanager
def browser_page(flags: list[str], name: str, headset: bool = False) -> Iterator[tuple[Page, list[str]]]:
    """A browser of its own (fake-media flags are per browser), one page, a screenshot at the end."""
    with sync_playwright() as playwright:
        browser = launch(playwright, flags)
        context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 800})
        if headset:
            context.add_init_script(headset_script())
        page = context.new_page()
        errors = collect_errors(page)
        try:
            yield page, errors
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
            browser.close()


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
    """A fresh page; its errors are collected, and a screenshot is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page: Page = context.new_page()
    page.console_errors = collect_errors(page)  # type: ignore[attr-defined]
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake camera (a hand photo from tests/data as a 2 s video) and a fake microphone (a
    spoken question)."""
    tmp = tmp_path_factory.mktemp("media")
    photo = sorted((TEST_DATA / "hand_images" / "four").glob("*.jpg"))[0]
    video = tmp / "hand.y4m"
    fit = "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2"
    _run("ffmpeg", "-loglevel", "error", "-loop", "1", "-i", str(photo), "-t", "2", "-r", "15", "-vf", fit,
         "-pix_fmt", "yuv420p", str(video))  # fmt: skip
    speech = tmp / "speech.wav"
    _run("espeak-ng", "-v", "en-us", "-w", str(tmp / "raw.wav"), "Hello there. What is your name?")
    # half a second of quiet before; after it, silence long enough that Chromium (which loops
    # the file) does not ask again during the test
    _run(
        "ffmpeg", "-loglevel", "error", "-i", str(tmp / "raw.wav"),
        "-af", "adelay=500,apad=pad_dur=60", "-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le", str(speech),
    )  # fmt: skip
    return {"video": video, "speech": speech}
