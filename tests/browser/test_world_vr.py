"""The world view in an emulated headset: a generated scene, Enter VR, a question asked with
the controller's trigger held, and the answer in a speech bubble over the character's head.

Chromium renders WebXR with SwiftShader on the CPU: the page is opened with ?xr_scale=0.25
(a quarter of the headset's framebuffer), which keeps a few XR frames a second on 2 cores.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import ARTIFACTS, browser_page, open_with_key
from tests.conftest import Server

EMOTIONS = {"neutral", "happy", "sad", "angry", "surprised", "afraid"}


def world(page: Page, expression: str):
    return page.evaluate(f"() => window.xrserve.world.{expression}")


def trigger(page: Page, value: float) -> None:
    page.evaluate(f"() => window.__xrDevice.controllers.right.updateButtonValue('trigger', {value})")


@pytest.mark.timeout(480)  # software-rendered stereo frames share 2 cores with ASR, LLM and TTS
def test_enter_vr_and_talk_to_the_character(server: Server, media: dict[str, Path]) -> None:
    flags = [f"--use-file-for-fake-audio-capture={media['speech']}"]
    with browser_page(flags, "world_vr_teleported", headset=True) as (page, errors):
        elsewhere: list[str] = []  # offline: nothing may come from anywhere but this server
        local = (server.url, "data:", "blob:")
        page.on("request", lambda r: None if r.url.startswith(local) else elsewhere.append(r.url))
        open_with_key(page, server, "?xr_scale=0.25")
        page.wait_for_function("() => window.xrserve.world?.state.sceneId", timeout=90_000)

        # the default world: every node of the server's scene graph is in the three.js scene
        state = world(page, "state")
        graph = server.client().get(f"/v1/scenes/{state['sceneId']}").json()
        expected = {o["id"] for o in graph["objects"]} | {label["name"] for label in graph["labels"]}
        assert len(expected) >= 5 and {"terrain", "navmesh", "spawn"} | expected <= set(state["nodes"])
        page.screenshot(path=str(ARTIFACTS / "world_view.png"))

        # Enter VR: the emulated Quest 3 renders XR frames of this scene
        page.click("#vr-button")
        page.wait_for_function("() => window.xrserve.world.state.xrFrames >= 30", timeout=90_000)
        assert world(page, "state.presenting") and world(page, "renderer.xr.isPresenting")
        assert page.inner_text("#vr-button") == "Exit VR"

        # hold the trigger: the microphone goes out (Chromium plays the question); release: the turn is taken
        trigger(page, 1)
        page.wait_for_function("() => window.xrserve.world.state.talking", timeout=20_000)
        time.sleep(4.5)  # half a second of quiet, then about 2.5 s of question
        trigger(page, 0)
        page.wait_for_function("() => !window.xrserve.world.state.talking", timeout=20_000)
        try:  # SwiftShader's XR frames and the character's models share the 2 cores: minutes, not seconds
            page.wait_for_function("() => window.xrserve.world.talk.turns.some(t => t.answer)", timeout=240_000)
        except Exception as error:
            turns, log = world(page, "talk.turns"), page.inner_text("#npc-log")
            raise AssertionError(f"no answer: turns {turns}, log {log}") from error
        turn = next(t for t in world(page, "talk.turns") if t["answer"])
        assert "name" in turn["transcript"].lower()
        assert turn["emotion"] in EMOTIONS
        assert world(page, "talk.audioChunks") > 0  # the answer's audio was scheduled for playback

        # the answer floats in the scene: a bubble with exactly its text, anchored at the character's head
        page.wait_for_timeout(500)  # a frame or two for the bubble to follow the head
        shot = world(page, "snapshot()")
        assert shot["bubble"]["visible"] and shot["inScene"]
        assert shot["bubble"]["text"] == turn["answer"]
        assert math.dist(shot["bubble"]["position"], shot["head"]) < 0.01
        assert 1.4 < shot["head"][1] - shot["character"][1] < 1.7  # a head where a standing person's is
        assert shot["emotion"] == turn["emotion"]
        page.screenshot(path=str(ARTIFACTS / "world_vr_answer.png"))

        # point the right controller down at the ground ahead and squeeze the grip: a teleport onto the walkable mesh
        before = world(page, "rig.position.toArray()")
        page.evaluate("() => window.__xrDevice.controllers.right.quaternion.set(-0.4226, 0, 0, 0.9063)")  # 50 deg down
        page.wait_for_function("() => window.xrserve.world.marker.visible", timeout=30_000)
        page.evaluate("() => window.__xrDevice.controllers.right.updateButtonValue('squeeze', 1)")
        page.wait_for_function("() => window.xrserve.world.state.teleports === 1", timeout=30_000)
        page.evaluate("() => window.__xrDevice.controllers.right.updateButtonValue('squeeze', 0)")
        after = world(page, "rig.position.toArray()")
        assert math.dist(before, after) > 0.5
        ground = page.evaluate(
            """([x, z]) => { const w = window.xrserve.world, r = w.raycaster;
                r.set(new w.rig.position.constructor(x, 1000, z), new w.rig.position.constructor(0, -1, 0));
                return r.intersectObject(w.navmesh, true)[0]?.point.y ?? null; }""",
            [after[0], after[2]],
        )
        assert ground is not None and abs(after[1] - ground) < 0.05  # standing on the walkable mesh
        assert not elsewhere, f"the page fetched from outside the server: {elsewhere}"
        assert not errors
