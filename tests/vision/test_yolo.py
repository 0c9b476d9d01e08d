"""A user's Ultralytics YOLO detector (`runtime = "yolo"`) answers as Ultralytics' own `predict` does.

The fixture in tests/data/yolo is a real detector trained by Ultralytics on shapes pasted
onto real photos, exported to ONNX in both layouts Ultralytics writes ([1, 4 + classes,
anchors] and the end-to-end [1, 300, 6]), with Ultralytics' `predict` answers on the test
images (tests/data/yolo/make_fixture.py regenerates all of it in a venv of its own).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TEST_DATA, Server, export_tiny_onnx, start_server, write_model
from tests.session_client import SessionClient

YOLO = TEST_DATA / "yolo"
EXPECTED = json.loads((YOLO / "expected.json").read_text())
IMAGES = sorted((YOLO / "images").glob("*.png"))
MODELS = {"shapes": "shapes-v8.onnx", "shapes-e2e": "shapes-e2e.onnx"}
WELL_ABOVE = 0.3  # boxes compared: scores well above the 0.25 threshold (a 1e-3 wobble cannot cross it)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("yolo")
    repo = tmp / "repo"
    for name, file in MODELS.items():
        shutil.copy(YOLO / file, write_model(repo, name, "1", 'runtime = "yolo"\nmax_batch_size = 4\n') / "model.onnx")
    # what a user may get wrong: an ONNX file that is no detector, one with a detector's input but not its output
    export_tiny_onnx(write_model(repo, "not-a-detector", "1", 'runtime = "yolo"\n') / "model.onnx")
    export_wrong_output(write_model(repo, "wrong-output", "1", 'runtime = "yolo"\n') / "model.onnx")
    # the bad ones are loaded by the test (a server with a failed model is not ready)
    server = start_server(tmp, "--only", "shapes", "--only", "shapes-e2e", repo=repo, admin_key=True)
    yield server
    server.stop()


def export_wrong_output(path: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):  # an image in, a [1, 7] vector out: a classifier, not a detector
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return image.mean(dim=(2, 3)).repeat(1, 3)[:, :7]

    torch.onnx.export(Pooled(), (torch.rand(1, 3, 64, 64),), str(path), input_names=["images"], dynamo=False)


def detect(server: Server, model: str, image: Path, **parameters: object) -> dict:
    with server.client() as client:
        answer = client.post(
            f"/v1/vision/{model}", files={"image": (image.name, image.read_bytes())}, params=parameters
        )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("model", list(MODELS))
def test_boxes_equal_ultralytics_predict_on_the_same_onnx_file(served: Server, model: str) -> None:
    compared = 0
    for image in IMAGES:
        ours = detect(served, model, image)
        width, height = cv2.imread(str(image)).shape[1::-1]
        assert ours["image_size"] == [width, height]
        theirs = [b for b in EXPECTED[MODELS[model]][image.name] if b["score"] > WELL_ABOVE]
        mine = [b for b in ours["boxes"] if b["score"] > WELL_ABOVE]
        assert len(mine) == len(theirs), (image.name, mine, theirs)
        for reference in theirs:
            match = min(mine, key=lambda b: max(abs(np.subtract(b["box"], reference["box"]))))
            assert max(abs(np.subtract(match["box"], reference["box"]))) <= 1.0, (image.name, match, reference)
            assert abs(match["score"] - reference["score"]) <= 1e-3, (image.name, match, reference)
            assert (match["class"], match["name"]) == (reference["class"], reference["name"])
            compared += 1
    assert compared >= 2 * len(IMAGES), f"only {compared} boxes well above the threshold: retrain the fixture"


def test_thresholds_are_named_as_ultralytics_names_them(served: Server) -> None:
    image = IMAGES[0]
    everything = detect(served, "shapes", image, conf="0.05")["boxes"]
    confident = detect(served, "shapes", image, conf="0.6")["boxes"]
    assert confident and all(b["score"] > 0.6 for b in confident) and len(everything) > len(confident)
    assert len(detect(served, "shapes", image, conf="0.05", max_det="1")["boxes"]) == 1
    with served.client() as client:
        for bad, named in (({"conf": "2"}, "conf"), ({"iou": "-1"}, "iou"), ({"max_dets": "3"}, "max_dets")):
            answer = client.post("/v1/vision/shapes", files={"image": ("a.png", image.read_bytes())}, params=bad)
            assert answer.status_code == 400 and named in answer.json()["error"]["message"], answer.text
        broken = client.post("/v1/vision/shapes", files={"image": ("a.png", b"\x89PNG\r\n\x1a\n broken")})
        assert broken.status_code == 400, broken.text


def test_tritonclient_gets_boxes_scores_classes_and_names(served: Server) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    picture = triton.InferInput("image", [2], "BYTES")
    picture.set_data_from_numpy(np.array([IMAGES[2].read_bytes(), IMAGES[3].read_bytes()], dtype=object))
    result = client.infer("shapes", [picture], parameters={"conf": 0.5}, headers=headers)
    counts = result.as_numpy("count")
    assert counts.shape == (2,) and counts.min() >= 1
    boxes, names = result.as_numpy("boxes"), result.as_numpy("names")
    assert boxes.shape[:2] == names.shape == (2, counts.max())
    assert {n.decode() for n in names[0, : counts[0]]} <= {"circle", "square", "triangle"}


def test_bad_onnx_files_are_refused_at_load_naming_the_problem(served: Server) -> None:
    with served.client() as client:
        for model, problem in (("not-a-detector", "[batch, 3, h, w]"), ("wrong-output", "[1, 7]")):
            (version,) = [e for e in client.post(f"/v2/repository/models/{model}/load").json() if e["version"] == "1"]
            assert version["state"] == "UNAVAILABLE", version  # the answer says why, as the index does
            assert "not a YOLO detector" in version["reason"] and problem in version["reason"], version
        index = {e["name"]: e for e in client.post("/v2/repository/index").json()}
    assert index["shapes"]["state"] == "READY"
    assert (
        index["not-a-detector"]["state"] == "UNAVAILABLE" and "not a YOLO detector" in index["not-a-detector"]["reason"]
    )


def moving_circle_frames(tmp: Path, count: int = 24, size: int = 120) -> list[bytes]:
    """A short video made with ffmpeg: a yellow disc glides across a photo; decoded back to PNG frames."""
    photo = TEST_DATA / "images" / "coco" / "000000000315.jpg"
    disc = np.zeros((size, size, 4), np.uint8)
    cv2.circle(disc, (size // 2, size // 2), size // 2 - 2, (30, 220, 240, 255), -1, cv2.LINE_AA)
    cv2.imwrite(str(tmp / "disc.png"), disc)
    video = tmp / "moving.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo),
         "-loop", "1", "-i", str(tmp / "disc.png"),
         "-filter_complex", "[0]scale=480:360[bg];[bg][1]overlay=x='40+t*120':y='120+t*20'",
         "-t", str(count / 12), "-r", "12", "-pix_fmt", "yuv420p", str(video)],
        check=True, timeout=120,
    )  # fmt: skip
    (tmp / "frames").mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(video), str(tmp / "frames" / "%03d.png")], check=True)
    return [p.read_bytes() for p in sorted((tmp / "frames").glob("*.png"))][:count]


def test_a_camera_stream_keeps_a_moving_objects_track_id(served: Server, tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make install installs it)")
    frames = moving_circle_frames(tmp_path)
    seen: list[dict] = []
    with SessionClient(served.url, served.admin_key) as session:
        channel = session.open("cam", "camera", models=["shapes"], budget_ms=5000)["channel"]
        for sequence, frame in enumerate(frames):  # one at a time: every frame is answered
            session.send_binary(channel, sequence, frame)
            result = session.wait_type("result", sequence=sequence)
            circles = [b for b in result["result"]["boxes"] if b["name"] == "circle"]
            seen.extend(sorted(circles, key=lambda b: -b["score"])[:1])
    assert len(seen) >= 0.8 * len(frames), f"the disc was found in {len(seen)} of {len(frames)} frames"
    assert len({b["track"] for b in seen}) == 1, [b["track"] for b in seen]  # one object, one id
    xs = [b["box"][0] for b in seen]
    assert xs[-1] - xs[0] > 100  # and it did move
