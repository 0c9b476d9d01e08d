"""The `camera` stream kind: camera frames in, perception results out, each tagged with its frame.

A frame is worth answering only until its deadline: capture time (mapped to the
server's clock) + the stream's frame budget. Each frame becomes one request per model,
marked with a `frame_key` (session/stream/model) and that deadline; the scheduler does
the rest (latest-frame-wins, dropping frames past their deadline, batching frames of
different sessions, fairness between sessions). This stream only keeps what is
per-stream: the clock offset, the tracking regions of the last hands and face
found (sent back as model inputs, so tracking is cheaper than detection and the models
stay stateless and batchable), and the order of results.

Clock: the client's capture timestamps are on its own clock. The offset is the minimum
of (server receive time - capture time) over the stream's frames: the fastest frame seen
had the least queuing, so that minimum is clock difference + one-way network delay, and a
frame's age on arrival is how much later than that it came. On loopback it is exact.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from xrserve.core.errors import BadRequest, DeadlineExceeded, Superseded, Unavailable, XRServeError
from xrserve.core.request import InferenceRequest
from xrserve.models.vision.image import image_size
from xrserve.models.vision.results import SHAPERS
from xrserve.session.protocol import FrameHeader
from xrserve.session.streams import SessionStream, stream_kind

FRAME_MODELS = ("hands", "pose", "face", "segmentation", "markers")
DEFAULT_BUDGET_MS = 33.0
DEFAULT_REDETECT_EVERY = 10
MARKER_OPTIONS = ("fx", "fy", "cx", "cy", "marker_length_m", "dictionary")
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


@stream_kind("camera")
class CameraStream(SessionStream):
    """Open with `{"type": "open", "stream": "cam", "kind": "camera", "models": ["hands"], "budget_ms"?: 33, ...}`."""

    async def open(self) -> dict[str, Any]:
        o = self.options
        models = o.get("models")
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
            raise BadRequest(f"a camera stream needs 'models': a list of some of {list(FRAME_MODELS)}")
        if "ocr" in models:
            raise BadRequest("'ocr' takes ~300 ms an image, too slow for camera frames; send a snapshot to "
                             "POST /v1/vision/ocr instead")
        unknown = [m for m in models if m not in FRAME_MODELS]
        if unknown:
            raise BadRequest(f"option 'models': {unknown} cannot run on camera frames; choose from {list(FRAME_MODELS)}")
        self.models = list(dict.fromkeys(models))
        self.budget_ms = _number(o.get("budget_ms", DEFAULT_BUDGET_MS), "budget_ms", 1, 10_000)
        self.max_hands = o.get("max_hands", 2)
        if self.max_hands not in (1, 2):
            raise BadRequest(f"option 'max_hands' must be 1 or 2, got {self.max_hands!r}")
        self.complexity = o.get("complexity", 1)
        if self.complexity not in (0, 1):
            raise BadRequest(f"option 'complexity' must be 0 (lite hand model, faster) or 1 (full), got "
                             f"{self.complexity!r}")
        self.redetect_every = int(_number(o.get("redetect_every", DEFAULT_REDETECT_EVERY), "redetect_every", 1, 10_000))
        self.gestures = o.get("gestures", False)
        if not isinstance(self.gestures, bool):
            raise BadRequest("option 'gestures' must be true or false")
        self.marker_parameters = {k: o[k] for k in MARKER_OPTIONS if k in o}
        intrinsics = o.get("intrinsics")
        if intrinsics is not None:
            if not isinstance(intrinsics, dict):
                raise BadRequest("option 'intrinsics' must be {\"fx\": ..., \"fy\": ..., \"cx\": ..., \"cy\": ...} "
                                 "in pixels")
            self.marker_parameters.update({k: intrinsics[k] for k in ("fx", "fy", "cx", "cy") if k in intrinsics})
        scheduler = self.session.scheduler
        needed = self.models + (["gesture"] if self.gestures else [])
        for model in needed:
            self.session.authorize(model)
        if self.gestures:
            if "hands" not in self.models:
                raise BadRequest("option 'gestures' needs 'hands' in 'models' (gestures are read from hand landmarks)")
            if "gesture" not in scheduler.models:
                raise BadRequest("model gesture is not loaded, so 'gestures' cannot be served; open the stream "
                                 "without it, or start the server with the gesture model")
        versions = {model: scheduler.resolve(model).version for model in needed}  # 404 names the loaded models
        # per-stream state
        self.offset_ms = float("inf")
        # tracked regions of the newest answered frame, sent back as the next frame's input
        self.regions = {"hands": np.zeros((1, 2, 4), np.float32), "face": np.zeros((1, 1, 4), np.float32)}
        self.frames_since_detect = {"hands": 0, "face": 0}
        self.state_sequence: dict[str, int | None] = {"hands": None, "face": None}
        self.searching: dict[str, int | None] = {"hands": None, "face": None}  # frame running the detector
        self.last_sent: dict[str, int | None] = {model: None for model in self.models}
        self.last_received: int | None = None
        self.skipped_since_result = {model: 0 for model in self.models}
        self.counts = {"received": 0, "answered": 0, "skipped": 0}
        return {"models": self.models, "versions": versions, "budget_ms": self.budget_ms,
                "clock": "offset = min(server receive - capture) over the stream's frames"}

    # -- frames in -------------------------------------------------------------------------

    async def on_binary(self, header: FrameHeader, payload: memoryview) -> None:
        received = time.monotonic()
        wall_ms = time.time() * 1000
        sequence = header.sequence
        try:
            image_size(payload)  # a bad frame is refused here, before any model sees it
        except XRServeError as error:
            error.message = f"frame {sequence}: {error.message}"
            raise
        self.counts["received"] += 1
        self.offset_ms = min(self.offset_ms, wall_ms - header.timestamp_ms)
        age_ms = wall_ms - header.timestamp_ms - self.offset_ms
        frame = Frame(sequence, header.timestamp_ms, received, age_ms,
                      received + (self.budget_ms - age_ms) / 1000, bytes(payload))
        if self.last_received is not None and not newer(sequence, self.last_received):
            return await self._skip(frame, "out of order: a newer frame was already received")
        self.last_received = sequence
        if frame.deadline <= received:
            return await self._skip(frame, "deadline")
        self.spawn(self._process(frame), name=f"frame-{sequence}")

    async def _process(self, frame: Frame) -> None:
        """One task per model: each model answers at its own pace (face ~10 ms, pose ~100 ms)."""
        await asyncio.gather(*(self._answer(model, frame) for model in self.models))

    async def _answer(self, model: str, frame: Frame) -> None:
        request = self._request(model, frame)
        if request is None:
            return await self._skip(frame, "searching: the detector is still looking at an earlier frame", [model])
        try:
            response = await self.session.scheduler.submit(request)
        except (Superseded, DeadlineExceeded, Unavailable) as error:
            return await self._skip(frame, next(why for kind, why in SKIPPED.items() if isinstance(error, kind)),
                                    [model])
        except XRServeError as error:
            await self.session.send_json({"type": "error", "status": error.status_code, "message": error.message,
                                          "stream": self.name, "model": model, "sequence": frame.sequence})
            return
        finally:
            if self.searching.get(model) == frame.sequence:
                self.searching[model] = None
        if self._outdated(model, frame):
            return await self._skip(frame, "late: a newer frame was answered first", [model])
        outputs = response.outputs
        self._track(model, frame.sequence, outputs)
        shaped = SHAPERS[model](outputs, 0)
        if model == "hands" and self.gestures and int(outputs["count"][0]):
            await self._add_gestures(frame, outputs, shaped)
            if self._outdated(model, frame):  # a newer frame was answered while the gestures were read
                return await self._skip(frame, "late: a newer frame was answered first", [model])
        self.last_sent[model] = frame.sequence
        skipped, self.skipped_since_result[model] = self.skipped_since_result[model], 0
        self.counts["answered"] += 1
        server_ms = (time.monotonic() - frame.received) * 1000
        await self.send("result", model=model, sequence=frame.sequence, capture_ms=frame.capture_ms,
                        server_ms=round(server_ms, 2), latency_ms=round(frame.age_ms + server_ms, 2),
                        skipped=skipped, result=shaped)

    def _outdated(self, model: str, frame: Frame) -> bool:
        """Results never go back in time: a newer frame of this model was already answered."""
        last = self.last_sent[model]
        return last is not None and not newer(frame.sequence, last)

    async def _skip(self, frame: Frame, reason: str, models: list[str] | None = None) -> None:
        models = models or self.models
        for model in models:
            self.skipped_since_result[model] += 1
        self.counts["skipped"] += len(models)
        await self.send("skipped", models=models, sequence=frame.sequence, capture_ms=frame.capture_ms,
                        reason=reason)

    # -- requests and tracking -------------------------------------------------------------

    def _request(self, model: str, frame: Frame) -> InferenceRequest | None:
        """The frame's request to `model`; None while nothing is tracked and the detector already runs.

        Until the detector has found something there is nothing to track, and a second
        detector run on the next frame (68 ms for hands here, against 32 to track) would
        only compete with the first for the cores: that frame is skipped ("searching"),
        as MediaPipe's graph drops frames while it is busy.
        """
        inputs: dict[str, np.ndarray] = {"image": np.array([frame.payload], dtype=object)}
        parameters: dict[str, Any] = {}
        if model in ("hands", "face"):
            regions = self.regions[model]
            tracked = int((regions[0, :, 2] > 0).sum())
            if tracked == 0 and self.searching[model] is not None:
                return None
            wanted = self.max_hands if model == "hands" else 1
            due = self.frames_since_detect[model] >= self.redetect_every
            detect = tracked == 0 or (tracked < wanted and due)
            self.frames_since_detect[model] = 0 if detect else self.frames_since_detect[model] + 1
            if tracked == 0:
                self.searching[model] = frame.sequence
            inputs["regions"] = regions.copy()
            inputs["detect"] = np.array([detect])
        if model == "hands":
            parameters = {"max_hands": self.max_hands, "tiles": False, "complexity": self.complexity}
        elif model == "markers":
            parameters = dict(self.marker_parameters)
        return InferenceRequest(model, inputs, parameters=parameters, deadline=frame.deadline, priority="interactive",
                                session=self.session.id, id=f"{self.name}:{frame.sequence}", arrival=frame.received,
                                frame_key=f"{self.session.id}/{self.name}/{model}")

    def _track(self, model: str, sequence: int, outputs: dict[str, np.ndarray]) -> None:
        """Keep the regions found in the newest answered frame for the next frame's requests."""
        if model not in self.regions:
            return
        last = self.state_sequence[model]
        if last is None or newer(sequence, last):
            self.state_sequence[model] = sequence
            self.regions[model] = outputs["regions"][:1].astype(np.float32)

    async def _add_gestures(self, frame: Frame, hands: dict[str, np.ndarray], shaped: dict[str, Any]) -> None:
        count = int(hands["count"][0])
        points = hands["landmarks"][0, :count, :, :2].astype(np.float32)
        request = InferenceRequest("gesture", {"landmarks": points}, deadline=frame.deadline, priority="interactive",
                                   session=self.session.id, id=f"{self.name}:{frame.sequence}:gesture")
        try:
            response = await self.session.scheduler.submit(request)
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


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadRequest(f"option '{name}' must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)
