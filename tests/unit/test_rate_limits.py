"""The rate limiter's arithmetic on a clock the test moves: buckets, token budgets, frames, sessions."""

from __future__ import annotations

import pytest

from xrserve.security.keys import ANONYMOUS, ApiKey, Limits
from xrserve.security.limits import RateLimited, RateLimits, TokenBucket, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(**limits: int) -> ApiKey:
    return ApiKey("k1", "test", ("*",), 0.0, None, None, limits=Limits(**limits))


def test_a_bucket_lets_a_burst_of_its_capacity_through_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(5, 5 / 60, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.wait_s(0.0) == pytest.approx(12.0) and bucket.reset_s(0.0) == pytest.approx(60.0)
    assert not bucket.take(11.9)
    assert bucket.take(12.0) and not bucket.take(12.0)
    assert bucket.remaining(1000.0) == 5  # never more than its capacity
    bucket.charge(1000.0, 8)  # tokens used after the check: below zero, refilled from there
    assert bucket.remaining(1000.0) == 0 and not bucket.positive(1000.0) and bucket.positive(1036.1)


def test_rpm_answers_429_with_how_long_to_wait_and_headers_as_openai_sends_them() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    k = key(rpm=60)
    for _ in range(60):
        limits.admit_request(k)
    with pytest.raises(RateLimited, match="limit of 60 requests per minute") as refused:
        limits.admit_request(k)
    assert refused.value.status_code == 429
    assert refused.value.headers["Retry-After"] == "1" and refused.value.headers["retry-after-ms"] == "1000"
    assert dict(limits.headers(k)) == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"0",
        b"x-ratelimit-reset-requests": b"1m0s",
    }
    clock.now += 1.0
    limits.admit_request(k)  # one token back per second
    with pytest.raises(RateLimited):
        limits.admit_request(k)


def test_keys_without_limits_and_anonymous_are_never_limited() -> None:
    limits = RateLimits(Clock())
    for k in (key(), ANONYMOUS):
        for _ in range(10_000):
            limits.admit_request(k)
            assert limits.admit_frame(k)
        limits.charge_tokens(k, 10**9)
        limits.check_tokens(k)
        assert limits.headers(k) == []
        closes = [limits.open_session(k) for _ in range(100)]
        for close in closes:
            close()


def test_token_budgets_start_while_positive_charge_after_and_refill() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    k = key(tpm=60, tpd=1000)
    limits.check_tokens(k)
    limits.charge_tokens(k, 90)  # one answer may overdraw: the check was before it
    with pytest.raises(RateLimited, match="60 LLM tokens per minute") as refused:
        limits.check_tokens(k)
    assert refused.value.headers["Retry-After"] == "31"  # 30 tokens owed + 1, at 1 token per second
    assert dict(limits.headers(k))[b"x-ratelimit-remaining-tokens"] == b"0"
    clock.now += 31
    limits.check_tokens(k)
    for _ in range(20):  # the day's budget runs out, whatever the minute's does
        clock.now += 60
        limits.charge_tokens(k, 60)
    clock.now += 60  # the minute's budget is full again
    with pytest.raises(RateLimited, match="1000 LLM tokens per day"):
        limits.check_tokens(k)


def test_changed_limits_apply_at_once_and_keep_what_was_used() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    for _ in range(5):
        limits.admit_request(key(rpm=5))
    with pytest.raises(RateLimited):
        limits.admit_request(key(rpm=5))
    limits.admit_request(key(rpm=7))  # raised by 2: two more now
    limits.admit_request(key(rpm=7))
    with pytest.raises(RateLimited):
        limits.admit_request(key(rpm=7))
    limits.admit_request(key(rpm=0))  # unlimited


def test_frames_per_second_and_sessions_open_at_once() -> None:
    clock = Clock()
    limits = RateLimits(clock)
    k = key(fps=2, max_sessions=1)
    assert [limits.admit_frame(k) for _ in range(4)] == [True, True, False, False]
    clock.now += 0.5
    assert limits.admit_frame(k) and not limits.admit_frame(k)
    close = limits.open_session(k)
    with pytest.raises(RateLimited, match="already has 1 session"):
        limits.open_session(k)
    close()
    close()  # twice is once
    limits.open_session(k)()


def test_reset_durations_read_like_openais() -> None:
    assert [duration(s) for s in (0.02, 1, 1.2, 60, 361, 3723)] == ["20ms", "1s", "2s", "1m0s", "6m1s", "1h2m3s"]
