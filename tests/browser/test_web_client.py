"""The web client served at / : it connects its XR session, lists models and chats with the LLM."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from tests.conftest import Server


def open_with_key(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.fill("#key", server.admin_key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#status[data-state=connected]", timeout=30_000)


def test_root_redirects_to_the_web_client(server: Server) -> None:
    response = httpx.get(server.url + "/", follow_redirects=True)
    assert response.status_code == 200 and "xrsession" not in response.text  # the page, not the module
    assert '<script type="module" src="app.js">' in response.text
    module = httpx.get(server.url + "/web/xrsession.js")
    assert module.status_code == 200 and "export class XrServeClient" in module.text


def test_page_connects_a_session_and_lists_models(page: Page, server: Server) -> None:
    open_with_key(page, server)
    status = page.inner_text("#status")
    assert status.startswith("session ") and "round trip" in status
    page.wait_for_selector("#models li")
    models = page.locator("#models li").all_inner_texts()
    assert {"minilm", "smollm2"} <= set(models)


def test_a_wrong_key_is_reported_on_the_page(page: Page, server: Server) -> None:
    page.goto(server.url + "/")
    page.fill("#key", "xrs_nope_nope")
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#status[data-state=error]", timeout=30_000)
    assert "not connected" in page.inner_text("#status")


def test_chat_streams_an_answer(page: Page, server: Server) -> None:
    open_with_key(page, server)
    page.fill("#chat-input", "Name one colour.")
    page.click("#chat-form button")
    answer = page.wait_for_selector("#chat-log .assistant[data-done=true]", timeout=120_000)
    assert len(answer.inner_text().strip()) > 0
    assert not page.console_errors
