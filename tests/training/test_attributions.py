"""`explain`: integrated gradients of the gesture classifiers, checked on the shipped versions and over OIP."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as triton

from tests.conftest import Server, infer_body, start_server
from xrserve.core.config import load_model_toml
from xrserve.models.trained import builtin_configs
from xrserve.runtimes import create_model
from xrserve.training.attribution import removal_check
from xrserve.training.recipes import recipes

MODELS = {"gesture": ("landmarks", 21), "gesture-motion": ("trajectory", 16)}


@pytest.fixture(scope="module")
def shipped():
    """name -> the shipped version 1, loaded the way the server loads it."""
    cache = {}

    def get(name: str):
        if name not in cache:
            model = create_model(next(c for c in builtin_configs() if c.name == name))
            model.load()
            cache[name] = model
        return cache[name]

    return get


def held_out(name: str, model) -> np.ndarray:
    """The test rows of the committed data, as the shipped run split them, in the model's own coordinates."""
    recipe = recipes()[name]()
    recipe.prepare(None, seed=0, limit=None)  # the shipped run: seed 0, all rows (its report.json)
    points = torch.from_numpy(recipe.x[recipe.split["test"]])
    with torch.no_grad():
        return model.module.net.normalise(points).reshape(points.shape).numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_removing_top_attributed_landmarks_changes_the_prediction_more_than_random_ones(shipped, name: str) -> None:
    model = shipped(name)
    input_name, count = MODELS[name]
    points = held_out(name, model)
    attributions = model.infer({input_name: points}, {"explain": True})["attributions"]
    assert attributions.shape == points.shape and attributions.dtype == np.float32
    removed = model.baselines.reshape(-1, count, 2).mean(axis=0)
    check = removal_check(lambda p: model.infer({input_name: p}, {})["probabilities"], points, attributions, removed)
    print(name, check)
    for k, row in check["by_k"].items():  # mean fall of the predicted class's probability
        assert row["top_k"] > 2 * row["random_k"], (k, row)
    assert check["by_k"]["3"]["top_k"] > 0.2, check  # and removing three landmarks matters


@pytest.mark.parametrize("name", list(MODELS))
def test_attributions_are_integrated_gradients_of_each_row(shipped, name: str) -> None:
    model = shipped(name)
    input_name, count = MODELS[name]
    points = held_out(name, model)[:40]
    out = model.infer({input_name: points}, {"explain": True})
    # completeness: a row's attributions add up to its predicted probability minus the baselines' (mean)
    target = out["probabilities"].argmax(1)
    with torch.no_grad():  # the baselines are in the model's coordinates: past its normalisation
        at_baselines = torch.softmax(model.module.net.net(torch.from_numpy(model.baselines)), dim=1).numpy()
    expected = out["probabilities"][np.arange(len(points)), target] - at_baselines[:, target].mean(axis=0)
    gap = np.abs(out["attributions"].sum(axis=(1, 2)) - expected)
    assert gap.mean() < 0.03 and gap.max() < 0.35, (gap.mean(), gap.max())
    # a row's attributions do not depend on the rows batched with it
    alone = model.infer({input_name: points[3:4]}, {"explain": True})["attributions"]
    np.testing.assert_allclose(alone[0], out["attributions"][3], rtol=1e-4, atol=1e-5)
    # the origin point (wrist, first position) is what the others are measured from: never attributed
    assert np.all(out["attributions"][:, 0] == 0)


