"""The same model error reaches the client with the same status and message, whatever the isolation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.conftest import MODELS
from tests.models.failing import ERRORS
from xrserve.core.config import ModelConfig
from xrserve.core.errors import XRServeError
from xrserve.core.request import InferenceRequest
from xrserve.core.scheduler import Scheduler
from xrserve.runtimes import RUNTIMES

ISOLATIONS = ("inline", "thread", "process")
EXPECTED = {"deadline": 408, "superseded": 409, "unavailable": 503, "bad_input": 400, "model_error": 500}


def config(isolation: str) -> ModelConfig:
    return ModelConfig(
        name=f"failing-{isolation}",
        runtime="python",
        entrypoint="failing.py:Failing",
        directory=str(MODELS),
        isolation=isolation,
        inputs=[{"name": "x", "datatype": "FP32", "shape": [1]}],
        outputs=[{"name": "y", "datatype": "FP32", "shape": [1]}],
    )


def outcomes() -> dict[str, dict[str, tuple[int, str, str | None]]]:
    """For every isolation and every kind of failure: (status, message, Retry-After)."""

    async def main() -> dict[str, dict[str, tuple[int, str, str | None]]]:
        scheduler = Scheduler(RUNTIMES)
        for isolation in ISOLATIONS:
            await scheduler.load(config(isolation))
        try:
            seen: dict[str, dict[str, tuple[int, str, str | None]]] = {}
            for isolation in ISOLATIONS:
                seen[isolation] = {}
                for kind in ERRORS:
                    request = InferenceRequest(
                        f"failing-{isolation}", {"x": np.ones(1, np.float32)}, parameters={"fail": kind}
                    )
                    with pytest.raises(XRServeError) as caught:
                        await scheduler.submit(request)
                    error = caught.value
                    seen[isolation][kind] = (
                        error.status_code,
                        error.message.replace(isolation, "ISOLATION"),
                        error.headers.get("Retry-After"),
                    )
                answer = await scheduler.submit(InferenceRequest(f"failing-{isolation}", {"x": np.ones(1, np.float32)}))
                assert answer.outputs["y"].tolist() == [2.0]  # the model still serves after each failure
            return seen
        finally:
            await scheduler.close()

    return asyncio.run(main())


def test_same_error_same_status_for_inline_thread_and_process() -> None:
    seen = outcomes()
    for kind, status in EXPECTED.items():
        assert seen["inline"][kind][0] == status, (kind, seen["inline"][kind])
        assert seen["thread"][kind] == seen["inline"][kind] == seen["process"][kind], kind
    assert seen["process"]["unavailable"][2] == "7"  # Retry-After survives the process boundary
    assert "failing-ISOLATION' failed: RuntimeError: the weights are corrupt" in seen["process"]["model_error"][1]
