"""The AR view with a fake camera: Chromium plays a hand photo from tests/data as video into
the page, which streams it over its XR session and draws what comes back."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import browser_page, open_with_key
from tests.conftest import Server


def test_ar_view_draws_the_hand_in_the_video(server: Server, media: dict[str, Path]) -> None:
    flags = [f"--use-file-for-fake-video-capture={media['video']}"]
    with browser_page(flags, "ar_view", headset=True) as (page, errors):
        open_with_key(page, server, "#ar")
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
        assert tuple(camera["size"]) == (640, 480)
        assert all(0 <= x <= 640 and 0 <= y <= 480 for x, y, *_ in camera["hand"]["landmarks"])
        # drawn: the overlay has the hand's colours where its landmarks are, not only the state
        drawn = page.evaluate(
            """() => { const o = document.getElementById('overlay'), g = o.getContext('2d');
                const h = window.xrserve.camera.latest.hands.result, [w, hh] = h.image_size;
                return h.hands[0].landmarks.filter(([x, y]) => {
                  const px = Math.round(x / w * o.width), py = Math.round(y / hh * o.height);
                  return g.getImageData(px, py, 1, 1).data[3] > 0; }).length; }"""
        )
        assert drawn >= 15  # the chains pass through (nearly) every landmark
        assert "hands: 1" in page.inner_text("#camera-stats") or "hands: 2" in page.inner_text("#camera-stats")
        assert "results/s" in page.inner_text("#ar-hud")
        # the emulated headset offers immersive-ar: the page shows Enter AR
        page.wait_for_selector("#ar-button:not([hidden])", timeout=10_000)
        assert not errors
