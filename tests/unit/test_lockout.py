"""The lockout's arithmetic over minutes, on a clock the test moves (the servers' tests use seconds)."""

from __future__ import annotations

import pytest

from xrserve.security.lockout import LockedOut, LockoutPolicy, Lockouts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lock_period(lockouts: Lockouts, clock: Clock, key_id: str) -> float:
    """Fail until the key id is locked; how long the lock lasts."""
    for _ in range(lockouts.policy.key_failures):
        lockouts.check(key_id, None)
        lockouts.failed(key_id, None)
    with pytest.raises(LockedOut) as locked:
        lockouts.check(key_id, None)
    assert locked.value.subject == f"key id {key_id}" and locked.value.status_code == 429
    return float(locked.value.headers["Retry-After"])


def test_defaults_lock_after_ten_failures_for_15_s_doubling_to_5_min() -> None:
    clock = Clock()
    lockouts = Lockouts(LockoutPolicy(), clock)
    periods = []
    for _ in range(7):
        periods.append(lock_period(lockouts, clock, "1a2b3c4d"))
        clock.now += periods[-1]
        lockouts.check("1a2b3c4d", None)  # the lock has ended
    assert periods == [15, 30, 60, 120, 240, 300, 300]
    lockouts.succeeded("1a2b3c4d")
    assert lock_period(lockouts, clock, "1a2b3c4d") == 15  # a success starts it over


def test_failures_spread_beyond_the_window_never_lock() -> None:
    clock = Clock()
    lockouts = Lockouts(LockoutPolicy(), clock)
    for _ in range(100):
        lockouts.check("1a2b3c4d", "10.0.0.7")
        lockouts.failed("1a2b3c4d", "10.0.0.7")
        clock.now += 6.7  # nine within any minute: one short of the threshold
    lockouts.check("1a2b3c4d", "10.0.0.7")


def test_a_long_quiet_spell_forgets_earlier_locks() -> None:
    clock = Clock()
    lockouts = Lockouts(LockoutPolicy(), clock)
    assert lock_period(lockouts, clock, "k") == 15
    clock.now += 15
    assert lock_period(lockouts, clock, "k") == 30
    clock.now += 30 + 60 + 300 + 1  # the window and the longest lock without a failure
    assert lock_period(lockouts, clock, "k") == 15


def test_an_address_is_locked_across_key_ids_and_a_success_does_not_clear_it() -> None:
    clock = Clock()
    lockouts = Lockouts(LockoutPolicy(address_failures=5), clock)
    for n in range(5):
        lockouts.failed(f"id{n}", "10.0.0.7")
    lockouts.succeeded("id0")
    with pytest.raises(LockedOut) as locked:
        lockouts.check("another", "10.0.0.7")
    assert "10.0.0.7" in locked.value.message and "even with the right secret" in locked.value.message
    lockouts.check("another", "10.0.0.8")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("kye=3", "is not one of"), ("key=x", "needs a number"), ("key=0", "at least 1"), ("first=10,max=5", "first")],
)
def test_a_wrong_setting_is_named(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        LockoutPolicy.parse(text)
    assert LockoutPolicy.parse("key=3, window=2").key_failures == 3
