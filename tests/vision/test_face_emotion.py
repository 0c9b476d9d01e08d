"""`face-emotion` on real faces through /v1/vision, OIP and a camera stream, and the npc stream's `camera_stream`.

One private server with face-emotion, face (a camera model without emotions) and the five models
of a talking character. The faces with
a known expression are tests/data/images/expressions (labels.json says where each label comes
from) and the shared face photo (a smile).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import TEST_DATA, Server, start_server
from tests.session_client import SessionClient
from tests.vision import media
from tests.voice.conftest import VOICE_MODELS

EXPRESSIONS = TEST_DATA / "images" / "expressions"
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FRESH_S = 2.0  # pipelines/npc_camera.py


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    only = [arg for model in ("face-emotion", "face", *VOICE_MODELS) for arg in ("--only", model)]
    srv = start_server(tmp_path_factory.mktemp("face-emotion"), *only, admin_key=True)
    yield srv
    srv.stop()


def vision(server: Server, data: bytes, **parameters):
    with server.client() as client:
        form = {"parameters": json.dumps(parameters)} if parameters else None
        return client.post("/v1/vision/face-emotion", files={"image": ("image", data)}, data=form)


def labelled() -> list[tuple[str, bytes, str]]:
    labels = json.loads((EXPRESSIONS / "labels.json").read_text())
    return [
        (name, (EXPRESSIONS / name).read_bytes(), entry["expression"])
        for name, entry in labels.items()
        if entry["expression"] is not None
    ]


def test_the_shared_face_photo_is_one_happy_face(server: Server) -> None:
    answer = vision(server, media.FACE.read_bytes())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["image_size"] == [600, 600] and body["model"] == "face-emotion"
    (face,) = body["faces"]
    assert face["emotion"] == "happy" and face["scores"]["happy"] > 0.8, face
    assert list(face["scores"]) == LABELS and abs(sum(face["scores"].values()) - 1) < 0.01
    assert face["score"] > 0.5  # the face detector's confidence
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 600
    assert 80 < x1 < 200 and 400 < x2 < 520 and 120 < y1 < 260  # around the face, not the hair or the shirt


def test_faces_with_known_expressions(server: Server) -> None:
    """7 faces: the label ranks first on at least 6 and never below second (measured: 6/7, 'surprised' reads fear)."""
    right, report = 0, []
    for name, data, expected in labelled():
        answer = vision(server, data)
        assert answer.status_code == 200, (name, answer.text)
        faces = answer.json()["faces"]
        assert len(faces) == 1, (name, faces)
        scores = faces[0]["scores"]
        ranked = sorted(scores, key=scores.get, reverse=True)
        report.append(f"{name}: {expected} -> {ranked[0]} ({scores[ranked[0]]:.2f})")
        assert expected in ranked[:2], report[-1]
        right += ranked[0] == expected
    print("\n".join(report))
    assert right >= 6, report


def test_every_face_of_a_group_photo_largest_first_and_max_faces(server: Server) -> None:
    group = (EXPRESSIONS / "group.jpeg").read_bytes()
    faces = vision(server, group).json()["faces"]
    assert len(faces) >= 2, faces  # the short-range detector finds 3 of the 6 people here
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert all(f["emotion"] in LABELS for f in faces)
    one = vision(server, group, max_faces=1).json()["faces"]
    assert one == faces[:1]
    refused = vision(server, group, max_faces=9)
    assert refused.status_code == 400 and "max_faces" in refused.text, refused.text


def test_over_the_open_inference_protocol_with_tritonclient(server: Server) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    tensor = triton.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(
        np.array([media.FACE.read_bytes(), (EXPRESSIONS / "sad-baby.jpeg").read_bytes()], dtype=object),
        binary_data=True,
    )
    result = client.infer("face-emotion", [tensor], headers=headers)
    assert result.as_numpy("count").tolist() == [1, 1]
    assert result.as_numpy("emotions")[:, 0].tolist() == [b"happy", b"sad"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 8, 7) and np.allclose(probabilities[:, 0].sum(axis=1), 1, atol=0.01)
    assert result.as_numpy("image_size").tolist() == [[600, 600], [1280, 853]]
    bad = triton.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image at all"], dtype=object), binary_data=True)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("face-emotion", [bad], headers=headers)
    assert refused.value.status() == "400", refused.value


@pytest.mark.parametrize(
    "payload, status, words",
    [
        (b"not an image at all", 400, "not a readable"),
        (media.truncated_jpeg(), 400, "truncated"),
        (b"", 400, "empty"),
        (media.huge_png_header(), 413, "20000x20000"),
    ],
    ids=["text", "truncated-jpeg", "empty", "huge-header"],
)
def test_a_bad_image_is_refused_with_a_4xx(server: Server, payload: bytes, status: int, words: str) -> None:
    answer = vision(server, payload)
    assert answer.status_code == status and words in answer.text, answer.text


def test_a_camera_stream_runs_face_emotion_on_frames(server: Server) -> None:
    photo = media.FACE.read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["face-emotion"], budget_ms=5000)["channel"]
        for sequence in range(3):
            session.send_binary(channel, sequence, photo)
            result = session.wait_type("result", model="face-emotion", sequence=sequence)
            (face,) = result["result"]["faces"]
            assert face["emotion"] == "happy" and result["result"]["image_size"] == [600, 600]


def say(session: SessionClient, text: str) -> dict:
    session.send({"type": "say", "stream": "npc", "text": text})
    end = session.wait(lambda m: isinstance(m, dict) and m.get("type") in ("turn_end", "error"), timeout=180)
    assert end["type"] == "turn_end", end
    return end


def test_npc_sees_the_users_face_only_through_its_camera_stream(server: Server) -> None:
    photo = media.FACE.read_bytes()
    with SessionClient(server.url, server.admin_key) as session:
        channel = session.open("cam", "camera", models=["face-emotion"], budget_ms=5000)["channel"]
        session.open("plain", "npc", max_tokens=8, seed=1)  # no camera_stream: nothing of a face is used
        session.open("npc", "npc", max_tokens=8, seed=1, camera_stream="cam")
        session.send_binary(channel, 0, photo)
        session.wait_type("result", model="face-emotion", sequence=0)
        seen = time.monotonic()
        end = say(session, "Hello, how do I look?")
        assert end["context"] == ["The visitor looks happy (their facial expression, as the camera sees it)."], end
        session.send({"type": "say", "stream": "plain", "text": "Hello, how do I look?"})
        plain = session.wait_type("turn_end", stream="plain", timeout=180)
        assert plain["context"] == [], plain
        time.sleep(max(0.0, seen + FRESH_S + 0.2 - time.monotonic()))
        stale = say(session, "And now?")
        assert stale["context"] == [], stale  # the last face is over 2 s old: it says nothing about now


def test_camera_stream_option_must_name_an_open_camera_stream_with_face_emotion(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        session.open("words", "infer", model="minilm")
        session.open("mesh", "camera", models=["face"])
        for name, words in [
            ("cam", "no open stream named 'cam'"),
            ("words", "stream 'words' is of kind 'infer', not a camera stream"),
            ("mesh", "camera stream 'mesh' does not run 'face-emotion'"),
        ]:
            session.send({"type": "open", "stream": "npc", "kind": "npc", "camera_stream": name})
            error = session.wait_type("error")
            assert error["status"] == 400 and words in error["message"], error
        session.open("cam", "camera", models=["face-emotion"])
        assert session.open("npc", "npc", camera_stream="cam")["type"] == "opened"
