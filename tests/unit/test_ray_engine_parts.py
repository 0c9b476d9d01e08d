"""The Ray engine's pieces that need no cluster: [scaling] -> Serve options, the deadline on the wire,
per-replica metrics. The engine itself runs in tests/integration/test_ray_engine.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from xrserve.core.config import ModelConfig
from xrserve.core.errors import BadRequest, DeadlineExceeded
from xrserve.core.metrics import Metrics, replica_series
from xrserve.core.request import InferenceRequest, InferenceResponse, Priority
from xrserve.engines.ray.cluster import deployment_options
from xrserve.engines.ray.wire import WireRequest, error_answer, unpack


def config(**scaling: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "runtime": "onnx", "queue_size": 64, "scaling": scaling})


def test_scaling_becomes_serve_options() -> None:
    fixed = deployment_options(config(replicas=3, cpus=0.5))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert fixed["max_ongoing_requests"] == 64 + 8  # the queue and the stream slots: the replica decides
    auto = deployment_options(config(min_replicas=0, max_replicas=4, target_ongoing_requests=3, gpus=1))
    assert auto["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 3}
    assert "num_replicas" not in auto and auto["ray_actor_options"]["num_gpus"] == 1
    assert deployment_options(config())["ray_actor_options"]["num_cpus"] == 0.25  # fractional by default


@pytest.mark.parametrize(
    ("scaling", "problem"),
    [
        ({"replicas": 2, "max_replicas": 4}, "either replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "below min_replicas"),
        ({"cpus": -1}, "greater than or equal to 0"),
        ({"replica": 2}, "Extra inputs"),
    ],
)
def test_bad_scaling_is_refused(scaling: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        config(**scaling)


def test_a_deadline_travels_as_the_time_left() -> None:
    now = time.monotonic()
    request = InferenceRequest("m", {"x": np.ones((1, 2), np.float32)}, deadline=now + 0.5, priority=Priority.FRAME)
    request.frame_key = "s/cam/m"
    wire = WireRequest.of(request)
    assert wire.request.deadline is None and 0.45 < (wire.budget_s or 0) <= 0.5
    wire.sent_wall -= 0.1  # as if the hop took 100 ms
    local, hop = wire.local()
    assert 0.09 < hop < 0.2
    assert 0.25 < local.deadline - time.monotonic() < 0.41  # what was left, less the hop
    assert (local.priority, local.frame_key) == (Priority.FRAME, "s/cam/m")
    wire.sent_wall -= 3600  # clocks an hour apart: the hop's credit is capped, the deadline is not lost
    local, hop = wire.local()
    assert hop == 1.0 and local.deadline is not None
    no_deadline, _ = WireRequest.of(InferenceRequest("m", {})).local()
    assert no_deadline.deadline is None


def test_answers_and_errors_keep_their_kind() -> None:
    response = InferenceResponse("m", "1", {"y": np.zeros(1)})
    assert unpack(("ok", response)) is response
    with pytest.raises(BadRequest, match="wrong shape"):
        unpack(error_answer(BadRequest("wrong shape")))
    late = DeadlineExceeded("too late", headers={"retry-after": "1"})
    with pytest.raises(DeadlineExceeded) as raised:
        unpack(error_answer(late))
    assert raised.value.status_code == 408 and raised.value.headers == {"retry-after": "1"}


def test_replica_series_are_renamed_and_labelled() -> None:
    texts = {}
    for replica, compute_s in (("r1", 0.01), ("r2", 0.03)):
        metrics = Metrics()
        metrics.compute_time.labels("hands", "1").observe(compute_s)
        metrics.requests.labels("hands", "1").inc(2)
        texts[replica] = metrics.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(replica_series(texts).decode())}
    requests = families["xrserve_replica_inference_requests"].samples
    assert {(s.labels["replica"], s.value) for s in requests} == {("r1", 2.0), ("r2", 2.0)}
    sums = [s for s in families["xrserve_replica_compute_seconds"].samples if s.name.endswith("_sum")]
    assert sorted(round(s.value, 3) for s in sums) == [0.01, 0.03]
    assert replica_series({}) == b""
