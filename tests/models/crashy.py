"""A model with native code that segfaults on a negative input, as a buggy extension would."""

import ctypes

from xrserve import Model


class Crashy(Model):
    def infer(self, inputs, parameters):
        if float(inputs["x"].ravel()[0]) < 0:
            ctypes.string_at(0)  # reads address 0: SIGSEGV in this worker process
        return {"y": inputs["x"] * 2}
