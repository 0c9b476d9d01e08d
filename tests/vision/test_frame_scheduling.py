"""The scheduler's frame policy in-process: latest-frame-wins, deadlines, fairness, and fifo for contrast."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.conftest import MODELS, run_scheduler
from xrserve.core.config import ModelConfig
from xrserve.core.errors import DeadlineExceeded, Superseded
from xrserve.core.request import InferenceRequest, Priority
from xrserve.core.scheduler import Scheduler


def sleepy(sleep_ms: int = 40, max_batch_size: int = 1) -> ModelConfig:
    return ModelConfig(
        name="sleepy",
        runtime="python",
        entrypoint="sleepy.py:Sleepy",
        isolation="thread",
        directory=str(MODELS),
        max_batch_size=max_batch_size,
        parameters={"sleep_ms": sleep_ms},
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        outputs=[
            {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "batch", "datatype": "INT32", "shape": [-1]},
        ],
    )


def frame(session: str, sequence: int, budget_s: float = 1.0) -> InferenceRequest:
    return InferenceRequest(
        "sleepy",
        {"x": np.full((1, 4), sequence, np.float32)},
        session=session,
        frame_key=f"{session}/cam/sleepy",
        deadline=time.monotonic() + budget_s,
        priority=Priority.FRAME,
        id=f"{session}:{sequence}",
    )


def run(policy: str, config: ModelConfig, scenario):
    return run_scheduler(config, scenario, frame_policy=policy)


async def outcome(scheduler: Scheduler, request: InferenceRequest) -> str:
    try:
        await scheduler.submit(request)
        return "done"
    except Superseded:
        return "superseded"
    except DeadlineExceeded:
        return "deadline"


def test_a_newer_frame_supersedes_the_waiting_one() -> None:
    async def scenario(s: Scheduler):
        tasks = []
        for sequence in range(5):  # the first runs; 1..3 are each replaced by the next; 4 runs
            tasks.append(asyncio.create_task(outcome(s, frame("a", sequence))))
            await asyncio.sleep(0.005)
        return await asyncio.gather(*tasks)

    # 200 ms of compute against 20 ms of sending: a busy machine's late wake-ups cannot reorder it
    assert run("deadline", sleepy(200), scenario) == ["done", "superseded", "superseded", "superseded", "done"]


def test_fifo_policy_computes_every_frame_in_order() -> None:
    async def scenario(s: Scheduler):
        tasks = []
        for sequence in range(4):
            tasks.append(asyncio.create_task(outcome(s, frame("a", sequence, budget_s=0.01))))
            await asyncio.sleep(0.002)
        return await asyncio.gather(*tasks)

    # deadlines of 10 ms would drop frames 1..3 under the default policy; fifo computes all
    assert run("fifo", sleepy(), scenario) == ["done"] * 4


def test_frames_of_different_streams_do_not_supersede_each_other_and_share_a_batch() -> None:
    async def scenario(s: Scheduler):
        blocker = asyncio.create_task(s.submit(frame("z", 0)))
        await asyncio.sleep(0.01)
        answers = await asyncio.gather(*(s.submit(frame(session, 1)) for session in "abc"))
        await blocker
        return [int(a.outputs["batch"][0]) for a in answers]

    assert run("deadline", sleepy(200, max_batch_size=4), scenario) == [3, 3, 3]


def test_a_frame_past_its_deadline_is_never_computed() -> None:
    async def scenario(s: Scheduler):
        blocker = asyncio.create_task(s.submit(frame("a", 0)))
        await asyncio.sleep(0.005)
        late = await outcome(s, frame("b", 1, budget_s=0.015))  # waits behind a 200 ms frame
        await blocker
        return late, s.metrics.failures.labels("sleepy", "1", "deadline")._value.get()

    late, dropped = run("deadline", sleepy(200), scenario)
    assert late == "deadline" and dropped == 1


@pytest.mark.parametrize("policy", ["deadline", "fifo"])
def test_overloaded_sessions_get_fair_shares(policy: str) -> None:
    """Three sessions send frames faster than the model serves them; one sends three times as fast."""

    async def scenario(s: Scheduler):
        served = {"a": 0, "b": 0, "greedy": 0}

        async def one(session: str, sequence: int) -> None:
            if await outcome(s, frame(session, sequence, budget_s=0.5)) == "done":
                served[session] += 1

        async def camera(session: str, period: float) -> None:
            tasks = []
            for sequence in range(int(0.8 / period)):
                tasks.append(asyncio.create_task(one(session, sequence)))
                await asyncio.sleep(period)
            await asyncio.gather(*tasks)

        await asyncio.gather(camera("a", 0.03), camera("b", 0.03), camera("greedy", 0.01))
        return served

    served = run(policy, sleepy(sleep_ms=20), scenario)
    if policy == "deadline":  # round-robin: the greedy session gets no more than the others
        assert served["greedy"] <= 1.5 * min(served["a"], served["b"]), served
    else:  # fifo serves in arrival order: the greedy session takes most of the model
        assert served["greedy"] > 2 * min(served["a"], served["b"]), served
