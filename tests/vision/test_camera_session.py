"""Camera frames over the XR session (`/v1/session`, stream kind `camera`) with the websockets client."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Server
from tests.session_client import SessionClient
from tests.vision import media


def frames(count: int) -> list[bytes]:
    """A 'video' of the hand photos in tests/data, each held for ten frames (a hand that stays, then moves)."""
    photos = [p.read_bytes() for p in media.hand_photos()]
    return [photos[(i // 10) % len(photos)] for i in range(count)]


def test_sixty_frames_at_30_fps_are_each_answered_or_reported_skipped_in_order(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], max_hands=1)["channel"]
        sent: dict[int, float] = {}
        start = time.monotonic()
        for sequence, jpeg in enumerate(frames(60)):
            time.sleep(max(0.0, start + sequence / 30 - time.monotonic()))
            sent[sequence] = time.time() * 1000
            session.send_binary(channel, sequence, jpeg, timestamp_ms=sent[sequence])
        answered: list[int] = []
        skipped: list[int] = []
        while len(answered) + len(skipped) < 60:
            message = session.wait(
                lambda m: isinstance(m, dict) and m.get("type") in ("result", "skipped", "error"), timeout=60
            )
            assert message["type"] != "error", message
            assert message["stream"] == "cam"
            assert message["capture_ms"] == sent[message["sequence"]]  # tagged with its own frame
            if message["type"] == "result":
                assert message["model"] == "hands"
                assert message["server_ms"] >= 0 and message["latency_ms"] >= 0
                assert message["skipped"] >= 0
                answered.append(message["sequence"])
            else:
                assert message["models"] == ["hands"] and message["reason"]
                skipped.append(message["sequence"])
    assert sorted(answered + skipped) == list(range(60))  # every frame accounted for, once
    assert answered == sorted(answered)  # results never go back in time
    assert len(answered) >= 5, f"only {len(answered)} of 60 frames answered"
    print(f"answered {len(answered)} of 60 frames, skipped {len(skipped)}")


def test_results_carry_landmarks_and_tracking_follows_the_hand(server: Server) -> None:
    photo = media.hand_photos()[0].read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands", "face"], budget_ms=2000)["channel"]
        hands = []
        for sequence in range(4):  # generous budget, one at a time: every frame is answered
            session.send_binary(channel, sequence, photo)
            hands.append(session.wait_type("result", model="hands", sequence=sequence))
            session.wait(
                lambda m, sequence=sequence: (
                    isinstance(m, dict)
                    and m.get("sequence") == sequence
                    and m.get("model") == "face"
                    or m.get("models") == ["face"]
                )
            )
    first = hands[0]["result"]["hands"]
    assert len(first) == 1 and len(first[0]["landmarks"]) == 21
    for later in hands[1:]:  # tracked from the previous frame's region: the same hand, the same place
        (hand,) = later["result"]["hands"]
        assert abs(hand["landmarks"][0][0] - first[0]["landmarks"][0][0]) < 10


def test_frames_are_skipped_while_the_hand_search_runs_instead_of_starting_another(server: Server) -> None:
    empty = media.render_text("no hands in this picture")  # nothing to track: every frame needs the detector
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], budget_ms=5000)["channel"]
        for sequence in range(8):  # back to back: all arrive while the first frame's detector runs
            session.send_binary(channel, sequence, empty)
        outcomes: dict[int, str] = {}
        while len(outcomes) < 8:
            message = session.wait(
                lambda m: isinstance(m, dict) and m.get("type") in ("result", "skipped", "error"), timeout=60
            )
            assert message["type"] != "error", message
            assert message["sequence"] not in outcomes  # each frame accounted for once
            outcomes[message["sequence"]] = message["type"] if message["type"] == "result" else message["reason"]
    assert outcomes[0] == "result"
    searching = [s for s, why in outcomes.items() if why.startswith("searching")]
    assert searching, outcomes  # not seven detector runs competing for two cores


@pytest.mark.parametrize(
    "payload, status, words",
    [
        (media.corrupt_jpeg(), 400, "not a readable"),
        (b"", 400, "empty"),
        (media.huge_png_header(), 413, "20000x20000"),
    ],
)
def test_bad_frames_get_an_error_and_the_session_stays_usable(server: Server, payload, status, words) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], budget_ms=5000)["channel"]
        session.send_binary(channel, 1, payload)
        error = session.wait_type("error")
        assert error["status"] == status and words in error["message"] and error["stream"] == "cam"
        assert "frame 1" in error["message"]
        session.send_binary(channel + 7, 2, media.hand_photos()[0].read_bytes())  # a stream never opened
        error = session.wait_type("error")
        assert error["status"] == 404 and "no open stream has channel" in error["message"]
        session.send({"type": "ping", "t": 5})
        assert session.wait_type("pong")["t"] == 5
        session.send_binary(channel, 3, media.hand_photos()[0].read_bytes())
        result = session.wait_type("result", sequence=3)
        assert len(result["result"]["hands"]) == 1


@pytest.mark.parametrize("first", [True, False], ids=["before-any-frame", "after-a-frame"])
def test_capture_times_far_from_the_servers_clock_are_refused_and_the_stream_goes_on(
    server: Server, first: bool
) -> None:
    """inf once became the stream's clock offset (a 500, then every later frame skipped as `deadline`)."""
    photo = media.hand_photos()[0].read_bytes()
    hour_ms = 3_600_000.0
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], budget_ms=5000)["channel"]
        sequence = 0
        if not first:  # the stream has an offset already: the bad times must not move it
            session.send_binary(channel, sequence, photo)
            session.wait_type("result", sequence=sequence)
            session.send({"type": "stats", "stream": "cam"})
            offset = session.wait_type("stats")["offset_ms"]
        bad = [float("inf"), float("nan"), float("-inf"), 1e300, -5.0, "hour ahead", "hour behind"]
        for stamp in bad:
            sequence += 1
            if stamp == "hour ahead":
                stamp = time.time() * 1000 + hour_ms
            elif stamp == "hour behind":
                stamp = time.time() * 1000 - hour_ms
            session.send_binary(channel, sequence, photo, timestamp_ms=stamp)
            error = session.wait_type("error")
            assert error["status"] == 400 and error["stream"] == "cam", (stamp, error)
            assert error["message"].startswith(f"frame {sequence}: timestamp_ms "), error
            assert "milliseconds since the Unix epoch" in error["message"], error
            if isinstance(stamp, float) and abs(stamp) < 1e20 and stamp > 0:
                assert "within ±10 minutes" in error["message"], error
        session.send({"type": "stats", "stream": "cam"})
        stats = session.wait_type("stats")
        assert stats["received"] == (0 if first else 1)  # refused frames are not counted...
        if not first:
            assert stats["offset_ms"] == offset  # ...and do not move the clock estimate
        sequence += 1
        session.send_binary(channel, sequence, photo)  # a good frame: answered, not skipped as "deadline"
        answer = session.wait(
            lambda m: isinstance(m, dict) and m.get("sequence") == sequence and m["type"] in ("result", "skipped")
        )
        assert answer["type"] == "result", answer
        assert len(answer["result"]["hands"]) == 1
        assert 0 <= answer["latency_ms"] < 5000
        assert not [m for m in session.backlog if isinstance(m, dict) and m.get("type") == "error"], session.backlog


