"""Model parameters are checked against the model's declared `Parameters` before anything is queued.

The same request parameters reach `hands` through /v1/vision (query string or the
`parameters` form field) and through the Open Inference Protocol; a wrong one is a 400
naming the parameter and what it may be, never the model's own ValueError as a 500.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import Server
from tests.vision import media

BAD_HANDS = [
    ({"max_hands": 7}, "max_hands", "1 or 2"),
    ({"max_hands": 0}, "max_hands", "1 or 2"),
    ({"max_hands": "abc"}, "max_hands", "1 or 2"),
    ({"complexity": 5}, "complexity", "0 or 1"),
    ({"tiles": "sometimes"}, "tiles", "boolean"),
    ({"max_hand": 1}, "max_hand", "not a parameter"),
]


def oip_infer(client, photo: bytes, parameters: dict):
    """POST /v2/models/hands/infer with the photo as a BYTES tensor in the binary extension."""
    tensor = len(photo).to_bytes(4, "little") + photo
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(tensor)}}
            ],
            "parameters": parameters,
        }
    ).encode()
    return client.post(
        "/v2/models/hands/infer", content=header + tensor, headers={"Inference-Header-Content-Length": str(len(header))}
    )


@pytest.fixture(scope="module")
def photo() -> bytes:
    return media.hand_photos()[0].read_bytes()


@pytest.mark.parametrize("parameters, name, allowed", BAD_HANDS)
def test_bad_hands_parameters_are_400_on_every_door(
    server: Server, photo: bytes, parameters: dict, name: str, allowed: str
) -> None:
    with server.client() as client:
        query = "&".join(f"{k}={v}" for k, v in parameters.items())
        answers = {
            "query": client.post(f"/v1/vision/hands?{query}", content=photo, headers={"Content-Type": "image/jpeg"}),
            "form": client.post(
                "/v1/vision/hands", files={"image": ("hand.jpg", photo)}, data={"parameters": json.dumps(parameters)}
            ),
        }
        for door, answer in answers.items():
            assert answer.status_code == 400, (door, answer.text)
            message = answer.json()["error"]["message"]
            assert name in message and allowed in message, (door, message)
            assert "max_hands" in message and "complexity" in message  # the parameters it does take are listed
        oip = oip_infer(client, photo, parameters)
        assert oip.status_code == 400, oip.text
        assert name in oip.json()["error"] and allowed in oip.json()["error"]


def test_good_hands_parameters_still_work(server: Server, photo: bytes) -> None:
    with server.client() as client:
        lite = client.post(
            "/v1/vision/hands?max_hands=1&complexity=0&tiles=false",
            content=photo,
            headers={"Content-Type": "image/jpeg"},
        )
        assert lite.status_code == 200, lite.text
        assert len(lite.json()["hands"]) == 1
        oip = oip_infer(client, photo, {"max_hands": 1, "complexity": 0})
        assert oip.status_code == 200, oip.text
        count = next(o for o in oip.json()["outputs"] if o["name"] == "count")
        assert count["data"] == [1]


def test_markers_parameters_are_checked(server: Server) -> None:
    image = media.render_marker(3, media.rotation(0, 0), np.array([0, 0, 0.5]))
    with server.client() as client:
        unknown = client.post(
            "/v1/vision/markers",
            files={"image": ("m.png", image)},
            data={"parameters": json.dumps({"dictionary": "5x5_7"})},
        )
        assert unknown.status_code == 400 and "4x4_50" in unknown.json()["error"]["message"]
        negative = client.post("/v1/vision/markers?marker_length_m=-0.05", files={"image": ("m.png", image)})
        assert negative.status_code == 400 and "marker_length_m" in negative.json()["error"]["message"]
        aruco = client.post("/v1/vision/markers?dictionary=DICT_4X4_50", files={"image": ("m.png", image)})
        assert aruco.status_code == 200 and [m["id"] for m in aruco.json()["markers"]] == [3]


def test_config_describes_the_request_parameters(server: Server) -> None:
    with server.client() as client:
        hands = client.get("/v2/models/hands/config").json()
        ocr = client.get("/v2/models/ocr/config").json()
        tiny = client.get("/v2/models/tiny/config").json()
    assert hands["camera"] is True and set(hands["request_parameters"]["properties"]) >= {"max_hands", "complexity"}
    assert ocr["camera"] is False and ocr["request_parameters"]["properties"] == {}  # takes none
    assert tiny["request_parameters"] is None  # a user's ONNX model: its parameters are its own business
