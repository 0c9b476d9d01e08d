"""The canary's split and verdict on their own: exact shares, sticky sessions, a rollback that says why."""

from __future__ import annotations

from collections import Counter

from xrserve.core.canary import Canaries
from xrserve.core.config import CanaryDecl
from xrserve.core.metrics import Metrics


def test_the_split_is_exact_not_a_coin_flip() -> None:
    canaries = Canaries(Metrics())
    canary = canaries.start("m", "2", "1", 20, CanaryDecl())
    picks = Counter(canary.pick(None) for _ in range(1000))
    assert picks == {"2": 200, "1": 800}
    odd = canaries.start("m", "2", "1", 33.3, CanaryDecl())
    assert abs(Counter(odd.pick(None) for _ in range(1000))["2"] - 333) <= 1


def test_a_session_keeps_its_version_and_sessions_split_by_the_share() -> None:
    canary = Canaries(Metrics()).start("m", "2", "1", 20, CanaryDecl())
    for session in ("a", "b", "c"):
        assert len({canary.pick(session) for _ in range(50)}) == 1
    share = Counter(canary.pick(f"session-{i}") for i in range(5000))["2"] / 5000
    assert 0.17 < share < 0.23


def test_a_failing_canary_is_ended_with_the_reason() -> None:
    metrics = Metrics()
    canaries = Canaries(metrics)
    ended: list[str] = []
    canaries.on_end = lambda canary, reason: ended.append(reason)
    canary = canaries.start("m", "2", "1", 50, CanaryDecl(min_requests=10, window_s=30))
    for _ in range(40):
        canaries.observe(canary, "1", False, 0.001)
    for _ in range(9):
        canaries.observe(canary, "2", True, 0.001)
    assert not ended and "m" in canaries.active  # fewer than min_requests: no verdict yet
    canaries.observe(canary, "2", True, 0.001)
    assert ended == ["error rate 1.00 vs 0.00 over 10 requests in 30 s"]
    assert "m" not in canaries.active
    assert metrics.canary_percent.labels("m", "2")._value.get() == 0
    assert metrics.canary_rollbacks.labels("m", "2")._value.get() == 1


def test_a_slow_canary_is_ended_and_a_fast_one_is_not() -> None:
    canaries = Canaries(Metrics())
    ended: list[str] = []
    canaries.on_end = lambda canary, reason: ended.append(reason)
    policy = CanaryDecl(min_requests=20, max_p99_ratio=2, min_p99_ms=10)
    canary = canaries.start("m", "2", "1", 50, policy)
    for _ in range(30):
        canaries.observe(canary, "1", False, 0.020)
        canaries.observe(canary, "2", False, 0.030)  # 1.5 times slower: within the ratio
    assert not ended
    canary = canaries.start("m", "2", "1", 50, policy)
    for _ in range(30):
        canaries.observe(canary, "1", False, 0.020)
        canaries.observe(canary, "2", False, 0.100)
    assert ended and ended[0].startswith("p99 latency 100.0 ms vs 20.0 ms")
