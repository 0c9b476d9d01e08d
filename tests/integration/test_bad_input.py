"""Bad input gets a 4xx whose message names the problem; the server stays up."""

from __future__ import annotations

import gzip
import struct

import httpx
import numpy as np
import pytest

from tests.conftest import Server

INFER = "/v2/models/tiny/infer"


def x(shape=(1, 64), datatype="FP32", data=None) -> dict:
    count = int(np.prod(shape))
    return {
        "inputs": [
            {
                "name": "x",
                "shape": list(shape),
                "datatype": datatype,
                "data": data if data is not None else [0.5] * count,
            }
        ]
    }


@pytest.mark.parametrize(
    "body, status, words",
    [
        (x(shape=(1, 63)), 400, ["shape [1, 63]", "[-1, 64]"]),
        (x(datatype="INT64", data=[1] * 64), 400, ["datatype INT64", "FP32"]),
        (x(datatype="FLOAT", data=[1.0] * 64), 400, ["datatype 'FLOAT'"]),
        (x(shape=(1, 64), data=[1.0] * 10), 400, ["needs 64 elements", "has 10"]),
        (x(data=["a"] * 64), 400, ["must be numbers"]),
        (x(shape=(17, 64)), 400, ["batch size 17", "max_batch_size"]),
        (x(shape=(0, 64), data=[]), 400, ["empty"]),
        (
            {"inputs": [{"name": "z", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]},
            400,
            ["needs input(s) ['x']"],
        ),
        ({"inputs": []}, 400, ["'inputs' must be a non-empty list"]),
        ({"nothing": 1}, 400, ["'inputs'"]),
        ([1, 2, 3], 400, ["JSON object"]),
        ({**x(), "outputs": [{"name": "nope"}]}, 400, ["no output(s) ['nope']"]),
        ({**x(), "parameters": {"priority": "urgent"}}, 400, ["priority"]),
        ({**x(), "parameters": []}, 400, ["'parameters' must be an object"]),
    ],
)
def test_invalid_requests(admin, body, status: int, words: list[str]) -> None:
    answer = admin.post(INFER, json=body)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    for word in words:
        assert word in message


def test_malformed_json(admin) -> None:
    answer = admin.post(INFER, content=b'{"inputs": [', headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]
    openai = admin.post("/v1/embeddings", content=b"{oops", headers={"Content-Type": "application/json"})
    assert openai.status_code == 400 and "JSON" in openai.json()["error"]["message"]  # OpenAI's error shape


def test_integer_overflow(admin) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    body["inputs"][0].update(datatype="INT8", data=[1000])
    answer = admin.post("/v2/models/crashy/infer", json=body)
    assert answer.status_code == 400


def test_unknown_route_and_method(admin) -> None:
    assert admin.get("/v2/nothing").json()["error"].startswith("no route GET /v2/nothing")
    answer = admin.delete("/v2/models/tiny/infer")
    assert answer.status_code == 405 and "DELETE is not allowed" in answer.json()["error"]


def test_oversized_body_is_413(server: Server, admin) -> None:
    big = b"0" * (9 * 2**20)  # the test server's limit is 8 MiB
    answer = admin.post(INFER, content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "limit of 8388608 bytes" in answer.json()["error"]

    def chunks():  # no Content-Length: the limit must hold for streamed bodies too
        for _ in range(9):
            yield b"0" * 2**20

    streamed = admin.post(INFER, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    bomb = gzip.compress(b" " * (20 * 2**20))  # 20 KiB that inflate to 20 MiB
    inflated = admin.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    assert admin.post(INFER, json=x()).status_code == 200


def test_gzip_request_body(admin) -> None:
    answer = admin.post(
        INFER,
        content=gzip.compress(httpx.Request("POST", "/", json=x()).content),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200


def test_corrupt_binary_tensors(admin) -> None:
    def header_for(payload: bytes) -> bytes:
        return (
            b'{"inputs":[{"name":"text","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":%d}}]}'
            % len(payload)
        )

    cases = {
        struct.pack("<I", 100) + b"12345678": "past the end",  # a length longer than the data
        struct.pack("<I", 3) + b"abc" + b"\x01": "inside a 4-byte length prefix",
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b" + struct.pack("<I", 1) + b"c": "needs 2 elements",
    }
    for payload, words in cases.items():
        header = header_for(payload)
        answer = admin.post(
            "/v2/models/minilm/infer",
            content=header + payload,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text
    header = header_for(b"x" * 12)
    lying = admin.post("/v2/models/minilm/infer", content=header, headers={"Inference-Header-Content-Length": "9999"})
    assert lying.status_code == 400 and "Inference-Header-Content-Length" in lying.json()["error"]
    short = b'{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","parameters":{"binary_data_size":256}}]}'
    answer = admin.post(
        INFER, content=short + b"\0" * 100, headers={"Inference-Header-Content-Length": str(len(short))}
    )
    assert answer.status_code == 400 and "binary_data_size" in answer.json()["error"]


def test_bytes_model_with_non_utf8(admin) -> None:
    header = b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}'
    answer = admin.post(
        "/v2/models/minilm/infer",
        content=header + struct.pack("<I", 4) + b"\xff\xfe\x00\x81",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 200


def test_server_survives_all_of_it(server: Server) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
