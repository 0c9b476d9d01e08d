"""The emotion of a character's line, for its face: zero-shot with sentence embeddings (`minilm` by default).

Why embeddings against prototype sentences, not a trained classifier: no emotion model ships
in an offline package here, and the label drives a facial expression, where a plausible
guess in ~10 ms beats a better one in 100 ms. Each label has a few prototype lines written
the way a game character speaks; a line gets the label whose prototypes it is closest to
(cosine, best match per label). `neutral` wins unless another label is clearly closer,
because a wrong strong expression is worse than none. Runs through the scheduler like
every other model call.
"""

from __future__ import annotations

import asyncio

import numpy as np

from xrserve.core.client import InferenceClient
from xrserve.core.request import InferenceRequest, Priority

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "afraid")
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "neutral": (
        "The market opens at dawn.",
        "The road goes north to the city.",
        "I sell bread and tools.",
        "Yes, I can help you with that.",
        "It is about a day's walk from here.",
    ),
    "happy": (
        "I am so happy to see you!",
        "Wonderful, that is great news!",
        "Ha, what a lovely day, my friend!",
        "Thank you, I love it!",
        "That makes me so glad.",
    ),
    "sad": (
        "I am so sad, I miss them terribly.",
        "Sadly, my brother died last winter.",
        "I'm sorry, that is heartbreaking.",
        "I feel lonely and lost.",
        "We lost everything in the fire.",
    ),
    "angry": (
        "How dare you! Get out of my shop!",
        "I am furious with you.",
        "That makes me so angry!",
        "Stop that right now, you fool!",
        "I hate those thieving bandits.",
    ),
    "surprised": (
        "Wow, I did not expect that!",
        "What? Really? That's amazing!",
        "Oh! You startled me!",
        "Unbelievable, I can't believe it!",
        "No way, is that true?",
    ),
    "afraid": (
        "I'm scared, please help me!",
        "Run, the dragon is coming!",
        "I am terrified of the dark forest.",
        "Something is out there, I'm afraid.",
        "Please don't hurt me!",
    ),
}
NEUTRAL_MARGIN = 0.05  # another label must beat neutral by this much cosine similarity


PROTOTYPES_AFFINITY = "emotion-prototypes"


class EmotionClassifier:
    def __init__(self, client: InferenceClient, model: str = "minilm") -> None:
        self.client = client
        self.model = model
        self._prototypes: dict[str, np.ndarray] | None = None
        self._lock = asyncio.Lock()

    async def _embed(self, texts: list[str], session: str | None) -> np.ndarray:
        request = InferenceRequest(
            self.model,
            {"text": np.array([t.encode("utf-8", "replace") for t in texts], dtype=object)},
            session=session,
            priority=Priority.INTERACTIVE,
            # the prototypes and every line are embedded by one version, even while a canary of the
            # embedding model runs: vectors of two versions cannot be compared
            affinity=PROTOTYPES_AFFINITY,
        )
        response = await self.client.submit(request)
        return response.outputs["embedding"]

    async def prototypes(self) -> dict[str, np.ndarray]:
        async with self._lock:
            if self._prototypes is None:
                texts = [t for label in EMOTIONS for t in PROTOTYPES[label]]
                vectors = await self._embed(texts, None)
                found, start = {}, 0
                for label in EMOTIONS:
                    found[label] = vectors[start : start + len(PROTOTYPES[label])]
                    start += len(PROTOTYPES[label])
                self._prototypes = found
            return self._prototypes

    async def classify(self, text: str, session: str | None = None) -> tuple[str, dict[str, float]]:
        """The label and the per-label similarity (best prototype) of one line."""
        if not text.strip():
            return "neutral", {label: 0.0 for label in EMOTIONS}
        prototypes = await self.prototypes()
        vector = (await self._embed([text], session))[0]
        scores = {label: float(np.max(prototypes[label] @ vector)) for label in EMOTIONS}
        best = max(scores, key=scores.__getitem__)
        if best != "neutral" and scores[best] - scores["neutral"] < NEUTRAL_MARGIN:
            best = "neutral"
        return best, {label: round(score, 3) for label, score in scores.items()}
