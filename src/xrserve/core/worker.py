"""The child side of a crash-isolated model instance.

Runs in its own process (spawned, never forked from the threaded server). Native
code that segfaults here kills only this process; the parent sees the pipe close,
fails the in-flight batch with a 503 and starts a new one.
Messages are pickled tuples: in `(seq, inputs, parameters)`, out `(seq, ok, payload)`.
"""

from __future__ import annotations

import os
import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

from xrserve.core.config import ModelConfig
from xrserve.runtimes import create_model

READY, LOAD_FAILED = "ready", "load_failed"


def serve(conn: Connection, config_data: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; it stops us
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = ModelConfig.model_validate(config_data)
    try:
        model = create_model(config)
        model.load()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the model
        conn.send_bytes(pickle.dumps((LOAD_FAILED, False, f"{type(exc).__name__}: {exc}")))
        return
    conn.send_bytes(pickle.dumps((READY, True, model.config.model_dump())))
    while True:
        try:
            seq, inputs, parameters = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        try:
            reply = (seq, True, model.infer(inputs, parameters))
        except Exception as exc:  # noqa: BLE001
            reply = (seq, False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - an output that cannot be pickled
            conn.send_bytes(pickle.dumps((seq, False, f"output cannot be sent: {exc}")))
