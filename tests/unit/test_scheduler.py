"""The scheduler in-process, with a real (small) model: batching, deadlines, limits, crashes."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from tests.conftest import MODELS
from tests.conftest import run_scheduler as run
from xrserve.core.config import ModelConfig
from xrserve.core.errors import BadRequest, DeadlineExceeded, NotFound, Unavailable
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import Scheduler


def sleepy(**overrides) -> ModelConfig:
    fields = dict(
        name="sleepy",
        runtime="python",
        entrypoint="sleepy.py:Sleepy",
        isolation="thread",
        directory=str(MODELS),
        max_batch_size=8,
        max_queue_delay_ms=20,
        parameters={"sleep_ms": 30},
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        outputs=[
            {"name": "y", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "batch", "datatype": "INT32", "shape": [-1]},
        ],
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def request(value: float = 0.0, rows: int = 1, **fields) -> InferenceRequest:
    return InferenceRequest("sleepy", {"x": np.full((rows, 4), value, np.float32)}, **fields)


def test_batches_respect_max_batch_size_and_split_rows() -> None:
    async def scenario(s: Scheduler):
        return await asyncio.gather(*(s.submit(request(i, rows=3)) for i in range(6)))

    results = run(sleepy(), scenario)
    for i, result in enumerate(results):
        assert result.outputs["y"].tolist() == [[i + 1.0] * 4] * 3
        assert result.outputs["batch"][0] <= 8  # rows of one batch never exceed max_batch_size


def test_batch_window_is_cut_short_by_a_deadline() -> None:
    async def scenario(s: Scheduler):
        s.metrics.in_server = 5  # as if other HTTP requests were on their way in: the window is waited
        started = time.monotonic()
        result = await s.submit(request(deadline=time.monotonic() + 0.2))
        return time.monotonic() - started, result

    # a 2 s batching window, but the request must start within 200 ms (+30 ms compute);
    # the bound leaves a busy machine a second of slack and still fails if the window is waited
    elapsed, result = run(sleepy(max_queue_delay_ms=2000), scenario)
    assert 0.15 < elapsed < 1.2 and result.outputs["batch"].tolist() == [1]


def test_lone_request_does_not_wait_for_company() -> None:
    async def scenario(s: Scheduler):
        started = time.monotonic()
        await s.submit(request())
        return time.monotonic() - started

    assert run(sleepy(max_queue_delay_ms=500, parameters={"sleep_ms": 1}), scenario) < 0.25


def test_deadline_passed_in_queue_is_answered_at_once_and_not_computed() -> None:
    async def scenario(s: Scheduler):
        blocker = asyncio.ensure_future(s.submit(request()))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="not computed"):
            await s.submit(request(deadline=time.monotonic() + 0.05))
        waited = time.monotonic() - started
        await blocker
        computed = s.metrics.batch_size.labels("sleepy", "1")._sum.get()
        return waited, computed

    waited, computed = run(sleepy(max_batch_size=1, parameters={"sleep_ms": 300}), scenario)
    assert waited < 0.25  # answered when the deadline passed, not when the model got free
    assert computed == 1  # only the blocker ran


def test_queue_bound_and_validation() -> None:
    async def scenario(s: Scheduler):
        tasks = [asyncio.ensure_future(s.submit(request())) for _ in range(6)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(BadRequest, match="batch size 9"):
            await s.submit(request(rows=9))
        with pytest.raises(BadRequest, match="shape"):
            await s.submit(InferenceRequest("sleepy", {"x": np.zeros((1, 5), np.float32)}))
        with pytest.raises(NotFound, match="unknown model 'other'"):
            await s.submit(InferenceRequest("other", {}))
        return results

    results = run(sleepy(max_batch_size=1, queue_size=2, parameters={"sleep_ms": 50}), scenario)
    full = [r for r in results if isinstance(r, Unavailable)]
    assert full and full[0].headers["Retry-After"]
    assert sum(not isinstance(r, Exception) for r in results) >= 2


def test_process_isolation_survives_a_crash() -> None:
    config = ModelConfig(
        name="crashy",
        runtime="python",
        entrypoint="crashy.py:Crashy",
        directory=str(MODELS),
        inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}],
        outputs=[{"name": "y", "datatype": "FP32", "shape": [1]}],
    )

    async def scenario(s: Scheduler):
        ok = await s.submit(InferenceRequest("crashy", {"x": np.array([1.0], np.float32)}))
        with pytest.raises(Unavailable, match="SIGSEGV"):
            await s.submit(InferenceRequest("crashy", {"x": np.array([-1.0], np.float32)}))
        queued = await s.submit(InferenceRequest("crashy", {"x": np.array([4.0], np.float32)}))
        return ok.outputs["y"].tolist(), queued.outputs["y"].tolist()

    # the request sent right after the crash waits for the restarted worker instead of failing
    assert run(config, scenario) == ([2.0], [8.0])


def test_inline_isolation_computes_on_the_loop() -> None:
    async def scenario(s: Scheduler):
        results = await asyncio.gather(*(s.submit(request(i)) for i in range(4)))
        return [r.outputs["y"][0, 0] for r in results]

    assert run(sleepy(isolation="inline", parameters={"sleep_ms": 0}), scenario) == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_nice_lowers_only_a_worker_process(isolation: str) -> None:
    config = ModelConfig(
        name="niceness",
        runtime="python",
        entrypoint="niceness.py:Niceness",
        directory=str(MODELS),
        nice=7,
        isolation=isolation,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}],
        outputs=[{"name": "nice", "datatype": "INT32", "shape": [1]}],
    )

    async def scenario(s: Scheduler):
        answer = await s.submit(InferenceRequest("niceness", {"x": np.zeros(1, np.float32)}))
        return int(answer.outputs["nice"][0])

    ours = os.nice(0)  # the tests themselves may run niced
    assert run(config, scenario) == (min(19, ours + 7) if isolation == "process" else ours)
