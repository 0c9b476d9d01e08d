"""The `camera` stream kind: camera frames in, perception results out, each tagged with its frame.

A frame is worth answering only until its deadline: capture time (mapped to the
server's clock) + the stream's frame budget. Each frame becomes one request per model,
marked with a `frame_key` (session/stream/model) and that deadline; the scheduler does
the rest (latest-frame-wins, dropping frames past their deadline, batching frames of
different sessions, fairness between sessions). This stream only keeps what is
per-stream: the clock offset, the tracking regions of the models that declare tracking
(hands and face: sent back as model inputs, so tracking is cheaper than detection and the
models stay stateless and batchable), and the order of results. Which models may run on
frames, how they track and how their results read are the models' declared capabilities.

Clock: the client's capture timestamps are on its own clock. The offset is the minimum
of (server receive time - capture time) over the stream's frames: the fastest frame seen
had the least queuing, so that minimum is clock difference + one-way network delay, and a
frame's age on arrival is how much later than that it came. On loopback it is exact.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from xrserve.core.client import ModelInfo
from xrserve.core.errors import BadRequest, DeadlineExceeded, Superseded, Unavailable, XRServeError
from xrserve.core.images import image_size
from xrserve.core.request import InferenceRequest, Priority
from xrserve.pipelines.box_tracking import BoxTracker
from xrserve.session.protocol import FrameHeader
from xrserve.session.streams import SessionStream, StreamOptions, stream_kind

DEFAULT_BUDGET_MS = 33.0
DEFAULT_REDETECT_EVERY = 10
# How far a capture time may be from the server's clock (after the stream's offset, once it has one):
# room for clocks of devices that are set by hand or seldom synchronised, far short of a timestamp
# that is simply wrong (1e300, now + 1 hour), which would otherwise become the stream's clock offset
MAX_CLOCK_SKEW_MS = 10 * 60 * 1000.0
SKIPPED = {Superseded: "superseded", DeadlineExceeded: "deadline", Unavailable: "overloaded"}


def newer(a: int, b: int) -> bool:
    """Sequence a is after b (uint32 with wrap-around)."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


@dataclass(slots=True)
class Frame:
    sequence: int
    capture_ms: float  # the client's clock, echoed back
    received: float  # time.monotonic() at arrival
    age_ms: float  # how long after capture it arrived (server clock, offset-mapped)
    deadline: float  # time.monotonic()
    payload: bytes


class Intrinsics(StreamOptions):
    fx: float = Field(gt=0)
    fy: float = Field(gt=0)
    cx: float
    cy: float


class CameraOptions(StreamOptions):
    models: list[str] = Field(
        min_length=1,
        max_length=8,
        description=("models to run on every frame: any model that declares it runs on camera frames (an image input)"),
    )
    budget_ms: float = Field(
        DEFAULT_BUDGET_MS, ge=1, le=10_000, description="a frame is worth answering this long after its capture"
    )
    redetect_every: int = Field(
        DEFAULT_REDETECT_EVERY,
        ge=1,
        le=10_000,
        description=(
            "while a tracking model tracks fewer than it may, search the whole frame again every this many frames"
        ),
    )
    parameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            'request parameters per model, e.g. {"hands": {"max_hands": 1}}; checked against the model\'s own'
        ),
    )
    gestures: bool = Field(False, description="read gestures from the hand landmarks (needs 'hands')")
    gesture_model: str = "gesture"
    # shortcuts for the built-in models, kept for clients written before `parameters`
    max_hands: int | None = Field(None, ge=1, le=2, description="= parameters.hands.max_hands")
    complexity: Literal[0, 1] | None = Field(None, description="= parameters.hands.complexity (0: lite, faster)")
    intrinsics: Intrinsics | None = Field(None, description="= parameters.markers fx, fy, cx, cy (pixels)")
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    marker_length_m: float | None = None
    dictionary: str | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def model_parameters(self) -> dict[str, dict[str, Any]]:
        """Per-model parameters with the shortcuts folded in (explicit `parameters` win)."""
        hands = {k: v for k, v in (("max_hands", self.max_hands), ("complexity", self.complexity)) if v is not None}
        markers = {
            k: getattr(self, k)
            for k in ("fx", "fy", "cx", "cy", "marker_length_m", "dictionary")
            if getattr(self, k) is not None
        }
        if self.intrinsics is not None:
            markers.update(self.intrinsics.model_dump())
        merged: dict[str, dict[str, Any]] = {}
        for model, shortcut in (("hands", hands), ("markers", markers)):
            if shortcut and model in self.models:
                merged[model] = shortcut
        for model, given in self.parameters.items():
            merged[model] = {**merged.get(model, {}), **given}
        return merged


