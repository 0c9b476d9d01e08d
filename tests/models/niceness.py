"""Answers with the CPU niceness of the process it runs in (to see `nice` in model.toml at work)."""

import os

import numpy as np

from xrserve import Model


class Niceness(Model):
    def infer(self, inputs, parameters):
        return {"nice": np.array([os.nice(0)], np.int32)}
