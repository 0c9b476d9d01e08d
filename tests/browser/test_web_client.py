"""The web client served at /: one page, four views (world, AR, operations, chat), one XR session."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from tests.browser.conftest import open_with_key
from tests.conftest import Server


def test_root_redirects_to_the_built_web_client(server: Server) -> None:
    response = httpx.get(server.url + "/", follow_redirects=True)
    assert response.status_code == 200
    assert '<script type="module" src="dist/app.js">' in response.text
    bundle = httpx.get(server.url + "/web/dist/app.js")  # `make web`: three.js inside (no CDN: see test_world_vr)
    assert bundle.status_code == 200 and "WebGLRenderer" in bundle.text
    module = httpx.get(server.url + "/web/xrsession.js")  # the protocol module other web apps import
    assert module.status_code == 200 and "export class XrServeClient" in module.text


def test_page_opens_on_the_world_view_without_a_headset(page: Page, server: Server) -> None:
    open_with_key(page, server)
    assert page.inner_text("#status").startswith("session ")
    assert page.is_visible("#view-world") and not page.is_visible("#view-ar")
    page.wait_for_function("() => window.xrserve.world?.state.sceneId", timeout=60_000)
    # Chromium's own navigator.xr has no device: no Enter VR, and the page says how to use it instead
    assert page.is_hidden("#vr-button")
    assert "mouse and keyboard" in page.inner_text("#vr-note")
    assert not page.console_errors  # type: ignore[attr-defined]


def test_a_wrong_key_is_reported_on_the_page(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.fill("#key", "xrs_nope_nope")
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#status[data-state=error]", timeout=30_000)
    assert "not connected" in page.inner_text("#status")


def test_chat_streams_an_answer(page: Page, server: Server) -> None:
    open_with_key(page, server, "#chat")
    page.fill("#chat-input", "Name one colour.")
    page.click("#chat-form button")
    answer = page.wait_for_selector("#chat-log .assistant[data-done=true]", timeout=120_000)
    assert len(answer.inner_text().strip()) > 0
    assert not page.console_errors  # type: ignore[attr-defined]
