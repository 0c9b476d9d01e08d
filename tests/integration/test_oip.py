"""Open Inference Protocol v2 with the real Triton client, JSON and binary tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import Server, infer_body
from tests.session_client import SessionClient


def triton_client(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def headers(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


@pytest.mark.parametrize("binary", [True, False], ids=["binary_data", "json"])
def test_minilm_bytes_in_fp32_out(server: Server, binary: bool) -> None:
    client = triton_client(server)
    texts = np.array([b"a red apple", "ünïcode text".encode()], dtype=object)
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts, binary_data=binary)
    wanted = [
        triton.InferRequestedOutput("embedding", binary_data=binary),
        triton.InferRequestedOutput("tokens", binary_data=binary),
    ]
    result = client.infer("minilm", [text], outputs=wanted, headers=headers(server))
    embedding = result.as_numpy("embedding")
    assert embedding.dtype == np.float32 and embedding.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-4)
    assert not np.allclose(embedding[0], embedding[1])
    assert result.as_numpy("tokens").tolist()[0] == 5  # [CLS] a red apple [SEP]


@pytest.mark.parametrize("binary", [True, False], ids=["binary_data", "json"])
def test_onnx_model_exported_from_pytorch(server: Server, binary: bool) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Tanh())
    module.load_state_dict(torch.load(server.repo / "tiny" / "1" / "model.state.pt"))
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    tensor = triton.InferInput("x", [3, 64], "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = triton_client(server).infer(
        "tiny", [tensor], headers=headers(server), outputs=[triton.InferRequestedOutput("y", binary_data=binary)]
    )
    expected = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-6)


def test_metadata_and_readiness(server: Server) -> None:
    client = triton_client(server)
    h = headers(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "xrserve"
    assert client.is_model_ready("tiny", headers=h)
    assert client.is_model_ready("tiny", "1", headers=h)
    meta = client.get_model_metadata("tiny", headers=h)
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.get_model_metadata("minilm", "1", headers=h)["outputs"][0]["name"] == "embedding"


def test_version_addressing_and_unknowns(server: Server, admin) -> None:
    ok = admin.post("/v2/models/tiny/versions/1/infer", json=infer_body("x", np.zeros((1, 64))))
    assert ok.status_code == 200 and ok.json()["model_version"] == "1"
    missing = admin.post("/v2/models/tiny/versions/7/infer", json=infer_body("x", np.zeros((1, 64))))
    assert missing.status_code == 404 and "no version '7'" in missing.json()["error"]
    unknown = admin.get("/v2/models/nope")
    assert unknown.status_code == 404 and "unknown model 'nope'" in unknown.json()["error"]
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton_client(server).get_model_metadata("nope", headers=headers(server))


def test_request_id_and_output_selection(admin) -> None:
    body = infer_body("text", np.array(["hi"]), "BYTES", id="frame-42", outputs=[{"name": "tokens"}])
    answer = admin.post("/v2/models/minilm/infer", json=body).json()
    assert answer["id"] == "frame-42"
    assert [o["name"] for o in answer["outputs"]] == ["tokens"]


def test_torchscript_model(admin) -> None:
    a = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    b = np.full((2, 3), 2, np.float32)
    body = {"inputs": [infer_body("a", a)["inputs"][0], infer_body("b", b)["inputs"][0]]}
    answer = admin.post("/v2/models/scripted/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}
    np.testing.assert_array_equal(outputs["sum"], a + b)
    np.testing.assert_array_equal(outputs["product"], a * b)
    assert admin.get("/v2/models/scripted").json()["platform"] == "pytorch_torchscript"


def test_gguf_model_metadata(admin) -> None:
    """A GGUF file from a user repository (`runtime = "gguf"`) has OIP metadata like any model."""
    for path in ("/v2/models/my-llm", "/v2/models/my-llm/versions/1"):
        answer = admin.get(path)
        assert answer.status_code == 200, answer.text
        meta = answer.json()
        assert meta["name"] == "my-llm" and meta["versions"] == ["1"] and meta["platform"] == "llamacpp_gguf"
        assert [t["name"] for t in meta["inputs"]] == ["text_input"] and meta["inputs"][0]["datatype"] == "BYTES"
        assert [t["name"] for t in meta["outputs"]] == ["text_output"]


def scripted_body(a: list, b: list) -> dict:
    """A JSON request to `scripted` (TorchScript: sum and product of two FP32 [-1, 3] tensors)."""
    return {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [len(a) // 3, 3], "data": a},
            {"name": "b", "datatype": "FP32", "shape": [len(b) // 3, 3], "data": b},
        ]
    }


@pytest.mark.parametrize(
    "a, words",
    [
        ([1e39, 0.0, 1.0], "input 'a': 1e+39 is out of the range of FP32 (magnitudes up to 3.402823e+38)"),
        ([-1e39, 0.0, 1.0], "input 'a': -1e+39 is out of the range of FP32"),
        (["inf", 0.0, 1.0], 'input \'a\': FP32 data must be numbers, or "NaN", "Infinity", "-Infinity"'),
    ],
)
def test_a_json_value_out_of_the_datatypes_range_is_a_400_naming_the_tensor(admin, a, words) -> None:
    """1e39 for FP32 became infinity (then null in the answer) without a word."""
    answer = admin.post("/v2/models/scripted/infer", json=scripted_body(a, [1.0, 1.0, 1.0]))
    assert answer.status_code == 400 and words in answer.json()["error"], answer.text


def test_non_finite_outputs_are_strings_in_json_never_null(server: Server, admin) -> None:
    """3e38 * 3e38 overflows FP32: the answer says Infinity (and NaN for inf * 0), as strings, not null."""
    answer = admin.post(
        "/v2/models/scripted/infer", json=scripted_body([3e38, "Infinity", 1.5], [3e38, 0.0, "-Infinity"])
    )
    assert answer.status_code == 200, answer.text
    assert b"null" not in answer.content
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["sum"] == ["Infinity", "Infinity", "-Infinity"]
    assert outputs["product"] == ["Infinity", "NaN", "-Infinity"]
    # tritonclient reads them back as floats (numpy parses the strings); binary inputs carry inf as bits
    a = triton.InferInput("a", [1, 3], "FP32")
    a.set_data_from_numpy(np.array([[3e38, np.inf, 1.5]], np.float32), binary_data=True)
    b = triton.InferInput("b", [1, 3], "FP32")
    b.set_data_from_numpy(np.array([[3e38, 0.0, 2.0]], np.float32), binary_data=True)
    result = triton_client(server).infer(
        "scripted",
        [a, b],
        headers=headers(server),
        outputs=[triton.InferRequestedOutput(name, binary_data=False) for name in ("sum", "product")],
    )
    np.testing.assert_array_equal(result.as_numpy("sum"), np.array([[np.inf, np.inf, 3.5]], np.float32))
    np.testing.assert_array_equal(result.as_numpy("product"), np.array([[np.inf, np.nan, 3.0]], np.float32))


def test_the_session_infer_stream_reads_and_writes_tensors_the_same_way(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        session.open("s", "infer", model="scripted")
        session.send({"type": "infer", "stream": "s", "id": "big", **scripted_body([1e39, 0.0, 1.0], [1.0] * 3)})
        error = session.wait_type("error", request="big")
        assert error["status"] == 400 and "input 'a': 1e+39 is out of the range of FP32" in error["message"]
        session.send({"type": "infer", "stream": "s", "id": "inf", **scripted_body([3e38, 1.0, 1.0], [3e38, 1, 1])})
        outputs = {o["name"]: o["data"] for o in session.wait_type("result", id="inf")["outputs"]}
        assert outputs == {"sum": ["Infinity", 2.0, 2.0], "product": ["Infinity", 1.0, 1.0]}