def test_without_explain_there_are_no_attributions(shipped) -> None:
    out = shipped("gesture").infer({"landmarks": np.zeros((2, 21, 2), np.float32)}, {})
    assert set(out) == {"probabilities", "label"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("explain")
    server = start_server(tmp, "--only", "gesture", "--only", "gesture-motion", admin_key=True)
    yield server
    server.stop()


def tensors(body: dict) -> dict[str, np.ndarray]:
    return {
        o["name"]: np.asarray(o["data"], dtype=np.float32).reshape(o["shape"])
        for o in body["outputs"]
        if o["datatype"] == "FP32"
    }


def hands(rows: int, seed: int) -> np.ndarray:
    """Hands in pixel coordinates: the model makes them wrist-relative and scales them itself."""
    rng = np.random.default_rng(seed)
    return (rng.normal(scale=60, size=(rows, 21, 2)) + [320, 240]).astype(np.float32)


def test_oip_explain_adds_attributions_shaped_like_the_input(served: Server, shipped) -> None:
    points = hands(3, 0)
    expected = shipped("gesture").infer({"landmarks": points}, {"explain": True})["attributions"]
    with served.client() as client:
        answer = client.post(
            "/v2/models/gesture/infer", json=infer_body("landmarks", points, parameters={"explain": True})
        )
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert outputs["attributions"]["datatype"] == "FP32" and outputs["attributions"]["shape"] == [3, 21, 2]
        np.testing.assert_allclose(tensors(answer.json())["attributions"], expected, rtol=1e-4, atol=1e-5)
        plain = client.post("/v2/models/gesture/infer", json=infer_body("landmarks", points))
        assert plain.status_code == 200 and "attributions" not in {o["name"] for o in plain.json()["outputs"]}
        off = client.post(
            "/v2/models/gesture/infer", json=infer_body("landmarks", points, parameters={"explain": False})
        )
        assert "attributions" not in {o["name"] for o in off.json()["outputs"]}
        only = client.post(
            "/v2/models/gesture-motion/infer",
            json=infer_body(
                "trajectory", np.zeros((2, 16, 2)), parameters={"explain": True}, outputs=[{"name": "attributions"}]
            ),
        )
        assert only.status_code == 200, only.text
        assert [(o["name"], o["shape"]) for o in only.json()["outputs"]] == [("attributions", [2, 16, 2])]
        config = client.get("/v2/models/gesture/config").json()
        assert "explain" in config["request_parameters"]["properties"]


@pytest.mark.parametrize("value", ["yes", "true", 1, None, [True]])
def test_oip_a_bad_explain_value_is_a_400(served: Server, value) -> None:
    with served.client() as client:
        answer = client.post(
            "/v2/models/gesture/infer", json=infer_body("landmarks", hands(1, 1), parameters={"explain": value})
        )
    assert answer.status_code == 400, answer.text
    assert "explain" in answer.json()["error"]


def test_oip_asking_for_attributions_without_explain_is_a_400(served: Server) -> None:
    with served.client() as client:
        answer = client.post(
            "/v2/models/gesture/infer", json=infer_body("landmarks", hands(1, 2), outputs=[{"name": "attributions"}])
        )
    assert answer.status_code == 400, answer.text
    assert "attributions" in answer.json()["error"] and "parameter" in answer.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary_data", "json"])
def test_tritonclient_explain(served: Server, shipped, binary: bool) -> None:
    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    points = hands(2, 3)
    tensor = triton.InferInput("landmarks", [2, 21, 2], "FP32")
    tensor.set_data_from_numpy(points, binary_data=binary)
    wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "attributions")]
    result = client.infer(
        "gesture",
        [tensor],
        outputs=wanted,
        parameters={"explain": True},
        headers={"Authorization": f"Bearer {served.admin_key}"},
    )
    attributions = result.as_numpy("attributions")
    assert attributions.dtype == np.float32 and attributions.shape == (2, 21, 2)
    expected = shipped("gesture").infer({"landmarks": points}, {"explain": True})
    np.testing.assert_allclose(attributions, expected["attributions"], rtol=1e-4, atol=1e-5)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").tolist()]  # JSON: str
    assert labels == [x.decode() for x in expected["label"]]


def test_explained_and_plain_requests_at_once_each_get_their_own_answer(served: Server, shipped) -> None:
    """The scheduler batches only requests with equal parameters; every explained one gets its own rows."""
    requests = [(hands(1 + i % 3, 10 + i), i % 2 == 0) for i in range(24)]
    model = shipped("gesture")

    def send(item: tuple[np.ndarray, bool]) -> dict:
        points, explain = item
        with served.client() as client:
            parameters = {"explain": True} if explain else {}
            answer = client.post(
                "/v2/models/gesture/infer", json=infer_body("landmarks", points, parameters=parameters)
            )
        assert answer.status_code == 200, answer.text
        return tensors(answer.json())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, requests))
    for (points, explain), got in zip(requests, answers):
        expected = model.infer({"landmarks": points}, {"explain": explain})
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-4, atol=1e-5)
        if explain:
            np.testing.assert_allclose(got["attributions"], expected["attributions"], rtol=1e-4, atol=1e-5)
        else:
            assert "attributions" not in got


def test_report_picture_and_check_of_a_training_run(trained) -> None:
    result = trained("gesture")  # a slice of the data, 4 epochs: the picture and the check are made every run
    attributions = result.report["metrics"]["attributions"]
    assert set(attributions["removal_check"]["by_k"]) == {"1", "3", "5"}
    for picture in (result.run_dir / "attributions.png", result.export_dir / "attributions.png"):
        assert picture.stat().st_size > 5000
    assert "Removal check" in Path(result.run_dir / "report.md").read_text()
    model = create_model(load_model_toml(result.export_dir / "model.toml", name="gesture", version="9"))
    model.load()
    assert model.baselines.shape == (4, 42)
    out = model.infer({"landmarks": hands(2, 4)}, {"explain": True})
    assert out["attributions"].shape == (2, 21, 2)
