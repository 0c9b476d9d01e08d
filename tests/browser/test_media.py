"""The web client with a fake camera and microphone: Chromium plays a hand video and a
spoken question (made here with ffmpeg and espeak-ng) into the page, which streams them
over its XR session. Screenshots land in artifacts/browser/."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.conftest import ARTIFACTS, launch
from tests.browser.test_web_client import open_with_key
from tests.conftest import TEST_DATA, Server


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("media")
    photo = sorted((TEST_DATA / "hand_images" / "four").glob("*.jpg"))[0]
    video = tmp / "hand.y4m"
    run(
        "ffmpeg",
        "-loglevel",
        "error",
        "-loop",
        "1",
        "-i",
        str(photo),
        "-t",
        "2",
        "-r",
        "15",
        "-vf",
        "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2",
        "-pix_fmt",
        "yuv420p",
        str(video),
    )
    speech = tmp / "speech.wav"
    run("espeak-ng", "-v", "en-us", "-w", str(tmp / "raw.wav"), "Hello there. What is your name?")
    # half a second of quiet before; after it, silence long enough that Chromium (which loops
    # the file) does not ask again while the character answers, which would barge in
    run(
        "ffmpeg",
        "-loglevel",
        "error",
        "-i",
        str(tmp / "raw.wav"),
        "-af",
        "adelay=500,apad=pad_dur=40",
        "-ar",
        "48000",
        "-ac",
        "1",
        "-c:a",
        "pcm_s16le",
        str(speech),
    )
    return {"video": video, "speech": speech}


def page_with(flags: list[str], server: Server, name: str):
    """A browser with the given fake-media flags, on the web client with the admin key."""
    playwright = sync_playwright().start()
    browser = launch(playwright, flags)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    open_with_key(page, server)

    def close() -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        browser.close()
        playwright.stop()

    return page, errors, close


def test_camera_panel_tracks_the_hand_in_the_video(server: Server, media: dict[str, Path]) -> None:
    page, errors, close = page_with([f"--use-file-for-fake-video-capture={media['video']}"], server, "camera")
    try:
        page.click("#camera-start")
        page.wait_for_function(
            "() => (window.xrserve.camera?.latest.hands?.result.hands || []).length > 0", timeout=60_000
        )
        camera = page.evaluate(
            "() => ({counts: window.xrserve.camera.counts, "
            "hand: window.xrserve.camera.latest.hands.result.hands[0], "
            "size: window.xrserve.camera.latest.hands.result.image_size})"
        )
        assert camera["counts"]["sent"] >= camera["counts"]["answered"] > 0
        assert len(camera["hand"]["landmarks"]) == 21
        width, height = camera["size"]
        assert (width, height) == (640, 480)
        assert all(0 <= x <= width and 0 <= y <= height for x, y, *_ in camera["hand"]["landmarks"])
        assert "hands: 1" in page.inner_text("#camera-stats") or "hands: 2" in page.inner_text("#camera-stats")
        assert not errors
    finally:
        close()


def test_talking_to_the_character_gives_text_and_audio(server: Server, media: dict[str, Path]) -> None:
    page, errors, close = page_with([f"--use-file-for-fake-audio-capture={media['speech']}"], server, "voice")
    try:
        page.click("#talk-start")
        page.wait_for_function("() => (window.xrserve.voice?.turns || []).some(t => t.answer)", timeout=120_000)
        voice = page.evaluate("() => ({chunks: window.xrserve.voice.audioChunks, turns: window.xrserve.voice.turns})")
        turn = next(t for t in voice["turns"] if t["answer"])
        assert "name" in turn["transcript"].lower()
        assert voice["chunks"] > 0
        assert turn["emotion"] in {"neutral", "happy", "sad", "angry", "surprised", "afraid"}
        assert page.locator("#npc-log .user").count() >= 1
        assert not errors
    finally:
        close()
