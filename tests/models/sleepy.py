"""A model whose compute takes a known time, so tests can watch the scheduler at work.

`y = x + 1`, plus `batch`: how many rows were computed together (batching made visible).
"""

import time

import numpy as np

from xrserve import Model


class Sleepy(Model):
    def infer(self, inputs, parameters):
        time.sleep(self.config.parameters.get("sleep_ms", 20) / 1000)
        x = inputs["x"]
        return {"y": x + 1, "batch": np.full(x.shape[0], x.shape[0], dtype=np.int32)}
