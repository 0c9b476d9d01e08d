"""Words to assets with the real `minilm` (and one constrained extraction with the real `smollm2`).

One in-process Scheduler for the module, with both built-ins loaded (~15 s on 2 cores),
driven from one event loop so the models load once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from xrserve.core.request import InferenceRequest, InferenceResponse, Priority
from xrserve.core.scheduler import Scheduler
from xrserve.models.llm.model import SmolLM2
from xrserve.models.minilm import MiniLM
from xrserve.runtimes import RUNTIMES

pytest.importorskip("xrserve.worlds.assets")

from xrserve.worlds.extraction import extract_with_llm, parse_prompt, vocabulary  # noqa: E402
from xrserve.worlds.matching import PLACEHOLDER, AssetMatcher  # noqa: E402


class Counting:
    """The scheduler, with the requests that reach it written down (to check batching and priority)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.requests: list[InferenceRequest] = []

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        self.requests.append(request)
        return await self.scheduler.submit(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scheduler, name)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[asyncio.AbstractEventLoop, Counting]]:
    loop = asyncio.new_event_loop()
    scheduler = Scheduler(RUNTIMES)
    loop.run_until_complete(scheduler.load(MiniLM.default_config()))
    config = SmolLM2.default_config()
    config.threads = 1  # beside the other tests on 2 cores
    loop.run_until_complete(scheduler.load(config))
    try:
        yield loop, Counting(scheduler)
    finally:
        loop.run_until_complete(scheduler.close())
        loop.close()


def categories(served: tuple[asyncio.AbstractEventLoop, Counting], words: list[str]) -> dict[str, tuple[str, Any]]:
    loop, client = served
    matcher = AssetMatcher(client)
    return {m.word: (m.category, m.asset) for m in loop.run_until_complete(matcher.match(words))}


def test_exact_names_and_terms_first(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    found = categories(served, ["tent", "cabin", "pine", "boulder", "lantern", "fire pit", "canoes"])
    assert {w: c for w, (c, _) in found.items()} == {
        "tent": "tent",
        "cabin": "house",
        "pine": "tree",
        "boulder": "rock",
        "lantern": "lamp",
        "fire pit": "campfire",
        "canoes": "boat",
    }
    assert found["tent"][1] == "tent" and found["pine"][1] == "pine"


def test_similar_words_and_compounds(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    found = categories(served, ["hut", "bungalow", "tulip", "sculpture", "cask", "spruce tree", "dirt road"])
    assert {w: c for w, (c, _) in found.items()} == {
        "hut": "house",
        "bungalow": "house",
        "tulip": "flower",
        "sculpture": "statue",
        "cask": "barrel",
        "spruce tree": "tree",
        "dirt road": "path",
    }
    assert found["spruce tree"][1] == "pine"  # within the category the head names, the closest asset


def test_what_the_library_lacks_is_a_placeholder(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    found = categories(served, ["spaceship", "dragon", "computer", "car", "guitar", "placeholder"])
    assert all(found[w] == (PLACEHOLDER, None) for w in found), found


def test_one_batched_bulk_request_per_call(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    loop, client = served
    matcher = AssetMatcher(client)
    loop.run_until_complete(matcher.index())
    client.requests.clear()
    matches = loop.run_until_complete(matcher.match(["hut", "tent", "dragon", "hut", "bungalow"]))
    assert [m.word for m in matches] == ["hut", "tent", "dragon", "hut", "bungalow"]  # one per word, in order
    assert len(client.requests) == 1  # the three without an exact hit, together
    assert client.requests[0].priority == Priority.BULK
    loop.run_until_complete(matcher.match(["tent", "well"]))
    assert len(client.requests) == 1  # exact hits need no model, the index is cached


def test_parser_words_match_the_labelled_example(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    spec = parse_prompt("a forest clearing with a cabin, two pine trees, a boulder, a lantern and a spaceship")
    found = categories(served, [o.word for o in spec.objects])
    assert [found[o.word][0] for o in spec.objects] == ["house", "tree", "rock", "lamp", PLACEHOLDER]


def test_llm_extraction_is_constrained_to_the_library(served: tuple[asyncio.AbstractEventLoop, Counting]) -> None:
    loop, client = served
    client.requests.clear()
    spec = loop.run_until_complete(extract_with_llm(client, "smollm2", "three tents around a campfire"))
    assert spec.objects and all(o.word in vocabulary() for o in spec.objects)
    assert all(1 <= o.count <= 50 for o in spec.objects)
    assert "tent" in {o.word for o in spec.objects}
    request = client.requests[0]
    assert request.priority == Priority.BULK and request.parameters["temperature"] == 0.0
    assert request.parameters["response_format"]["type"] == "json_schema"
