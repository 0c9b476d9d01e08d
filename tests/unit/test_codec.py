"""The OIP wire codec: binary and JSON tensors round-trip; bad data is refused by name."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from xrserve.core import codec as oip_codec
from xrserve.core.errors import BadRequest


def roundtrip(outputs: dict[str, np.ndarray], binary: bool) -> dict[str, np.ndarray]:
    """Encode as a response, then decode the same tensors as a request."""
    body, header = oip_codec.encode_response("m", "1", "", outputs, set(), binary)
    document, raw = oip_codec.parse_body(body, str(header) if header else None)
    for tensor in document["outputs"]:
        if "data" in tensor and tensor["datatype"] == "BYTES":
            tensor["data"] = list(tensor["data"])
    document["inputs"] = document.pop("outputs")
    return oip_codec.decode_inputs(document, raw)


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(binary: bool) -> None:
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
        "f16": np.array([0.5, -2.0], dtype=np.float16),
        "f64": np.array([[1e-300]], dtype=np.float64),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u64": np.array([2**63], dtype=np.uint64),
        "b": np.array([True, False]),
        "s": np.array([b"hello", "wörld".encode(), b""], dtype=object),
    }
    back = roundtrip(arrays, binary)
    for name, array in arrays.items():
        assert back[name].shape == array.shape
        if array.dtype == object:
            assert back[name].tolist() == array.tolist()
        else:
            np.testing.assert_array_equal(back[name], array)


def test_non_finite_floats_are_strings_in_json_and_read_back() -> None:
    """JSON has no NaN or infinity: orjson wrote null, a value the model never produced."""
    arrays = {
        "f32": np.array([[1.5, np.inf], [-np.inf, np.nan]], dtype=np.float32),
        "f16": np.array([np.inf], dtype=np.float16),
        "f64": np.array([np.nan, 2.0]),
    }
    body, header = oip_codec.encode_response("m", "1", "", arrays, set(), False)
    assert header is None and b"null" not in body
    data = {t["name"]: t["data"] for t in orjson.loads(body)["outputs"]}
    assert data == {"f32": [1.5, "Infinity", "-Infinity", "NaN"], "f16": ["Infinity"], "f64": ["NaN", 2.0]}
    assert oip_codec.outputs_as_json(arrays)[0]["data"] == [1.5, "Infinity", "-Infinity", "NaN"]
    back = roundtrip(arrays, binary=False)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)  # NaN where NaN was
    large = {"x": np.array([2.0**70, 3.4e38])}  # within FP32's range: taken as FP32
    document = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [2**70, 3.4e38]}]}
    assert oip_codec.decode_inputs(document, memoryview(b""))["x"].tolist() == large["x"].astype(np.float32).tolist()


def test_nested_json_data_is_flattened() -> None:
    document = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    assert oip_codec.decode_inputs(document, memoryview(b""))["x"].tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "tensor, words",
    [
        ({"name": "x", "shape": [2], "datatype": "INT32", "data": [1, 2.5]}, "whole numbers"),
        ({"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}, "do not fit INT8"),
        ({"name": "x", "shape": [1], "datatype": "UINT64", "data": [2**64]}, "do not fit UINT64"),
        ({"name": "x", "shape": [2], "datatype": "INT64", "data": [-1, 2**63]}, "do not fit INT64"),
        ({"name": "x", "shape": [1], "datatype": "FP32", "data": [1e39]}, "1e[+]39 is out of the range of FP32"),
        ({"name": "x", "shape": [2], "datatype": "FP16", "data": [1, 70000]}, "70000 is out of the range of FP16"),
        ({"name": "x", "shape": [1], "datatype": "FP64", "data": [2**1100]}, "too large for FP64"),
        ({"name": "x", "shape": [1], "datatype": "FP32", "data": ["nan"]}, '"NaN", "Infinity", "-Infinity"'),
        ({"name": "x", "shape": [2], "datatype": "FP32", "data": ["NaN", None]}, "must be numbers, got None"),
        ({"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}, "true or false"),
        ({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1.0]}, "non-negative integers"),
        ({"name": "x", "shape": [10**12], "datatype": "FP32", "data": [[1.0], [2.0]]}, "needs 1000000000000 elements"),
        ({"name": "x", "shape": [1], "datatype": "BYTES", "data": [5]}, "must be strings"),
        ({"name": "x", "shape": [1], "datatype": "FP32"}, "neither 'data' nor"),
        ({"shape": [1], "datatype": "FP32", "data": [1]}, "needs a 'name'"),
    ],
)
def test_bad_tensors(tensor: dict, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        oip_codec.decode_inputs({"inputs": [tensor]}, memoryview(b""))


def test_duplicate_and_unclaimed_binary() -> None:
    twice = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}] * 2}
    with pytest.raises(BadRequest, match="appears twice"):
        oip_codec.decode_inputs(twice, memoryview(b""))
    once = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    with pytest.raises(BadRequest, match="no input claims"):
        oip_codec.decode_inputs(once, memoryview(b"\0\0\0\0"))


def test_header_length_must_fit() -> None:
    body = orjson.dumps({"inputs": []})
    with pytest.raises(BadRequest, match="must be an integer"):
        oip_codec.parse_body(body, "ten")
    with pytest.raises(BadRequest, match="length of the JSON part"):
        oip_codec.parse_body(body, str(len(body) + 1))
