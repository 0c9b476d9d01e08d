"""A streaming model that counts: one "delta" per tick from its own thread, like an LLM's decode loop.

Input `text_input` BYTES [1]: the number of ticks; "crash" segfaults the worker mid-stream.
`hold(seconds)` pauses the ticks, as the LLM engine pauses its decode steps.
"""

import ctypes
import threading
import time

from xrserve.core.model import StreamingModel


class Streamer(StreamingModel):
    def load(self):
        self.cancelled: set[int] = set()
        self.hold_until = 0.0
        self.tick_s = self.config.parameters.get("tick_ms", 10) / 1000

    def start_stream(self, stream_id, inputs, parameters, emit):
        text = inputs["text_input"].ravel()[0].decode()
        if text == "crash":
            threading.Timer(0.05, lambda: ctypes.string_at(0)).start()
            emit({"kind": "started"})
            return
        if not text.isdigit():
            emit({"kind": "error", "status": 400, "message": f"'{text}' is not a number of ticks"})
            return
        threading.Thread(target=self._run, args=(stream_id, int(text), emit), daemon=True).start()

    def _run(self, stream_id, ticks, emit):
        emit({"kind": "started"})
        for i in range(ticks):
            if stream_id in self.cancelled:
                emit({"kind": "done", "finish_reason": "cancelled", "completion_tokens": i})
                return
            time.sleep(self.tick_s)
            while time.monotonic() < self.hold_until:
                time.sleep(0.002)
            emit({"kind": "delta", "text": f"{i} "})
        emit({"kind": "done", "finish_reason": "stop", "completion_tokens": ticks})

    def cancel_stream(self, stream_id):
        self.cancelled.add(stream_id)

    def hold(self, seconds):
        self.hold_until = time.monotonic() + seconds
