"""What a model can do, read from its declaration instead of recognised by its name.

Transports and pipelines ask `client.resolve(name).capabilities` rather than keeping
lists of model names: whether it takes images, runs on camera frames and tracks
between them, which inputs it may go without, which request parameters it reads, how
its answer reads as JSON. Most of it comes from the config (`model.toml` or a built-in
class's default config); the hooks come from the model's class when it is a built-in,
handed in by the runtime registry (`Runtimes.builtin_class`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from xrserve.core.config import ModelConfig, TrackingDecl
from xrserve.core.errors import BadRequest, validation_problems
from xrserve.core.model import InputCheck, Model, ModelParameters, Presenter, tensors_as_json
from xrserve.core.request import Priority


@dataclass(frozen=True)
class Capabilities:
    streaming: bool
    priority: Priority  # the class of its requests unless a request names its own
    image_inputs: tuple[str, ...]
    optional_inputs: frozenset[str]
    camera: bool  # camera streams may send it their frames
    tracking: TrackingDecl | None
    track_boxes: bool  # camera streams give its boxes track ids
    parameters: type[ModelParameters] | None  # validated at admission; None: any parameters pass through
    check_inputs: InputCheck | None
    present: Presenter

    @classmethod
    def of(cls, config: ModelConfig, model_class: type[Model] | None = None) -> Capabilities:
        return cls(
            streaming=config.streaming,
            priority=Priority[config.priority.upper()],
            image_inputs=tuple(config.image_inputs),
            optional_inputs=frozenset(config.optional_inputs),
            camera=config.runs_on_camera,
            tracking=config.tracking,
            track_boxes=config.track_boxes,
            parameters=getattr(model_class, "Parameters", None),
            check_inputs=None
            if model_class is None or model_class.check_inputs is Model.check_inputs
            else model_class.check_inputs,
            present=tensors_as_json if model_class is None else model_class.present,
        )

    def check_parameters(self, model: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """The parameters as the model declared them (unset ones left out), or a 400 naming each problem."""
        if self.parameters is None:
            return parameters
        try:
            return self.parameters.model_validate(parameters).model_dump(exclude_unset=True)
        except ValidationError as exc:
            problems = validation_problems(exc, "parameter", "is not a parameter of this model")
            known = ", ".join(sorted(self.parameters.model_fields)) or "none"
            raise BadRequest(
                f"model '{model}': {problems}. Its parameters are: {known} "
                f"(GET /v2/models/{model}/config describes them)"
            ) from None


@dataclass(frozen=True)
class Runtimes:
    """How configs become models: handed to the scheduler by whoever assembles the server.

    `create` builds (not loads) a model in the process that will serve it; it must be a
    module-level function, because worker processes receive it pickled by reference.
    `builtin_class` returns the class of a built-in (trusted) model so the server can
    read its hooks, or None for a user's model, whose code is never imported into the server.
    """

    create: Callable[[ModelConfig], Model]
    builtin_class: Callable[[ModelConfig], type[Model] | None]
