"""The XR session WebSocket itself: authentication, stream lifecycle, the generic `infer`
stream, and that bad messages are answered with errors while the session lives on."""

from __future__ import annotations

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Server, cli
from tests.session_client import HEADER, SessionClient


def embed_message(stream: str, text: str, request_id: str) -> dict:
    return {
        "type": "infer",
        "stream": stream,
        "id": request_id,
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}],
    }


def test_hello_announces_protocol_and_kinds(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        hello = session.hello
        assert hello["type"] == "hello" and hello["protocol"] == 1
        assert "infer" in hello["kinds"]
        assert len(hello["session"]) >= 8


def test_infer_stream_calls_a_model_through_the_session(server: Server) -> None:
    with SessionClient(server.url, server.admin_key, via_query=True) as session:
        opened = session.open("emb", "infer", model="minilm")
        assert opened["channel"] >= 1 and opened["version"] == "1"
        session.send(embed_message("emb", "a red apple", "a"))
        session.send(embed_message("emb", "a fruit", "b"))
        results = {m["id"]: m for m in (session.wait_type("result"), session.wait_type("result"))}
        apple, fruit = (np.array(results[k]["outputs"][0]["data"]) for k in ("a", "b"))
        assert apple.shape == (384,) and abs(np.linalg.norm(apple) - 1) < 1e-3
        assert apple @ fruit > 0.3
        session.send({"type": "close", "stream": "emb"})
        assert session.wait_type("closed", stream="emb")
        session.send(embed_message("emb", "gone", "c"))
        assert session.wait_type("error")["status"] == 404


def test_bad_messages_get_errors_and_the_session_lives_on(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        session.socket.send("this is not json")
        assert session.wait_type("error")["status"] == 400
        session.send({"type": "open", "stream": "x", "kind": "teleporter"})
        error = session.wait_type("error", stream="x")
        assert error["status"] == 400 and "infer" in error["message"]
        session.send({"type": "open", "stream": "m", "kind": "infer", "model": "no-such-model"})
        assert session.wait_type("error", stream="m")["status"] == 404
        session.socket.send(b"\x01\x00")  # shorter than the header
        assert "16-byte header" in session.wait_type("error")["message"]
        session.send_binary(channel=999, sequence=1, payload=b"frame")  # a stream never opened
        error = session.wait_type("error")
        assert error["status"] == 404 and "channel 999" in error["message"]
        session.socket.send(b"\x01" + bytes(8 * 1024 * 1024 + 100))  # over the message limit
        assert session.wait_type("error")["status"] == 413
        session.open("emb", "infer", model="minilm")
        session.send({"type": "infer", "stream": "emb", "id": "bad", "inputs": [{"name": "text"}]})
        assert session.wait_type("error", request="bad")["status"] == 400
        session.send({"type": "ping", "t": 42})
        assert session.wait_type("pong")["t"] == 42
        session.send(embed_message("emb", "still here", "ok"))
        assert session.wait_type("result", id="ok")["outputs"][0]["shape"] == [1, 384]


def test_streams_are_limited_and_names_unique(server: Server) -> None:
    with SessionClient(server.url, server.admin_key) as session:
        session.open("a", "infer", model="minilm")
        session.send({"type": "open", "stream": "a", "kind": "infer", "model": "minilm"})
        assert "already open" in session.wait_type("error", stream="a")["message"]
        for i in range(15):
            session.open(f"s{i}", "infer", model="minilm")
        session.send({"type": "open", "stream": "one-too-many", "kind": "infer", "model": "minilm"})
        assert "at most 16" in session.wait_type("error", stream="one-too-many")["message"]


def test_a_session_needs_a_key_and_the_scope(server: Server) -> None:
    with SessionClient(server.url) as session:
        assert session.hello == {"type": "error", "status": 401, "message": session.hello["message"]}
        with pytest.raises(ConnectionClosed) as closed:
            session.next(timeout=10)
        assert closed.value.rcvd.code == 4401
    limited = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    with SessionClient(server.url, limited) as session:
        session.open("emb", "infer", model="minilm")
        session.send({"type": "open", "stream": "llm", "kind": "infer", "model": "smollm2"})
        assert session.wait_type("error", stream="llm")["status"] == 403


def test_binary_header_is_sixteen_bytes() -> None:
    assert HEADER.size == 16
