"""A user's model with an image input runs on /v1/vision and on camera streams, with no edit to xrserve.

The model is a real ONNX graph exported from PyTorch (tests/conftest.py `write_colour_model`:
the mean colour of a 32x32 image): its model.toml declares the input `content_type = "image"`,
so the server checks the upload, decodes it, resizes it and scales it before the model sees it.
"""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import Server, start_server, write_colour_model
from tests.session_client import SessionClient


def solid_png(rgb: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> bytes:
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:] = rgb[::-1]  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("user-image-model")
    write_colour_model(tmp / "repo")
    server = start_server(tmp, "--dev", "--no-builtins", repo=tmp / "repo")
    yield server
    server.stop()


def test_metadata_says_clients_send_an_image(served: Server) -> None:
    (picture,) = httpx.get(f"{served.url}/v2/models/colour").json()["inputs"]
    assert picture == {"name": "picture", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "image"}}


def test_vision_route_decodes_resizes_and_scales_for_the_model(served: Server) -> None:
    answer = httpx.post(f"{served.url}/v1/vision/colour", files={"image": ("red.png", solid_png((255, 0, 0)))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["width"], body["height"]) == ("colour", 80, 60)
    (mean,) = body["outputs"]
    assert mean["name"] == "mean_rgb" and mean["shape"] == [1, 3]
    assert np.allclose(mean["data"], [1.0, 0.0, 0.0], atol=1e-3)

    broken = httpx.post(f"{served.url}/v1/vision/colour", files={"image": ("x.png", b"\x89PNG not really")})
    assert broken.status_code == 400 and "not a readable JPEG or PNG" in broken.json()["error"]["message"]


def test_tritonclient_sends_the_encoded_image_as_bytes(served: Server) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    picture = triton.InferInput("picture", [2], "BYTES")
    picture.set_data_from_numpy(
        np.array([solid_png((0, 255, 0)), solid_png((0, 0, 255), (16, 16))], dtype=object), binary_data=True
    )
    result = client.infer("colour", [picture]).as_numpy("mean_rgb")
    assert np.allclose(result, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-3)  # two sizes, both resized to 32x32


def test_camera_stream_runs_the_user_model_on_frames(served: Server) -> None:
    with SessionClient(served.url) as session:
        opened = session.open("cam", "camera", models=["colour"], budget_ms=5000)
        assert opened["models"] == ["colour"] and opened["versions"] == {"colour": "1"}
        session.send_binary(opened["channel"], 1, solid_png((0, 0, 255)))
        result = session.wait_type("result", sequence=1)
        assert result["model"] == "colour"
        assert np.allclose(result["result"]["outputs"][0]["data"], [0.0, 0.0, 1.0], atol=1e-3)
