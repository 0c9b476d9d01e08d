"""Rate limits and quotas per API key: token buckets, counted in memory in the server process.

A key's limits (`keys.Limits`, set with `xrserve keys create|update --rpm --tpm --tpd --fps
--max-sessions`; 0 is unlimited) are enforced here:

- requests per minute: a bucket that holds `rpm` tokens (a burst of that size passes) and
  refills at rpm/60 per second; every HTTP request and every JSON message of a session takes one;
- LLM tokens per minute and per day: buckets of `tpm` (refilled at tpm/60 per second) and `tpd`
  (tpd/86400 per second); a generation may start while both are positive and is charged its
  prompt + completion tokens afterwards (so the balance may go below zero, and waits to refill);
- camera frames per second: a bucket of `fps` tokens refilled at fps per second;
- sessions open at once: a count.

The transports apply it: `api/ratelimit.py` for HTTP (the fast path included) and the LLM
routes for tokens, the session for its messages, frames and its own count. Limits changed
with `keys update` reach a running server with the key cache (a second), and a bucket keeps
what it has used when its size changes.

Where the buckets live: in the server process (`TokenBucket`), or, with `--database
postgresql://...`, in the database every replica shares (`SharedBuckets`, security/postgres.py:
each take, check or charge is one atomic statement there, so N replicas together let a key have
its rpm, not N times it). The count of open sessions stays per process for now.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from xrserve.core.errors import TooManyRequests
from xrserve.security.keys import ApiKey, Limits


class TokenBucket:
    """`capacity` tokens, refilled continuously at `per_s`; starts full. The clock is injectable."""

    __slots__ = ("capacity", "per_s", "tokens", "stamp")

    def __init__(self, capacity: float, per_s: float, now: float) -> None:
        self.capacity = capacity
        self.per_s = per_s
        self.tokens = float(capacity)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_s)
            self.stamp = now

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take `amount` if that many are there; False (nothing taken) otherwise."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def positive(self, now: float) -> bool:
        self._refill(now)
        return self.tokens > 0

    def charge(self, now: float, amount: float) -> None:
        """Take `amount` whatever is left: the balance may go below zero (tokens used after the check)."""
        self._refill(now)
        self.tokens -= amount

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.tokens))

    def wait_s(self, now: float, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens are there (0 if they are now)."""
        self._refill(now)
        return max(0.0, (amount - self.tokens) / self.per_s)

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return max(0.0, (self.capacity - self.tokens) / self.per_s)

    def resize(self, capacity: float, per_s: float, now: float) -> None:
        """A changed limit: what was used stays used (a larger bucket gains the difference)."""
        self._refill(now)
        self.tokens = min(capacity, self.tokens + max(0.0, capacity - self.capacity))
        self.capacity, self.per_s = capacity, per_s


class Bucket(Protocol):
    """What `RateLimits` asks of a bucket: `TokenBucket`, or one kept in a shared database."""

    @property
    def capacity(self) -> float: ...

    def take(self, now: float, amount: float = 1.0) -> bool: ...

    def positive(self, now: float) -> bool: ...

    def charge(self, now: float, amount: float) -> None: ...

    def remaining(self, now: float) -> int: ...

    def wait_s(self, now: float, amount: float = 1.0) -> float: ...

    def reset_s(self, now: float) -> float: ...

    def resize(self, capacity: float, per_s: float, now: float) -> None: ...


class SharedBuckets(Protocol):
    """Buckets that every replica sharing a store counts in (security/postgres.py)."""

    def bucket(self, key_id: str, kind: str, capacity: float, per_s: float, now: float) -> Bucket:
        """The bucket `kind` ("requests", "tokens_minute", "tokens_day", "frames") of a key; made full if new."""
        ...


class SharedSessions(Protocol):
    """Open-session counts that every replica sharing a store counts in (security/postgres.py)."""

    def open(self, key_id: str, limit: int) -> tuple[str | None, int]:
        """A lease for one more session of the key (None when `limit` are open), and how many are open."""
        ...

    def close(self, lease: str) -> None: ...

    def renew(self, leases: list[str]) -> None:
        """Keep these leases counting (a front's open sessions); leases not renewed expire."""
        ...


def duration(seconds: float) -> str:
    """OpenAI's format for x-ratelimit-reset-*: "1s", "6m0s", "1h2m3s", "20ms"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class RateLimited(TooManyRequests):
    """429 for a key over one of its limits; `Retry-After` (whole seconds) and `retry-after-ms`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=math.ceil(retry_after_s))
        self.retry_after_s = retry_after_s
        self.headers["retry-after-ms"] = str(max(1, math.ceil(retry_after_s * 1000)))


@dataclass(slots=True)
class _KeyState:
    limits: Limits
    requests: Bucket | None = None
    tokens_minute: Bucket | None = None
    tokens_day: Bucket | None = None
    frames: Bucket | None = None
    sessions: int = 0


_PER_S = {"requests": 60.0, "tokens_minute": 60.0, "tokens_day": 86400.0, "frames": 1.0}
_LIMIT_OF = {"requests": "rpm", "tokens_minute": "tpm", "tokens_day": "tpd", "frames": "fps"}


