"""A streaming /v1/chat/completions client that times every content chunk, and the prompts.

Every server gets the same requests: the same persona + story prompt, max_tokens,
temperature and seed for request i. Each request's persona has its own name, so no two
prompts share more than a few template tokens: a server's prompt cache (llama-server
keeps each slot's last prompt, `Llama` keeps its last prefix) cannot make TTFT look
better than a new conversation would.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

NAMES = [
    "Mira",
    "Tobin",
    "Asha",
    "Kellan",
    "Nyx",
    "Orrin",
    "Pell",
    "Quilla",
    "Rook",
    "Sable",
    "Tamsin",
    "Ulric",
    "Vesna",
    "Wren",
    "Xan",
    "Yara",
    "Zeph",
    "Ilse",
    "Joren",
    "Lark",
    "Maelis",
    "Nadia",
    "Oswin",
    "Priya",
    "Rhett",
    "Selka",
    "Teodor",
    "Una",
    "Varro",
    "Willa",
    "Ysolde",
    "Bram",
]
SUBJECTS = [
    "a lighthouse keeper who finds a map in a bottle",
    "a robot learning to paint the sea",
    "two dragons searching for a lost city",
    "a sailor crossing a frozen ocean",
    "a girl who can talk to trees",
    "a detective solving a mystery on Mars",
    "a baker whose bread can fly",
    "a knight afraid of the dark",
    "a library that rearranges itself at night",
    "a fox who becomes a mayor",
    "an astronaut stranded on a moon of Jupiter",
    "a clockmaker who repairs time itself",
    "a village built on the back of a giant turtle",
    "a musician whose songs change the weather",
    "a cat who runs a small hotel",
    "the last train through the mountains",
]
SYSTEM = (
    "You are {name}, a storyteller character in a virtual reality world. "
    "You always answer with long, vivid, detailed stories full of dialogue."
)


def messages(i: int) -> list[dict[str, str]]:
    """The chat of request i: a persona (a different name each time) and a story prompt."""
    name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f" number {i // len(NAMES) + 1}")
    return [
        {"role": "system", "content": SYSTEM.format(name=name)},
        {"role": "user", "content": f"Write a long story about {SUBJECTS[i % len(SUBJECTS)]}."},
    ]


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    seed_base: int = 1234

    def request(self, i: int, max_tokens: int | None = None) -> dict[str, Any]:
        return {
            "messages": messages(i),
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed_base + i,
        }


@dataclass
class StreamResult:
    """One streamed answer. Times are seconds from sending the request."""

    chunk_times: list[float] = field(default_factory=list)  # every chunk with non-empty content
    end: float = 0.0  # the stream closed
    completion_tokens: int = 0  # as the server counted them (usage), or the chunks if it did not say
    tokens_from_usage: bool = False
    prompt_tokens: int | None = None  # from usage, where the server sends it
    finish_reason: str | None = None
    error: str | None = None
    started_at: float = 0.0  # perf_counter when sent, to line streams up in time

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunk_times)

    @property
    def ttft(self) -> float | None:
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens over the time from the first to the last content chunk."""
        if len(self.chunk_times) < 2 or self.completion_tokens < 2:
            return None
        return self.completion_tokens / (self.chunk_times[-1] - self.chunk_times[0])

    @property
    def gaps(self) -> list[float]:
        """Seconds between consecutive content chunks."""
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]

    @property
    def worst_gap(self) -> float | None:
        gaps = self.gaps
        return max(gaps) if gaps else None

    def to_json(self) -> dict[str, Any]:
        return {
            "ttft": self.ttft,
            "tokens_per_s": self.tokens_per_s,
            "worst_gap": self.worst_gap,
            "completion_tokens": self.completion_tokens,
            "tokens_from_usage": self.tokens_from_usage,
            "prompt_tokens": self.prompt_tokens,
            "chunks": len(self.chunk_times),
            "end": self.end,
            "finish_reason": self.finish_reason,
            "error": self.error,
        }


def body(model: str, request: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, **request, "stream": True, "stream_options": {"include_usage": True}, **extra}


async def stream_chat(
    client: httpx.AsyncClient, url: str, payload: dict[str, Any], on_chunk=None, timeout: float = 180.0
) -> StreamResult:
    """POST one streaming chat completion and time it; `on_chunk(result)` after every content chunk."""
    result = StreamResult(started_at=time.perf_counter())
    t0 = result.started_at
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=payload) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    result.error = f"HTTP {response.status_code}: {text[:300]}"
                    return result
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if "error" in event:
                        result.error = f"in-band error: {json.dumps(event['error'])[:300]}"
                        break
                    for choice in event.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            result.chunk_times.append(time.perf_counter() - t0)
                            if on_chunk is not None:
                                on_chunk(result)
                        if choice.get("finish_reason"):
                            result.finish_reason = choice["finish_reason"]
                    usage = event.get("usage")
                    if usage and usage.get("completion_tokens") is not None:
                        result.completion_tokens = int(usage["completion_tokens"])
                        result.tokens_from_usage = True
                        result.prompt_tokens = usage.get("prompt_tokens")
    except TimeoutError:
        result.error = f"no end of stream within {timeout:.0f} s"
    except (httpx.HTTPError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    result.end = time.perf_counter() - t0
    if not result.tokens_from_usage:
        result.completion_tokens = len(result.chunk_times)
    return result
