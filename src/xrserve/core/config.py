"""`model.toml`: how a model is declared, and how a mistake in it is reported.

A repository directory holds `<model>/<version>/model.toml` plus the weights. The
file is parsed into `ModelConfig`; any mistake becomes a `ConfigError` that names
the file, the field and what is wrong, so one broken model never stops the rest of
the repository from loading.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xrserve.core.tensors import DATATYPES, TensorSpec

Runtime = Literal["onnx", "torchscript", "python", "gguf", "yolo"]
PriorityName = Literal["frame", "first_speech", "interactive", "bulk"]  # xrserve.core.request.Priority
Isolation = Literal["process", "thread", "inline"]

DEFAULT_FILES: dict[str, str] = {
    "onnx": "model.onnx",
    "yolo": "model.onnx",  # an Ultralytics YOLO detector exported to ONNX (runtimes/yolo.py)
    "torchscript": "model.pt",
    "python": "model.py",
    "gguf": "model.gguf",
}


class ConfigError(Exception):
    """A `model.toml` that cannot be used: says which file, which field, what is wrong."""

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{path}: field '{field}': {problem}")


class TensorDecl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    datatype: str
    shape: list[int]
    content_type: Literal["image"] | None = Field(
        default=None,
        description=(
            "'image': clients send an encoded image (JPEG, PNG, WebP, BMP) as one BYTES element per row; the "
            "server checks its header at admission and, when the declared datatype is UINT8 or FP32, decodes it "
            "to RGB pixels of the declared shape (NHWC [-1, H, W, 3] or NCHW [-1, 3, H, W]; fixed H and W are "
            "resized to, FP32 is scaled to 0..1) before the model sees it. BYTES: the model gets the bytes."
        ),
    )

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"'{value}' is not a datatype; use one of {', '.join(DATATYPES)}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: list[int]) -> list[int]:
        if any(d == 0 or d < -1 for d in value):
            raise ValueError(f"{value} has a dimension that is neither positive nor -1 (any size)")
        return value

    @model_validator(mode="after")
    def _image_layout(self) -> TensorDecl:
        if self.content_type == "image" and self.datatype != "BYTES":
            if self.datatype not in ("UINT8", "FP32"):
                raise ValueError(
                    f"image input '{self.name}': datatype must be BYTES (the encoded file), UINT8 or "
                    f"FP32 (decoded pixels), not {self.datatype}"
                )
            if len(self.shape) not in (3, 4) or 3 not in (self.shape[-1], self.shape[-3]):
                raise ValueError(
                    f"image input '{self.name}': decoded pixels need shape [H, W, 3], [-1, H, W, 3] "
                    f"or [-1, 3, H, W], got {self.shape}"
                )
        return self

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.datatype, tuple(self.shape), self.content_type)


class TrackingDecl(BaseModel):
    """A model that tracks between camera frames: its answer carries regions to look at in the next frame.

    A camera stream sends the regions of the newest answered frame back as `input`, and sets `detect`
    (BOOL) when the model should search the whole image again: nothing tracked, or fewer than
    wanted (the size of the regions' second dimension, or the request parameter `limit_parameter`)
    every `redetect_every` frames. Tracking is cheaper than detection and the model stays stateless.
    """

    model_config = ConfigDict(extra="forbid")

    input: str = "regions"
    output: str = "regions"
    detect: str = "detect"
    limit_parameter: str | None = None


class CanaryDecl(BaseModel):
    """`[canary]`: when a canary of this version is rolled back automatically (see core/canary.py).

    Over the last `window_s` seconds, once the canary has answered `min_requests`, it is ended when
    its error rate exceeds the stable version's by more than `max_error_rate_margin`, or its p99
    latency is above `min_p99_ms` and more than `max_p99_ratio` times the stable version's.
    """

    model_config = ConfigDict(extra="forbid")

    window_s: float = Field(default=60.0, gt=0, le=86_400)
    min_requests: int = Field(default=20, ge=1, le=1_000_000)
    max_error_rate_margin: float = Field(default=0.05, ge=0, le=1)
    max_p99_ratio: float = Field(default=2.0, ge=1)
    min_p99_ms: float = Field(default=10.0, ge=0)


class ScalingDecl(BaseModel):
    """`[scaling]`: how the Ray Serve engine (`xrserve serve --engine ray`) runs this version.

    The embedded engine ignores it. A fixed `replicas`, or autoscaling between `min_replicas` and
    `max_replicas` towards `target_ongoing_requests` per replica. `cpus` is fractional by default:
    a Serve replica reserves one whole CPU unless told otherwise, and on a 2-core machine three
    deployments would then wait forever for a CPU that never frees.
    """

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(default=None, ge=1, le=1024, description="a fixed number of replicas")
    min_replicas: int = Field(default=1, ge=0, le=1024)
    max_replicas: int | None = Field(default=None, ge=1, le=1024, description="set it to autoscale")
    target_ongoing_requests: float = Field(default=2.0, gt=0, le=10_000)
    cpus: float = Field(default=0.25, ge=0, le=512, description="CPUs reserved per replica (Ray's num_cpus)")
    gpus: float = Field(default=0.0, ge=0, le=64, description="GPUs reserved per replica (Ray's num_gpus)")
    max_ongoing_requests: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="requests one replica holds at once (default: the model's queue_size plus its streams)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScalingDecl:
        if self.replicas is not None and self.max_replicas is not None:
            raise ValueError("give either replicas (fixed) or max_replicas (autoscaling), not both")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}")
        return self


class ModelConfig(BaseModel):
    """Everything the server needs to know about one version of one model.

    Shapes are written as the client sends them. With `max_batch_size > 0` the first
    dimension of every input and output is the batch dimension (write it as -1) and
    the scheduler may concatenate requests along it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    version: str = Field(default="1", pattern=r"^[0-9]+$")
    runtime: Runtime
    file: str | None = None
    entrypoint: str | None = Field(
        default=None, description="python runtime: 'model.py:ClassName' or 'package.module:ClassName'"
    )
    description: str = ""
    inputs: list[TensorDecl] = Field(default_factory=list)
    outputs: list[TensorDecl] = Field(default_factory=list)
    max_batch_size: int = Field(default=0, ge=0, le=4096)
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    default_deadline_ms: float | None = Field(default=None, gt=0)
    instances: int = Field(default=1, ge=1, le=64)
    priority: PriorityName = Field(
        default="interactive", description="the class of this model's requests unless a request names its own"
    )
    isolation: Isolation = "process"
    queue_size: int = Field(default=256, ge=1, le=1_000_000)
    threads: int = Field(default=1, ge=1, le=256, description="intra-op threads per instance")
    nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description=(
            "CPU niceness of the worker processes (isolation = process; the server's own process is "
            "never reniced): on a busy machine a higher value yields the cores to models with "
            "tighter deadlines, e.g. an LLM writing the rest of an answer yields to the speech of "
            "its first sentence"
        ),
    )
    streaming: bool = Field(default=False, description="answers stream (LLM tokens, audio); set by the runtime")
    yields_to_speech: bool = Field(
        default=False,
        description=(
            "a streaming model whose steps pause while the first spoken piece of an answer is synthesised on "
            "this server (at most 0.5 s per piece): on a few cores its threads slowed that speech by a third, "
            "and its streams are mostly seconds ahead of what is being spoken"
        ),
    )
    max_streams: int = Field(default=8, ge=1, le=256, description="streams one instance runs at once")
    optional_inputs: list[str] = Field(default_factory=list, description="inputs a request may leave out")
    camera: bool | None = Field(
        default=None,
        description=(
            "whether camera streams may run this model on their frames; default: yes when it has an image input "
            "and every other input is optional"
        ),
    )
    tracking: TrackingDecl | None = None
    track_boxes: bool = Field(
        default=False,
        description=(
            "camera streams give each box of a result's `boxes` a `track` id that stays the same across "
            "frames (IoU matching); set by detector runtimes"
        ),
    )
    frame_parameters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "request parameters a camera stream adds to every frame it sends this model (the stream's own "
            "per-model parameters override them)"
        ),
    )
    canary: CanaryDecl = Field(
        default_factory=CanaryDecl, description="when a canary of this version is rolled back automatically"
    )
    scaling: ScalingDecl = Field(
        default_factory=ScalingDecl, description="replicas and resources under the Ray Serve engine"
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    directory: str | None = Field(default=None, description="set by the repository, not by the file")

    @model_validator(mode="before")
    @classmethod
    def _optional_inputs_from_parameters(cls, raw: Any) -> Any:
        """Repositories written before `optional_inputs` was a field kept it in [parameters]."""
        if isinstance(raw, dict) and isinstance(raw.get("parameters"), dict) and "optional_inputs" in raw["parameters"]:
            raw = {**raw, "parameters": dict(raw["parameters"])}
            raw.setdefault("optional_inputs", raw["parameters"].pop("optional_inputs"))
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"inputs: names must be unique, got {names}")
        if self.max_batch_size > 0:
            for tensor in self.inputs + self.outputs:
                if not tensor.shape or tensor.shape[0] != -1:
                    raise ValueError(
                        f"'{tensor.name}': with max_batch_size > 0 the first dimension is the batch "
                        f"dimension and must be -1, got shape {tensor.shape}"
                    )
        if self.runtime == "gguf":
            self.streaming = True
        if self.streaming and self.max_batch_size:
            raise ValueError("a streaming model schedules its own batches; leave max_batch_size at 0")
        unknown = [name for name in self.optional_inputs if name not in names]
        if unknown:
            raise ValueError(f"optional_inputs {unknown} are not inputs; the inputs are {names}")
        if self.runtime == "python" and not self.entrypoint:
            raise ValueError("runtime 'python' needs entrypoint = \"model.py:ClassName\"")
        return self

    @cached_property
    def input_specs(self) -> dict[str, TensorSpec]:
        """Read on every request: computed once (the tensors are fixed once the model has loaded)."""
        return {t.name: t.spec() for t in self.inputs}

    @cached_property
    def output_specs(self) -> dict[str, TensorSpec]:
        return {t.name: t.spec() for t in self.outputs}

    @property
    def image_inputs(self) -> list[str]:
        return [t.name for t in self.inputs if t.content_type == "image"]

    @property
    def runs_on_camera(self) -> bool:
        """Camera streams may send it frames: declared, or one image input and nothing else required."""
        if self.camera is not None:
            return self.camera
        required = [t.name for t in self.inputs if t.name not in self.optional_inputs]
        return len(self.image_inputs) == 1 and required == self.image_inputs and not self.streaming

    def weights_path(self) -> Path | None:
        """The file this version loads from; None for a built-in Python class."""
        base = Path(self.directory or ".")
        if self.runtime == "python":
            module = (self.entrypoint or "").partition(":")[0]
            return base / module if module.endswith(".py") else None
        return base / (self.file or DEFAULT_FILES[self.runtime])


def load_model_toml(path: Path, *, name: str, version: str) -> ModelConfig:
    """Parse one `model.toml`; name and version default to the directories it sits in."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot be read: {exc}") from None
    if raw.get("name", name) != name:
        raise ConfigError(path, "name", f"is '{raw['name']}' but the directory says '{name}'; make them match")
    if str(raw.get("version", version)) != version:
        raise ConfigError(path, "version", f"is '{raw['version']}' but the directory says '{version}'")
    raw.update(name=name, version=version, directory=str(path.parent))
    try:
        config = ModelConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(model)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "is not a model.toml field (check the spelling)"
        raise ConfigError(path, field, message) from None
    weights = config.weights_path()
    if weights is not None and not weights.is_file():
        field = "entrypoint" if config.runtime == "python" else "file"
        raise ConfigError(path, field, f"{weights} does not exist")
    return config
