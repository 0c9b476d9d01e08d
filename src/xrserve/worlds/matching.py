"""Words -> assets: exact names first, then `minilm` sentence-embedding similarity, else a placeholder.

A prompt's words are the user's ("cabin", "lantern", "boulder"), the library's assets have
names and descriptions ("cabin: log cabin, wooden hut, shack, lodge"). Matching runs in
three steps, cheapest and surest first:

1. the whole word is an asset's name, one of its description's terms, or a category
   ("tent", "fire pit", "canoe"): that asset, score 1;
2. the word's last noun is one ("spruce tree", "dirt road", "garden path"): that
   category, and within it the asset whose terms are closest in embedding space
   ("spruce tree" -> pine, "dirt road" -> the dirt path);
3. otherwise the closest term of any asset by cosine similarity of `minilm` embeddings
   (384-d, unit length), if it is at least `threshold` and no `ANCHORS` entry (generic
   names of what the library does not hold: vehicle, animal, machine...) is closer;
   else the word is reported unmatched and becomes a labelled placeholder ("spaceship",
   "dragon", "car").

Each asset is represented by its name and each comma-separated description term (a word
is compared with short phrases, which minilm scores more evenly than a word against a
whole list); an asset's score is its best term. The terms are
embedded once per matcher and cached; the words of a call go in one batched request at
BULK priority, like the rest of scene generation.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import numpy as np

from xrserve.core.client import InferenceClient
from xrserve.core.request import InferenceRequest, Priority
from xrserve.worlds.extraction import singular

PLACEHOLDER = "placeholder"
BATCH = 64  # minilm's max_batch_size: longer lists go as several requests
#: Each word and term is embedded bare and after "a " and the two similarities averaged: on the
#: calibration words below, with the anchors, the mean separated best (accuracy 0.90 at its best
#: threshold, against 0.89 with "a " alone and 0.85 bare; without anchors 0.79 / 0.86 / 0.76).
TEMPLATES = ("{}", "a {}")
#: What the library does not hold, as hypernyms: a word closer to one of these than to any
#: asset term is not an asset, however high its best score ("car" is 0.58 from "cart" but
#: 0.86 from "vehicle"). Generic on purpose: none is a calibration or test word.
ANCHORS = (
    "vehicle",
    "motor vehicle",
    "aircraft",
    "spacecraft",
    "animal",
    "creature",
    "person",
    "machine",
    "electronic device",
    "musical instrument",
    "food",
    "clothing",
    "toy",
    "weapon",
    "appliance",
)

#: Cosine similarity (mean over TEMPLATES) a word's closest asset term must reach in step 3,
#: calibrated with minilm on 32 words that should match an asset without an exact hit and 30
#: that should not (`bench/worlds_extraction.py --calibrate`; the table is in
#: docs/worlds-extraction.md). Right category and above the threshold / unmatched:
#:   0.40: 29/32, 25/30    0.44: 29/32, 26/30    0.48: 29/32, 27/30 (accuracy 0.90, the best)
#:   0.52: 27/32, 27/30    0.56: 24/32, 28/30    0.60: 21/32, 28/30    0.64: 16/32, 28/30
#: Lowest should-match scores: stream 0.481, lily 0.493, bonsai 0.526, billboard 0.535; should-not
#: words the threshold alone lets through are vetoed by the anchors (car 0.589 from "cart" but 0.867
#: from "vehicle"; spaceship 0.732 from "sailboat", 0.81 from "spacecraft"). What still passes:
#: skyscraper 0.696 (stone house), submarine 0.662 (rowboat), ghost 0.557 (dead tree). Missed:
#: teepee (closest to pine), daffodil (0.401), sapling (its anchor "creature" 0.504 > 0.503).
#: 0.48 is the top of the flat best range (0.44-0.48): of two equal errors, fewer wrong assets.
THRESHOLD = 0.48


@dataclass(frozen=True)
class Match:
    """What a word became: an asset of a category, or (asset None) the placeholder category."""

    word: str
    asset: str | None
    category: str
    score: float  # 1.0 for an exact hit; the cosine similarity otherwise


def normalise(word: str) -> str:
    return " ".join(word.lower().replace("_", " ").replace("-", " ").split())


class AssetMatcher:
    """Matches words to the asset library; one per server (the library's embeddings are computed once)."""

    def __init__(self, client: InferenceClient, model: str = "minilm", threshold: float = THRESHOLD) -> None:
        from xrserve.worlds.assets import ASSETS, CATEGORIES

        self.client = client
        self.model = model
        self.threshold = threshold
        self.terms: list[str] = []  # one row of the embedding index each
        self.owners: list[str] = []  # the asset each term describes
        self.exact: dict[str, str] = {}  # term -> asset; the first asset to list a term keeps it
        self.categories: dict[str, str] = {name: asset.category for name, asset in ASSETS.items()}
        for name, asset in ASSETS.items():
            described = [_subject(normalise(t)) for t in asset.description.split(",")]
            for term in dict.fromkeys([normalise(name), *described]):
                if not term:
                    continue
                self.terms.append(term)
                self.owners.append(name)
                self.exact.setdefault(term, name)
        self.category_names = set(CATEGORIES) - {PLACEHOLDER}
        self._index: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = asyncio.Lock()

    async def _embed(self, texts: list[str], session: str | None) -> np.ndarray:
        """[len(TEMPLATES), len(texts), 384]: each text embedded once per template, in one request per 64 rows."""
        rows = [template.format(text) for template in TEMPLATES for text in texts]

        async def one(chunk: list[str]) -> np.ndarray:
            request = InferenceRequest(
                self.model,
                {"text": np.array([t.encode("utf-8", "replace") for t in chunk], dtype=object)},
                session=session,
                priority=Priority.BULK,
            )
            return (await self.client.submit(request)).outputs["embedding"]

        chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
        vectors = np.concatenate(await asyncio.gather(*(one(c) for c in chunks))).astype(np.float32)
        return vectors.reshape(len(TEMPLATES), len(texts), -1)

    async def index(self) -> tuple[np.ndarray, np.ndarray]:
        """The asset terms' and the anchors' embeddings, computed on first use."""
        async with self._lock:
            if self._index is None:
                vectors = await self._embed([*self.terms, *ANCHORS], None)
                self._index = (vectors[:, : len(self.terms)], vectors[:, len(self.terms) :])
            return self._index

    async def similarities(self, words: list[str], session: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of each word to each asset term [words, terms] and to each anchor [words, anchors],
        averaged over the templates (all vectors are unit length)."""
        terms, anchors = await self.index()
        vectors = await self._embed([normalise(w) for w in words], session)
        to_terms = np.einsum("twd,tkd->wk", vectors, terms) / len(TEMPLATES)
        to_anchors = np.einsum("twd,tkd->wk", vectors, anchors) / len(TEMPLATES)
        return to_terms, to_anchors

    def exact_hit(self, word: str) -> str | None:
        """The asset a word names outright (name, description term, or a category's first asset)."""
        if word in self.exact:
            return self.exact[word]
        if word in self.category_names:
            return next(name for name, category in self.categories.items() if category == word)
        return None

    def head_category(self, word: str) -> str | None:
        """The category a multi-word word's last noun names ("spruce tree" -> tree), if any."""
        parts = word.split()
        if len(parts) < 2:
            return None
        asset = self.exact_hit(parts[-1]) or self.exact_hit(_singular(parts[-1]))
        return self.categories[asset] if asset else None

    async def match(self, words: list[str], session: str | None = None) -> list[Match]:
        """One `Match` per word, in order (duplicates included). Embeds only the words no exact hit settles."""
        found: dict[str, Match] = {}
        pending: list[str] = []
        for word in dict.fromkeys(words):
            key = normalise(word)
            if not key or key == PLACEHOLDER:
                found[word] = Match(word, None, PLACEHOLDER, 0.0)
                continue
            asset = self.exact_hit(key) or self.exact_hit(_singular(key))
            if asset is not None:
                found[word] = Match(word, asset, self.categories[asset], 1.0)
            else:
                pending.append(word)
        if pending:
            to_terms, to_anchors = await self.similarities(pending, session)
            for word, row, anchor in zip(pending, to_terms, to_anchors.max(axis=1)):
                category = self.head_category(normalise(word))
                if category is not None:  # within the category the head names, the closest asset
                    allowed = np.array([self.categories[o] == category for o in self.owners])
                    best = int(np.argmax(np.where(allowed, row, -np.inf)))
                    found[word] = Match(word, self.owners[best], category, round(float(row[best]), 4))
                    continue
                best = int(np.argmax(row))
                score = round(float(row[best]), 4)
                if score >= self.threshold and score >= anchor:
                    found[word] = Match(word, self.owners[best], self.categories[self.owners[best]], score)
                else:
                    found[word] = Match(word, None, PLACEHOLDER, score)
        return [found[w] for w in words]


def _subject(term: str) -> str:
    """ "bridge over a river or stream" -> "bridge": the rest names the surroundings, which would pull
    "river" to the bridge rather than to the lake."""
    return re.split(r" (?:with|over|on|under|for|by|in) ", term)[0]


def _singular(word: str) -> str:
    parts = word.split()
    return " ".join([*parts[:-1], singular(parts[-1])]) if parts else word