def test_a_client_clock_a_few_minutes_off_is_tolerated(server: Server) -> None:
    """Devices' clocks differ: minutes of skew are the stream's offset, not an error."""
    photo = media.hand_photos()[0].read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["hands"], budget_ms=5000)["channel"]
        for sequence in range(2):
            session.send_binary(channel, sequence, photo, timestamp_ms=time.time() * 1000 - 7 * 60_000)
            result = session.wait_type("result", sequence=sequence)
            assert 0 <= result["latency_ms"] < 5000
        session.send({"type": "stats", "stream": "cam"})
        assert 7 * 60_000 <= session.wait_type("stats")["offset_ms"] < 7 * 60_000 + 5000


def test_open_options_are_checked(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        for options, words in [
            ({"models": ["ocr"]}, "/v1/vision/ocr"),
            ({"models": []}, "'models'"),
            ({"models": ["hands"], "budget_ms": 0}, "budget_ms"),
            ({"models": ["hands"], "max_hands": 3}, "max_hands"),
        ]:
            session.send({"type": "open", "stream": "cam", "kind": "camera", **options})
            error = session.wait_type("error")
            assert error["status"] == 400 and words in error["message"], (options, error)


def test_gestures_option(server: Server) -> None:
    gesture_loaded = (
        httpx.get(
            f"{server.url}/v2/models/gesture/ready", headers={"Authorization": f"Bearer {server.admin_key}"}
        ).status_code
        == 200
    )
    with SessionClient(server.url, server.admin_key) as session:
        session.send(
            {
                "type": "open",
                "stream": "cam",
                "kind": "camera",
                "models": ["hands"],
                "gestures": True,
                "budget_ms": 5000,
            }
        )
        reply = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("opened", "error"))
        if not gesture_loaded:
            assert reply["type"] == "error" and "model gesture is not loaded" in reply["message"]
            return
        assert reply["type"] == "opened"
        session.send_binary(reply["channel"], 0, media.hand_photos()[0].read_bytes())
        (hand,) = session.wait_type("result", sequence=0)["result"]["hands"]
        assert isinstance(hand.get("gesture"), str) and hand["gesture"]
