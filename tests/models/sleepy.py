"""A model whose compute takes a known time, so tests can watch the scheduler at work.

`y = x + 1`, plus `batch`: how many rows were computed together (batching made visible).
With a `hold_file` parameter it also waits while that file exists (at most 30 s): a test
holds the model busy for exactly as long as it takes to line requests up behind it,
whatever the machine's speed.
"""

import os
import time

import numpy as np

from xrserve import Model


class Sleepy(Model):
    def infer(self, inputs, parameters):
        time.sleep(self.config.parameters.get("sleep_ms", 20) / 1000)
        hold, give_up = self.config.parameters.get("hold_file"), time.monotonic() + 30
        while hold and os.path.exists(hold) and time.monotonic() < give_up:
            time.sleep(0.01)
        x = inputs["x"]
        return {"y": x + 1, "batch": np.full(x.shape[0], x.shape[0], dtype=np.int32)}
