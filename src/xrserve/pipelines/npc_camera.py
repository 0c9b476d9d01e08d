"""The user's face in a character's context: an `npc` stream following a `camera` stream of its session.

Opt-in: only an `npc` stream opened with `camera_stream` naming a camera stream of the same
session that runs `face-emotion` reads anything of a face. It watches that stream's results
(`SessionStream.watchers`: no second model call, no copy of the frames) and keeps the newest
one; a turn that starts while that result is fresh (under FRESH_S old) gets one line in the
character's system prompt, e.g. "The visitor looks happy (their facial expression, as the
camera sees it).", from the largest face in the frame (the nearest: the user's own). Nothing
else of the face (box, scores, the image) reaches the LLM, and nothing is kept past the next
result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from xrserve.core.errors import BadRequest

if TYPE_CHECKING:
    from xrserve.session.session import Session
    from xrserve.session.streams import SessionStream

FACE_EMOTION_MODEL = "face-emotion"
FRESH_S = 2.0  # an expression older than this says nothing about the user now
#: face-emotion's labels (fer's FER2013 classes) as words about a person
WORDS = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "afraid",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "calm",
}


class UserFace:
    """The newest face-emotion result of one camera stream: (when it came, its largest face or None)."""

    def __init__(self, camera: SessionStream, model: str = FACE_EMOTION_MODEL, fresh_s: float = FRESH_S) -> None:
        self.camera = camera
        self.model = model
        self.fresh_s = fresh_s
        self.latest: tuple[float, dict[str, Any] | None] | None = None
        camera.watchers.append(self.see)

    def see(self, message: dict[str, Any]) -> None:
        if message.get("type") != "result" or message.get("model") != self.model:
            return
        faces = (message.get("result") or {}).get("faces") or []
        self.latest = (time.monotonic(), max(faces, key=_area, default=None))

    def context(self) -> list[str]:
        """The lines a turn starting now adds to the character's context: none unless a face was just seen."""
        if self.latest is None or self.camera.closed:
            return []
        seen, face = self.latest
        if face is None or time.monotonic() - seen > self.fresh_s:
            return []
        word = WORDS.get(face["emotion"], face["emotion"])
        return [f"The visitor looks {word} (their facial expression, as the camera sees it)."]

    def detach(self) -> None:
        if self.see in self.camera.watchers:
            self.camera.watchers.remove(self.see)


def _area(face: dict[str, Any]) -> float:
    x1, y1, x2, y2 = face["box"]
    return float((x2 - x1) * (y2 - y1))


def watch_camera(session: Session, name: str, model: str = FACE_EMOTION_MODEL) -> UserFace:
    """Follow the camera stream `name` of `session`; a 400 naming the problem unless it is open and runs `model`."""
    stream = session.streams.get(name)
    if stream is None:
        open_cameras = sorted(s.name for s in session.streams.values() if s.kind == "camera")
        raise BadRequest(
            f"option 'camera_stream': no open stream named '{name}' in this session (its camera streams: "
            f"{open_cameras or 'none'}); open the camera stream, with '{model}' in its models, before the npc stream"
        )
    if stream.kind != "camera":
        raise BadRequest(f"option 'camera_stream': stream '{name}' is of kind '{stream.kind}', not a camera stream")
    models = list(getattr(stream, "models", []))
    if model not in models:
        raise BadRequest(
            f"option 'camera_stream': camera stream '{name}' does not run '{model}' (its models: {models}); "
            f"open it with '{model}' in its models to let the character see the user's facial expression"
        )
    return UserFace(stream, model)