class RateLimits:
    """The buckets of every key seen by this process. Keys without limits (and `--dev`'s anonymous) cost nothing.

    With `shared`, the buckets are kept there (one statement per take, check or charge) instead of here,
    and with `sessions` a key's open sessions are counted there too.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBuckets | None = None,
        sessions: SharedSessions | None = None,
    ) -> None:
        self.clock = clock
        self.shared = shared
        self._sessions = sessions  # with a shared store: open sessions are leases there (`--max-sessions`)
        self._leases: set[str] = set()
        self._keys: dict[str, _KeyState] = {}

    def _bucket(self, key_id: str, kind: str, capacity: float, per_s: float, now: float) -> Bucket:
        if self.shared is None:
            return TokenBucket(capacity, per_s, now)
        return self.shared.bucket(key_id, kind, capacity, per_s, now)

    def _state(self, key: ApiKey, now: float) -> _KeyState:
        state = self._keys.get(key.id)
        if state is None:
            state = self._keys[key.id] = _KeyState(Limits())
        if state.limits == key.limits:
            return state
        state.limits = key.limits  # new, or changed by `keys update`: resize, keeping what was used
        for name, attribute in _LIMIT_OF.items():
            limit = getattr(key.limits, attribute)
            bucket: Bucket | None = getattr(state, name)
            if not limit:
                if bucket is not None:
                    setattr(state, name, None)
            elif bucket is None:
                setattr(state, name, self._bucket(key.id, name, limit, limit / _PER_S[name], now))
            elif bucket.capacity != limit:
                bucket.resize(limit, limit / _PER_S[name], now)
        return state

    # -- requests --------------------------------------------------------------------------

    def admit_request(self, key: ApiKey, what: str = "requests") -> None:
        """One request (or session message) of the key; `RateLimited` if its rpm bucket is empty."""
        if not key.limits.rpm:
            return
        now = self.clock()
        bucket = self._state(key, now).requests
        assert bucket is not None
        if not bucket.take(now):
            wait = bucket.wait_s(now)
            raise RateLimited(
                f"API key {key.id} is over its limit of {key.limits.rpm} requests per minute ({what}); "
                f"retry after {wait:.1f} s (Retry-After), send fewer, or ask for a higher limit "
                f"(`xrserve keys update {key.id} --rpm N`)",
                wait,
            )

    # -- LLM tokens ------------------------------------------------------------------------

    def check_tokens(self, key: ApiKey) -> None:
        """Before a generation: `RateLimited` unless the key's token budgets (minute and day) are positive."""
        limits = key.limits
        if not (limits.tpm or limits.tpd):
            return
        now = self.clock()
        state = self._state(key, now)
        for bucket, limit, per in ((state.tokens_minute, limits.tpm, "minute"), (state.tokens_day, limits.tpd, "day")):
            if bucket is not None and not bucket.positive(now):
                wait = bucket.wait_s(now, amount=1.0)
                raise RateLimited(
                    f"API key {key.id} has used its {limit} LLM tokens per {per} (prompt + completion); "
                    f"retry after {duration(wait)} (Retry-After), ask for fewer tokens (max_tokens), or ask for "
                    f"a higher limit (`xrserve keys update {key.id} --{'tpm' if per == 'minute' else 'tpd'} N`)",
                    wait,
                )

    def charge_tokens(self, key: ApiKey, tokens: int) -> None:
        """After a generation: its prompt + completion tokens come off both budgets."""
        if not (key.limits.tpm or key.limits.tpd) or tokens <= 0:
            return
        now = self.clock()
        state = self._state(key, now)
        for bucket in (state.tokens_minute, state.tokens_day):
            if bucket is not None:
                bucket.charge(now, tokens)

    # -- camera frames and sessions ----------------------------------------------------------

    def admit_frame(self, key: ApiKey) -> bool:
        """Whether one more camera frame of the key may be computed now (its fps bucket)."""
        if not key.limits.fps:
            return True
        now = self.clock()
        bucket = self._state(key, now).frames
        assert bucket is not None
        return bucket.take(now)

    def open_session(self, key: ApiKey) -> Callable[[], None]:
        """Count one more open session of the key; returns the function that counts it closed.

        `RateLimited` if the key already has `max_sessions` open in this process.
        """
        state = self._state(key, self.clock())
        limit = key.limits.max_sessions
        lease, open_now = None, state.sessions
        if limit and self._sessions is not None:  # counted with every replica's sessions
            lease, open_now = self._sessions.open(key.id, limit)
        if limit and (lease is None if self._sessions is not None else state.sessions >= limit):
            raise RateLimited(
                f"API key {key.id} already has {open_now} session(s) open, its limit is {limit}; close one "
                f"(or wait for it to end) before opening another, or ask for a higher limit "
                f"(`xrserve keys update {key.id} --max-sessions N`)",
                1.0,
            )
        state.sessions += 1
        if lease is not None:
            self._leases.add(lease)
        closed = False

        def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                state.sessions -= 1
                if lease is not None and self._sessions is not None:
                    self._leases.discard(lease)
                    self._sessions.close(lease)

        return close

    def renew_sessions(self) -> None:
        """Keep this process's open sessions counting in the shared store (called every few seconds)."""
        if self._sessions is not None and self._leases:
            self._sessions.renew(sorted(self._leases))

    # -- what clients are told ---------------------------------------------------------------

    def headers(self, key: ApiKey) -> list[tuple[bytes, bytes]]:
        """`x-ratelimit-*` headers as OpenAI sends them, for a key with a request or token limit."""
        limits = key.limits
        if not (limits.rpm or limits.tpm or limits.tpd):
            return []
        now = self.clock()
        state = self._state(key, now)
        out: list[tuple[bytes, bytes]] = []
        tokens = state.tokens_minute or state.tokens_day
        for kind, bucket in (("requests", state.requests), ("tokens", tokens)):
            if bucket is None:
                continue
            out += [
                (f"x-ratelimit-limit-{kind}".encode(), str(int(bucket.capacity)).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(bucket.remaining(now)).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), duration(bucket.reset_s(now)).encode()),
            ]
        return out
