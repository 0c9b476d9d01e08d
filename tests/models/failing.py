"""A model that fails on request, the way a model can: parameter `fail` names the error it raises."""

from xrserve import Model
from xrserve.core.errors import BadRequest, DeadlineExceeded, Superseded, Unavailable

ERRORS = {
    "deadline": lambda: DeadlineExceeded("the model judged the answer too late"),
    "superseded": lambda: Superseded("a newer input replaced this one"),
    "unavailable": lambda: Unavailable("the model's backing service is down", retry_after_s=7),
    "bad_input": lambda: BadRequest("x must be positive"),
    "model_error": lambda: RuntimeError("the weights are corrupt"),
}


class Failing(Model):
    def infer(self, inputs, parameters):
        kind = parameters.get("fail")
        if kind:
            raise ERRORS[kind]()
        return {"y": inputs["x"] * 2}
