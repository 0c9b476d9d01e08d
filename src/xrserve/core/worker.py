"""The child side of a crash-isolated model instance.

Runs in its own process (spawned, never forked from the threaded server). Native
code that segfaults here kills only this process; the parent sees the pipe close,
fails what was in flight with a 503 and starts a new one.

Messages are pickled tuples `(tag, id, payload)`.
Parent to child: ("infer", seq, (inputs, parameters)), ("start", stream_id, (inputs, parameters)),
("cancel", stream_id, None), ("hold", 0, seconds). Child to parent: ("ready", 0, config),
("load_failed", 0, message), ("reply", seq, (True, outputs) or (False, (status, message, headers))),
("chunk", stream_id, chunk).
An error crosses the pipe as its status and message (`errors.model_error` here, `errors.error_for`
there), the same mapping the in-server runners use, so isolation never changes what a client sees.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from xrserve.core.config import ModelConfig
from xrserve.core.errors import model_error
from xrserve.core.images import decode_inputs
from xrserve.core.model import Model, StreamingModel

READY, LOAD_FAILED, REPLY, CHUNK = "ready", "load_failed", "reply", "chunk"
INFER, START, CANCEL, HOLD = "infer", "start", "cancel", "hold"


class _Sender:
    """Sends from several threads (the main loop and a streaming model's own threads)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, tag: str, ident: int, payload: Any) -> None:
        data = pickle.dumps((tag, ident, payload), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._conn.send_bytes(data)


def serve(conn: Connection, config_data: dict[str, Any], create: Callable[[ModelConfig], Model]) -> None:
    """The worker's main loop; `create` is the runtime registry's factory (pickled by reference)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it stops us
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    send = _Sender(conn)
    config = ModelConfig.model_validate(config_data)
    _name_process(f"xrs {config.name}")
    if config.nice:
        os.nice(config.nice)  # before loading: the model's native threads inherit it (per thread on Linux)
    try:
        model = create(config)
        model.load()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the model
        send(LOAD_FAILED, 0, f"{type(exc).__name__}: {exc}")
        return
    send(READY, 0, model.config.model_dump())
    while True:
        try:
            tag, ident, payload = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            if tag == INFER:
                _infer(model, send, ident, payload)
            elif tag == START and isinstance(model, StreamingModel):
                _start(model, send, ident, payload)
            elif tag == CANCEL and isinstance(model, StreamingModel):
                model.cancel_stream(ident)
            elif tag == HOLD and isinstance(model, StreamingModel):
                model.hold(payload)
        except (BrokenPipeError, OSError):
            return


def _infer(model: Model, send: _Sender, seq: int, payload: Any) -> None:
    inputs, parameters = payload
    reply: tuple[bool, Any]
    try:
        reply = (True, model.infer(decode_inputs(model.config, inputs), parameters))
    except Exception as exc:  # noqa: BLE001 - the model's verdict or its failure, sent with its status
        error = model_error(model.config.name, exc)
        reply = (False, (error.status_code, error.message, error.headers))
    try:
        send(REPLY, seq, reply)
    except (BrokenPipeError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - an output that cannot be pickled
        send(REPLY, seq, (False, (500, f"model '{model.config.name}': its output cannot be sent: {exc}", {})))


def _start(model: StreamingModel, send: _Sender, stream_id: int, payload: Any) -> None:
    inputs, parameters = payload

    def emit(chunk: dict[str, Any]) -> None:
        try:
            send(CHUNK, stream_id, chunk)
        except (BrokenPipeError, OSError):
            pass  # the parent is gone; the main loop will notice and exit

    try:
        model.start_stream(stream_id, inputs, parameters, emit)
    except Exception as exc:  # noqa: BLE001
        error = model_error(model.config.name, exc)
        emit({"kind": "error", "status": error.status_code, "message": error.message})


def _name_process(name: str) -> None:
    """`top` and `ps -o comm` show which model a worker serves (Linux: at most 15 bytes)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass  # not Linux: the worker keeps Python's name
