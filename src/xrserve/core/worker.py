"""The child side of a crash-isolated model instance.

Runs in its own process (spawned, never forked from the threaded server). Native
code that segfaults here kills only this process; the parent sees the pipe close,
fails what was in flight with a 503 and starts a new one.

Messages are pickled tuples `(tag, id, payload)`.
Parent to child: ("infer", seq, (inputs, parameters)), ("start", stream_id, (inputs, parameters)),
("cancel", stream_id, None). Child to parent: ("ready", 0, config), ("load_failed", 0, message),
("reply", seq, (ok, outputs_or_message)), ("chunk", stream_id, chunk).
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from xrserve.core.config import ModelConfig
from xrserve.core.errors import XRServeError
from xrserve.core.model import StreamingModel
from xrserve.runtimes import create_model

READY, LOAD_FAILED, REPLY, CHUNK = "ready", "load_failed", "reply", "chunk"
INFER, START, CANCEL = "infer", "start", "cancel"


class _Sender:
    """Sends from several threads (the main loop and a streaming model's own threads)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, tag: str, ident: int, payload: Any) -> None:
        data = pickle.dumps((tag, ident, payload), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._conn.send_bytes(data)


def serve(conn: Connection, config_data: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it stops us
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    send = _Sender(conn)
    config = ModelConfig.model_validate(config_data)
    if config.nice:
        os.nice(config.nice)  # before loading: the model's native threads inherit it (per thread on Linux)
    try:
        model = create_model(config)
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
        except (BrokenPipeError, OSError):
            return


def _infer(model: Any, send: _Sender, seq: int, payload: Any) -> None:
    inputs, parameters = payload
    try:
        reply = (True, model.infer(inputs, parameters))
    except XRServeError as exc:  # the model's verdict on the input, sent with its status
        reply = (False, (exc.status_code, exc.message))
    except Exception as exc:  # noqa: BLE001
        reply = (False, f"{type(exc).__name__}: {exc}")
    try:
        send(REPLY, seq, reply)
    except (BrokenPipeError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - an output that cannot be pickled
        send(REPLY, seq, (False, f"output cannot be sent: {exc}"))


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
        emit({"kind": "error", "status": 500, "message": f"{type(exc).__name__}: {exc}"})
