"""The perception models on real photos and rendered images, through /v1/vision and OIP."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton

from tests.conftest import Server
from tests.vision import media
from xrserve.models.vision.markers import quaternion


def vision(server: Server, model: str, data: bytes, **parameters):
    import json

    with server.client() as client:
        form = {"parameters": json.dumps(parameters)} if parameters else None
        return client.post(f"/v1/vision/{model}", files={"image": ("image", data)}, data=form)


def test_hands_found_in_real_photos_with_21_landmarks_inside_the_image(server: Server) -> None:
    photos = media.hand_photos()
    found = 0
    for photo in photos:
        answer = vision(server, "hands", photo.read_bytes())
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["hands"]:
            found += 1
        for hand in body["hands"]:
            points = np.array(hand["landmarks"])
            assert points.shape == (21, 3)
            assert (points[:, 0] >= 0).all() and (points[:, 0] < body["width"]).all()
            assert (points[:, 1] >= 0).all() and (points[:, 1] < body["height"]).all()
            assert hand["handedness"] in ("Left", "Right")
            world = np.array(hand["world_landmarks"])
            assert 0.03 < np.linalg.norm(world[0] - world[12]) < 0.3  # wrist to middle fingertip, metres
    rate = found / len(photos)
    print(f"hands found in {found}/{len(photos)} photos ({rate:.0%})")
    assert rate >= 0.9


def test_hands_over_the_open_inference_protocol_with_tritonclient(server: Server) -> None:
    photo = media.hand_photos()[0].read_bytes()
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([photo], dtype=object), binary_data=True)
    result = client.infer("hands", [tensor], headers={"Authorization": f"Bearer {server.admin_key}"})
    assert result.as_numpy("count").tolist() == [1]
    assert result.as_numpy("landmarks").shape == (1, 2, 21, 3)
    assert result.as_numpy("handedness")[0, 0] in (b"Left", b"Right")


def test_pose_finds_the_people_in_coco_photos(server: Server) -> None:
    for photo in sorted(media.COCO.glob("*.jpg")):
        answer = vision(server, "pose", photo.read_bytes())
        assert answer.status_code == 200, answer.text
        poses = answer.json()["poses"]
        if photo.name in media.PEOPLE:
            assert len(poses) == 1, photo.name
            points = np.array(poses[0]["landmarks"])
            assert points.shape == (33, 4)
            visible = points[points[:, 3] > 0.5]
            assert len(visible) >= 8, photo.name


def test_face_mesh_on_a_portrait(server: Server) -> None:
    answer = vision(server, "face", media.FACE.read_bytes())
    assert answer.status_code == 200, answer.text
    faces = answer.json()["faces"]
    assert len(faces) == 1
    mesh = np.array(faces[0]["landmarks"])
    assert mesh.shape == (468, 3)
    width, height = answer.json()["width"], answer.json()["height"]
    # the eyes are level and left of/right of the nose tip, all inside the picture
    right_eye, left_eye, nose = mesh[33], mesh[263], mesh[1]
    assert right_eye[0] < nose[0] < left_eye[0]
    assert abs(right_eye[1] - left_eye[1]) < 0.1 * height
    assert (mesh[:, 0] > 0).all() and (mesh[:, 0] < width).all()


def test_person_segmentation_covers_the_portrait(server: Server) -> None:
    import base64

    import cv2

    answer = vision(server, "segmentation", media.FACE.read_bytes())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(body["mask_png_base64"]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (body["height"], body["width"])
    assert 0.2 < body["coverage"] < 0.95
    assert mask[body["height"] // 2, body["width"] // 2] > 128  # the face in the middle is the person


@pytest.mark.parametrize("tilt", [(0, 0), (20, 15), (35, -25)])
def test_marker_pose_within_2_degrees_and_1_cm_at_half_a_metre(server: Server, tilt) -> None:
    rotation = media.rotation(*tilt)
    translation = np.array([0.03, -0.02, 0.5])
    image = media.render_marker(7, rotation, translation)
    answer = vision(server, "markers", image, **media.INTRINSICS, marker_length_m=media.MARKER_M)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["intrinsics_assumed"] is False
    (marker,) = body["markers"]
    assert marker["id"] == 7
    assert np.linalg.norm(np.array(marker["translation_m"]) - translation) < 0.01
    assert media.quaternion_angle_deg(np.array(marker["rotation_xyzw"]), quaternion(rotation)) < 2.0


def test_markers_refuse_half_given_intrinsics(server: Server) -> None:
    image = media.render_marker(3, media.rotation(0, 0), np.array([0, 0, 0.5]))
    answer = vision(server, "markers", image, fx=800.0)
    assert answer.status_code == 400
    assert "fx, fy, cx, cy" in answer.json()["error"]["message"]


def test_ocr_reads_a_rendered_sentence(server: Server) -> None:
    answer = vision(server, "ocr", media.render_text("Meet me at the blue door at noon"))
    assert answer.status_code == 200, answer.text
    text = " ".join(line["text"] for line in answer.json()["lines"]).lower().replace(" ", "")
    assert "meetmeattheblue" in text and "noon" in text


@pytest.mark.parametrize(
    "data, status, words",
    [
        (media.corrupt_jpeg(), 400, "not a readable"),
        (media.truncated_jpeg(), 400, "truncated"),
        (media.huge_png_header(), 413, "20000x20000"),
    ],
)
def test_bad_images_get_a_clear_error_on_every_door(server: Server, data: bytes, status: int, words: str) -> None:
    answer = vision(server, "hands", data)
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]
    with server.client() as client:  # the same refusal over OIP (binary BYTES tensor)
        header = b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":%d}}]}'
        tensor = len(data).to_bytes(4, "little") + data
        body = header % len(tensor)
        oip = client.post(
            "/v2/models/hands/infer", content=body + tensor, headers={"Inference-Header-Content-Length": str(len(body))}
        )
    assert oip.status_code == status, oip.text
    assert words in oip.json()["error"]


def test_empty_body_and_wrong_requests(server: Server) -> None:
    with server.client() as client:
        empty = client.post("/v1/vision/hands", content=b"", headers={"Content-Type": "image/jpeg"})
        assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
        no_file = client.post("/v1/vision/hands", files={"photo": ("x.jpg", b"abc")})
        assert no_file.status_code == 400 and "'image'" in no_file.json()["error"]["message"]
        not_vision = client.post("/v1/vision/minilm", content=b"x", headers={"Content-Type": "image/jpeg"})
        assert not_vision.status_code == 400 and "does not take an image" in not_vision.json()["error"]["message"]
        unknown = client.post("/v1/vision/nope", content=b"x", headers={"Content-Type": "image/jpeg"})
        assert unknown.status_code == 404
        raw = client.post(
            "/v1/vision/hands", content=media.hand_photos()[0].read_bytes(), headers={"Content-Type": "image/jpeg"}
        )
        assert raw.status_code == 200 and len(raw.json()["hands"]) == 1


def test_scoped_key_cannot_use_other_vision_models(server: Server) -> None:
    from tests.conftest import cli

    key = cli("keys", "create", "--scope", "markers", "--quiet", data_dir=server.data_dir).stdout.strip()
    with server.client(key) as client:
        refused = client.post("/v1/vision/hands", content=b"x", headers={"Content-Type": "image/jpeg"})
    assert refused.status_code == 403
