"""Streaming models through the scheduler: slots, order, cancellation, crashes."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.conftest import MODELS
from tests.conftest import run_scheduler as run
from xrserve.core.config import ModelConfig
from xrserve.core.errors import BadRequest, Unavailable
from xrserve.core.request import InferenceRequest, Priority
from xrserve.core.scheduler import Scheduler


def streamer(isolation: str = "thread", **overrides) -> ModelConfig:
    return ModelConfig(
        name="streamer",
        runtime="python",
        entrypoint="streamer.py:Streamer",
        directory=str(MODELS),
        isolation=isolation,
        streaming=True,
        max_streams=2,
        parameters={"tick_ms": 10},
        inputs=[{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
        outputs=[{"name": "text_output", "datatype": "BYTES", "shape": [1]}],
        **overrides,
    )


def ask(text: str) -> InferenceRequest:
    return InferenceRequest("streamer", {"text_input": np.array([text.encode()], dtype=object)})


async def drain(stream) -> str:
    return "".join([chunk.get("text", "") async for chunk in stream])


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_stream_and_collect(isolation: str) -> None:
    async def scenario(s: Scheduler):
        stream = await s.stream(ask("3"))
        assert (await stream.first())["kind"] == "started"
        text = await drain(stream)
        collected = await s.submit(ask("2"))
        return text, collected.outputs["text_output"].tolist()

    assert run(streamer(isolation), scenario) == ("0 1 2 ", [b"0 1 "])


def test_slots_limit_concurrent_streams_and_cancel_frees_one() -> None:
    async def scenario(s: Scheduler):
        gauge = s.metrics.active_streams.labels("streamer", "1")
        a = await s.stream(ask("100"))
        b = await s.stream(ask("100"))
        third = asyncio.ensure_future(s.stream(ask("1")))
        await asyncio.sleep(0.1)
        waiting = not third.done()
        at_full = gauge._value.get()
        a.cancel()
        c = await asyncio.wait_for(third, 2)
        text = await drain(c)
        b.cancel()
        await asyncio.sleep(0.05)
        return waiting, at_full, text, gauge._value.get()

    waiting, at_full, text, after = run(streamer(), scenario)
    assert waiting and at_full == 2  # max_streams = 2: the third waited for a slot
    assert text == "0 "
    assert after == 0


def test_errors_before_output_raise_with_status() -> None:
    async def scenario(s: Scheduler):
        stream = await s.stream(ask("many"))
        with pytest.raises(BadRequest, match="not a number"):
            await stream.first()

    run(streamer(), scenario)


def test_worker_crash_fails_open_streams_with_503_and_recovers() -> None:
    async def scenario(s: Scheduler):
        healthy = await s.stream(ask("1000"))
        doomed = await s.stream(ask("crash"))
        with pytest.raises(Unavailable, match="crashed"):
            await drain(doomed)
        with pytest.raises(Unavailable, match="crashed"):
            await drain(healthy)
        for _ in range(100):  # the restarted worker serves again
            try:
                return await drain(await s.stream(ask("2")))
            except Unavailable:
                await asyncio.sleep(0.1)

    assert run(streamer("process"), scenario) == "0 1 "


def test_cancel_holds_the_slot_until_the_model_confirms() -> None:
    """A barge-in cancels a stream and opens the next at once: the model must have freed its slot."""

    async def scenario(s: Scheduler):
        gauge = s.metrics.active_streams.labels("streamer", "1")
        a = await s.stream(ask("100"))
        a.cancel()
        held = gauge._value.get()
        await asyncio.sleep(0.2)  # the streamer confirms with "done" on its next tick
        return held, gauge._value.get()

    held, after = run(streamer(), scenario)
    assert held == 1 and after == 0


def test_the_tokens_of_a_cancelled_stream_are_counted() -> None:
    """Tokens a client received before it left were generated all the same: xrserve_generated_tokens counts them
    (from the model's confirming "done"), as it counts a finished stream's."""

    async def scenario(s: Scheduler):
        tokens = s.metrics.generated_tokens.labels("streamer", "1")
        finished = await drain(await s.stream(ask("3")))
        after_finished = tokens._value.get()
        cancelled = await s.stream(ask("100"))
        received = 0
        async for chunk in cancelled:
            received += chunk["kind"] == "delta"
            if received == 5:
                cancelled.cancel()
                break
        await asyncio.sleep(0.2)  # the streamer confirms with "done" on its next tick
        return finished, after_finished, tokens._value.get() - after_finished

    finished, after_finished, counted = run(streamer(), scenario)
    assert finished == "0 1 2 " and after_finished == 3
    assert 5 <= counted <= 7  # the 5 received, and a tick or two the client never saw


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_first_spoken_piece_pauses_the_streams_of_a_model_that_yields_to_speech(isolation: str) -> None:
    """The scheduler holds a `yields_to_speech` model while a FIRST_SPEECH request computes, and only then."""
    from tests.unit.test_scheduler import sleepy

    async def scenario(s: Scheduler):
        await s.load(
            sleepy(
                parameters={"sleep_ms": 300},
                max_batch_size=0,
                inputs=[{"name": "x", "datatype": "FP32", "shape": [4]}],
                outputs=[{"name": "y", "datatype": "FP32", "shape": [4]}],
            )
        )
        stream = await s.stream(ask("150"))  # 10 ms ticks: 1.5 s
        times: list[float] = []

        async def read() -> None:
            async for chunk in stream:
                if chunk.get("kind") == "delta":
                    times.append(time.monotonic())

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.1)
        spans = {}
        for priority in (Priority.INTERACTIVE, Priority.FIRST_SPEECH):
            started = time.monotonic()
            await s.submit(InferenceRequest("sleepy", {"x": np.zeros(4, np.float32)}, priority=priority))
            spans[priority] = (started, time.monotonic())
            await asyncio.sleep(0.1)
        stream.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)

        def ticks(priority: Priority) -> int:  # ticks inside the 300 ms compute, past a tick begun before it
            start, end = spans[priority]
            return sum(start + 0.06 < t < end - 0.01 for t in times)

        resumed = sum(spans[Priority.FIRST_SPEECH][1] < t < spans[Priority.FIRST_SPEECH][1] + 0.1 for t in times)
        return ticks(Priority.INTERACTIVE), ticks(Priority.FIRST_SPEECH), resumed

    beside_other_work, beside_speech, after_speech = run(streamer(isolation, yields_to_speech=True), scenario)
    assert beside_other_work >= 5  # 10 ms ticks go on beside other interactive work
    assert beside_speech == 0  # and pause while the first spoken piece computes
    assert after_speech >= 2  # then go on at once, not when the 0.5 s hold would have run out
