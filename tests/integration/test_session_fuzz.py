"""Fuzzing the XR session protocol beyond the OpenAPI document, with hypothesis.

Each example is a fresh session and a short sequence of client messages: JSON of every
type the protocol knows (and some it does not), every stream kind with options drawn from
the real option names and from anything JSON can hold, non-JSON text, and binary messages
with short, wrong-version or valid headers on opened channels carrying garbage media. The
properties: the server never closes the socket on a client's mistake (a ping after the
sequence is answered), and never answers a 5xx-class `error` for bad input.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server
from tests.session_client import SessionClient

STREAMS = ["a", "b", "cam", "npc", ""]
KINDS = ["infer", "camera", "npc", "jobs", "nope", ""]
TYPES = ["open", "close", "ping", "infer", "say", "end_turn", "context", "reset", "stats", "hello", "??"]
# option and field names of every kind (docs/session-protocol.md), so that values are
# checked, not only unknown names refused
FIELDS = [
    "model", "version", "models", "parameters", "budget_ms", "max_hands", "complexity", "redetect_every", "gestures",
    "intrinsics", "marker_length_m", "dictionary", "persona", "scene", "sample_rate", "end_of_turn_ms",
    "speculate_ms", "vad_threshold", "min_speech_ms", "barge_in", "max_tokens", "temperature", "seed", "speed",
    "job", "inputs", "outputs", "id", "text", "t", "camera_stream", "turn_end", "unfinished_turn_ms",
]  # fmt: skip
# models a fuzzed request may name: the real ones answer fast; none of them fails on valid input
MODELS = ["tiny", "minilm", "hands", "face", "gesture", "nothing-here"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(MODELS + KINDS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
tensors = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["x", "text", "image", "?"]), "datatype": st.sampled_from(["FP32", "BYTES", "INT8"])},
        optional={"shape": st.lists(st.integers(-2, 70), max_size=3), "data": json_values},
    ),
    max_size=2,
)
json_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "stream": st.sampled_from(STREAMS) | st.text(max_size=70) | json_values,
        "kind": st.sampled_from(KINDS),
        "model": st.sampled_from(MODELS),
        "inputs": tensors,
    },
).flatmap(lambda base: st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3).map(lambda x: {**x, **base}))


@st.composite
def binary_messages(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["short", "wrong version", "valid"]))
    payload = draw(st.binary(max_size=64) | st.just(b"\xff\xd8\xff\xe0" + bytes(40)))  # garbage, a truncated JPEG
    if shape == "short":
        return payload[:15]
    channel = draw(st.integers(0, 6))
    timestamp = draw(st.sampled_from([time.time() * 1000, 0.0, -1.0, 1e300, float("inf"), float("nan")]))
    version = 1 if shape == "valid" else draw(st.integers(0, 255).filter(lambda v: v != 1))
    flags, sequence = draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1))
    return struct.pack("<BBHId", version, flags, channel, sequence, timestamp) + payload


messages = st.one_of(
    json_messages.map(json.dumps),
    st.text(max_size=30),  # not JSON, or JSON that is not an object
    st.sampled_from(["[]", "null", "3", '"open"', "{", '{"type": 5}']),
    binary_messages(),
)
# a sequence usually opens a stream first, so that kind-specific messages and frames reach one
openers = st.tuples(st.sampled_from(STREAMS[:4]), st.sampled_from(KINDS[:4]), st.sampled_from(MODELS)).map(
    lambda t: json.dumps({"type": "open", "stream": t[0], "kind": t[1], "model": t[2], "models": [t[2]]})
)


def server_errors(backlog: list[Any]) -> list[dict]:
    return [m for m in backlog if isinstance(m, dict) and m.get("type") == "error" and m.get("status", 0) >= 500]


@pytest.mark.timeout(600)
def test_the_session_survives_any_client_message(server: Server) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=True,  # the same examples on every run: a failure can be reproduced
    )
    @given(opener=st.none() | openers, sequence=st.lists(messages, min_size=1, max_size=6))
    def property(opener: str | None, sequence: list[str | bytes]) -> None:
        with SessionClient(server.url, server.admin_key) as session:
            for message in ([opener] if opener else []) + sequence:
                session.socket.send(message)  # text or binary, as drawn
            # still open, and still answering: the pong for this ping comes back
            session.send({"type": "ping", "t": "alive?"})
            session.wait(lambda m: isinstance(m, dict) and m.get("type") == "pong" and m.get("t") == "alive?", 30)
            assert not server_errors(session.backlog), (sequence, server_errors(session.backlog))

    property()