@dataclass
class Tracked:
    """A tracking model's state in one stream: the regions of the newest answered frame, sent with the next."""

    regions: np.ndarray  # [1, slots, 4]
    wanted: int  # how many the model may track (its slots, or the stream's limit parameter)
    frames_since_detect: int = 0
    sequence: int | None = None  # the frame the regions came from
    searching: int | None = None  # the frame the detector runs on, while nothing is tracked


@stream_kind("camera")
class CameraStream(SessionStream):
    """Open with `{"type": "open", "stream": "cam", "kind": "camera", "models": ["hands"], "budget_ms"?: 33, ...}`."""

    Options = CameraOptions
    options: CameraOptions

    async def open(self) -> dict[str, Any]:
        o = self.options
        self.models = list(dict.fromkeys(o.models))
        for model in self.models:
            self.session.authorize(model)
        # 404 names the loaded models; a session's version (a canary's split) is kept for the stream's life
        infos = {model: self.client.resolve(model, None, self.session.id) for model in self.models}
        for model, info in infos.items():
            if not info.capabilities.camera:
                raise BadRequest(
                    f"model '{model}' does not run on camera frames (it declares camera = false or "
                    f"has no single image input); send it single images with POST /v1/vision/{model}. "
                    f"Models for camera streams: {self._camera_models()}"
                )
        per_model = o.model_parameters()
        unused = sorted(set(per_model) - set(self.models))
        if unused:
            raise BadRequest(f"option 'parameters' names {unused}, which are not in 'models' {self.models}")
        self.infos = infos
        self.parameters = {
            model: {
                **info.config.frame_parameters,
                **info.capabilities.check_parameters(model, per_model.get(model, {})),
            }
            for model, info in infos.items()
        }  # a bad parameter is a 400 now, not per frame
        versions = {model: info.version for model, info in infos.items()}
        if o.gestures:
            if "hands" not in self.models:
                raise BadRequest("option 'gestures' needs 'hands' in 'models' (gestures are read from hand landmarks)")
            self.session.authorize(o.gesture_model)
            if o.gesture_model not in self.client.model_names():
                raise BadRequest(
                    f"model {o.gesture_model} is not loaded, so 'gestures' cannot be served; open the "
                    "stream without it, or start the server with the gesture model"
                )
            versions[o.gesture_model] = self.client.resolve(o.gesture_model).version
        self.tracked = {
            model: self._tracking_state(model, info)
            for model, info in infos.items()
            if info.capabilities.tracking is not None
        }
        # detectors: each box gets a track id that stays the same across this stream's frames
        self.box_trackers = {model: BoxTracker() for model, info in infos.items() if info.capabilities.track_boxes}
        # per-stream state
        self.offset_ms = float("inf")
        self.last_sent: dict[str, int | None] = {model: None for model in self.models}
        self.last_received: int | None = None
        self.skipped_since_result = {model: 0 for model in self.models}
        self.counts = {"received": 0, "answered": 0, "skipped": 0}
        return {
            "models": self.models,
            "versions": versions,
            "budget_ms": o.budget_ms,
            "clock": "offset = min(server receive - capture) over the stream's frames",
        }

    def _camera_models(self) -> list[str]:
        return [name for name in self.client.model_names() if self.client.resolve(name).capabilities.camera]

    def _tracking_state(self, model: str, info: ModelInfo) -> Tracked:
        tracking = info.capabilities.tracking
        assert tracking is not None
        shape = [1 if d == -1 else d for d in info.config.input_specs[tracking.input].shape]
        slots = shape[1] if len(shape) > 1 else 1
        limit = self.parameters[model].get(tracking.limit_parameter or "", slots)
        return Tracked(np.zeros(shape, np.float32), min(slots, int(limit)))

    # -- frames in -------------------------------------------------------------------------

    async def on_binary(self, header: FrameHeader, payload: memoryview) -> None:
        received = time.monotonic()
        wall_ms = time.time() * 1000
        sequence = header.sequence
        self._check_clock(header, wall_ms)  # before the offset: a wrong time must not become the stream's clock
        try:
            image_size(payload)  # a bad frame is refused here, before any model sees it
        except XRServeError as error:
            error.message = f"frame {sequence}: {error.message}"
            raise
        self.counts["received"] += 1
        self.offset_ms = min(self.offset_ms, wall_ms - header.timestamp_ms)
        age_ms = wall_ms - header.timestamp_ms - self.offset_ms
        frame = Frame(
            sequence,
            header.timestamp_ms,
            received,
            age_ms,
            received + (self.options.budget_ms - age_ms) / 1000,
            bytes(payload),
        )
        if self.last_received is not None and not newer(sequence, self.last_received):
            return await self._skip(frame, "out of order: a newer frame was already received")
        self.last_received = sequence
        if frame.deadline <= received:
            return await self._skip(frame, "deadline")
        if not self.session.admit_frame():  # over the key's frames per second (--fps): skipped, never an error
            return await self._skip(frame, "rate_limited")
        self.spawn(self._process(frame), name=f"frame-{sequence}")

    def _check_clock(self, header: FrameHeader, wall_ms: float) -> None:
        """Refuse a capture time more than MAX_CLOCK_SKEW_MS from the server's clock (mapped by the offset).

        The session already refused NaN, ±inf and negative times. Before the stream's first
        frame there is no offset: the time is compared with the server's own clock.
        """
        known = math.isfinite(self.offset_ms)
        ahead_ms = header.timestamp_ms - (wall_ms - (self.offset_ms if known else 0.0))  # > 0: from the future
        if abs(ahead_ms) <= MAX_CLOCK_SKEW_MS:
            return
        where = "ahead of" if ahead_ms > 0 else "behind"
        after = f" after this stream's clock offset of {self.offset_ms:.1f} ms" if known else ""
        raise BadRequest(
            f"frame {header.sequence}: timestamp_ms {header.timestamp_ms!r} is {abs(ahead_ms) / 60_000:.4g} minutes "
            f"{where} the server's clock{after}; capture times must be within ±{MAX_CLOCK_SKEW_MS / 60_000:g} "
            "minutes of it. Send milliseconds since the Unix epoch from a clock that is set (the hello message "
            "carries server_time_ms); if your clock jumped, open a new stream"
        )

    async def _process(self, frame: Frame) -> None:
        """One task per model: each model answers at its own pace (face ~10 ms, pose ~100 ms)."""
        await asyncio.gather(*(self._answer(model, frame) for model in self.models))

    async def _answer(self, model: str, frame: Frame) -> None:
        request = self._request(model, frame)
        if request is None:
            return await self._skip(frame, "searching: the detector is still looking at an earlier frame", [model])
        try:
            response = await self.client.submit(request)
        except (Superseded, DeadlineExceeded, Unavailable) as error:
            return await self._skip(
                frame, next(why for kind, why in SKIPPED.items() if isinstance(error, kind)), [model]
            )
        except XRServeError as error:
            await self.session.send_json(
                {
                    "type": "error",
                    "status": error.status_code,
                    "message": error.message,
                    "stream": self.name,
                    "model": model,
                    "sequence": frame.sequence,
                }
            )
            return
        finally:
            tracked = self.tracked.get(model)
            if tracked is not None and tracked.searching == frame.sequence:
                tracked.searching = None
        if self._outdated(model, frame):
            return await self._skip(frame, "late: a newer frame was answered first", [model])
        outputs = response.outputs
        self._track(model, frame.sequence, outputs)
        shaped = self.infos[model].capabilities.present(outputs, 0)
        if model in self.box_trackers:
            self.box_trackers[model].assign(shaped["boxes"])
        if model == "hands" and self.options.gestures and int(outputs["count"][0]):
            await self._add_gestures(frame, outputs, shaped)
            if self._outdated(model, frame):  # a newer frame was answered while the gestures were read
                return await self._skip(frame, "late: a newer frame was answered first", [model])
        self.last_sent[model] = frame.sequence
        skipped, self.skipped_since_result[model] = self.skipped_since_result[model], 0
        self.counts["answered"] += 1
        server_ms = (time.monotonic() - frame.received) * 1000
        await self.send(
            "result",
            model=model,
            sequence=frame.sequence,
            capture_ms=frame.capture_ms,
            server_ms=round(server_ms, 2),
            latency_ms=round(frame.age_ms + server_ms, 2),
            skipped=skipped,
            result=shaped,
        )

    def _outdated(self, model: str, frame: Frame) -> bool:
        """Results never go back in time: a newer frame of this model was already answered."""
        last = self.last_sent[model]
        return last is not None and not newer(frame.sequence, last)

    async def _skip(self, frame: Frame, reason: str, models: list[str] | None = None) -> None:
        models = models or self.models
        for model in models:
            self.skipped_since_result[model] += 1
        self.counts["skipped"] += len(models)
        await self.send("skipped", models=models, sequence=frame.sequence, capture_ms=frame.capture_ms, reason=reason)

    # -- requests and tracking -------------------------------------------------------------

    def _request(self, model: str, frame: Frame) -> InferenceRequest | None:
        """The frame's request to `model`; None while nothing is tracked and the detector already runs.

        Until the detector has found something there is nothing to track, and a second
        detector run on the next frame (68 ms for hands here, against 32 to track) would
        only compete with the first for the cores: that frame is skipped ("searching"),
        as MediaPipe's graph drops frames while it is busy.
        """
        info = self.infos[model]
        inputs: dict[str, np.ndarray] = {info.capabilities.image_inputs[0]: np.array([frame.payload], dtype=object)}
        tracked = self.tracked.get(model)
        if tracked is not None:
            tracking = info.capabilities.tracking
            assert tracking is not None
            count = int((tracked.regions[0, :, 2] > 0).sum())
            if count == 0 and tracked.searching is not None:
                return None
            due = tracked.frames_since_detect >= self.options.redetect_every
            detect = count == 0 or (count < tracked.wanted and due)
            tracked.frames_since_detect = 0 if detect else tracked.frames_since_detect + 1
            if count == 0:
                tracked.searching = frame.sequence
            inputs[tracking.input] = tracked.regions.copy()
            inputs[tracking.detect] = np.array([detect])
        return InferenceRequest(
            model,
            inputs,
            version=info.version,
            parameters=self.parameters[model],
            deadline=frame.deadline,
            priority=Priority.FRAME,
            session=self.session.id,
            id=f"{self.name}:{frame.sequence}",
            arrival=frame.received,
            frame_key=f"{self.session.id}/{self.name}/{model}",
        )

    def _track(self, model: str, sequence: int, outputs: dict[str, np.ndarray]) -> None:
        """Keep the regions found in the newest answered frame for the next frame's requests."""
        tracked = self.tracked.get(model)
        tracking = self.infos[model].capabilities.tracking
        if tracked is None or tracking is None or tracking.output not in outputs:
            return
        if tracked.sequence is None or newer(sequence, tracked.sequence):
            tracked.sequence = sequence
            tracked.regions = outputs[tracking.output][:1].astype(np.float32)

    async def _add_gestures(self, frame: Frame, hands: dict[str, np.ndarray], shaped: dict[str, Any]) -> None:
        count = int(hands["count"][0])
        points = hands["landmarks"][0, :count, :, :2].astype(np.float32)
        request = InferenceRequest(
            self.options.gesture_model,
            {"landmarks": points},
            deadline=frame.deadline,
            priority=Priority.FRAME,
            session=self.session.id,
            affinity=self.session.id,
            id=f"{self.name}:{frame.sequence}:gesture",
        )
        try:
            response = await self.client.submit(request)
        except XRServeError as error:
            shaped["gesture_error"] = error.message
            return
        labels = response.outputs.get("label")
        for k, hand in enumerate(shaped["hands"]):
            if labels is not None and k < len(labels):
                label = labels[k]
                hand["gesture"] = label.decode() if isinstance(label, bytes) else str(label)

    async def on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "stats":
            return await self.send("stats", **self.counts, offset_ms=self.offset_ms)
        return await super().on_message(message)
