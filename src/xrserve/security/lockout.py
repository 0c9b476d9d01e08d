"""Back-off for guessed keys: too many failed attempts lock a key id, or a client address, for a while.

Only tokens shaped like an xrserve key (`xrs_...`) count: they are the only ones that could
ever be right. A missing key, a placeholder like `EMPTY` (which `--dev` lets through) or another
scheme is refused with 401 and never counts. Within `window_s`, `key_failures` failed attempts
for one key id lock that id, and `address_failures` from one address lock that address: every
further attempt is a 429 with `Retry-After`, the right secret included, until the lock ends.
Each lock of the same subject lasts twice the one before (`first_lock_s`, 2x, 4x, ... up to
`max_lock_s`); a success with the key id forgets its failures, and a subject with no failure
for `window_s + max_lock_s` is forgotten.

Without a shared store the state is in memory, per server process. With one (`--database`:
`SharedLockouts`, a PostgreSQL table) every replica counts a subject's failures in the same row
and a lock made on one replica holds on all: each replica reads the locks in force every second
(`follow`), so `check` stays a dictionary look-up with no round trip per request. A success
forgets a key id's failures where they were seen on this replica.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from xrserve.core.errors import TooManyRequests

#: `XRSERVE_LOCKOUT`, e.g. "key=10,address=30,window=60,first=15,max=300" (any subset)
ENV = "XRSERVE_LOCKOUT"
_FIELDS = {
    "key": "key_failures",
    "address": "address_failures",
    "window": "window_s",
    "first": "first_lock_s",
    "max": "max_lock_s",
}
#: subjects kept at most; past this, those not locked are forgotten first
MAX_SUBJECTS = 50_000


@dataclass(frozen=True)
class LockoutPolicy:
    key_failures: int = 10  # failed attempts for one key id within the window that lock it
    address_failures: int = 30  # ... from one client address (a NAT may hide many people behind one)
    window_s: float = 60.0
    first_lock_s: float = 15.0  # the first lock; each further lock of the same subject doubles it
    max_lock_s: float = 300.0

    def __post_init__(self) -> None:
        if min(self.key_failures, self.address_failures) < 1 or not 0 < self.first_lock_s <= self.max_lock_s:
            raise ValueError(f"{ENV}: thresholds must be at least 1 and 0 < first <= max, not {self}")
        if not self.window_s > 0:
            raise ValueError(f"{ENV}: the window must be positive, not {self.window_s}")

    @classmethod
    def parse(cls, text: str) -> LockoutPolicy:
        """Read "key=10,address=30,window=60,first=15,max=300": any subset; the rest keep their defaults."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition("=")
            if name.strip() not in _FIELDS:
                raise ValueError(f"{ENV}: '{item}' is not one of {', '.join(f'{n}=N' for n in _FIELDS)}")
            try:
                values[_FIELDS[name.strip()]] = float(value)
            except ValueError:
                raise ValueError(f"{ENV}: '{item}' needs a number after '='") from None
        for count in ("key_failures", "address_failures"):
            if count in values:
                values[count] = int(values[count])
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls) -> LockoutPolicy:
        return cls.parse(os.environ.get(ENV, ""))


class LockedOut(TooManyRequests):
    """429: a key id or an address is locked; `subject` names which ("key id 1a2b3c4d", "address 10.0.0.7")."""

    def __init__(self, message: str, subject: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.subject = subject


@dataclass(slots=True)
class _Subject:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    locks: int = 0  # locks so far: the next lasts first_lock_s * 2**locks
    last: float = 0.0  # the newest failure


class SharedLockouts(Protocol):
    """Failed attempts and locks that every replica sharing a store counts in (security/postgres.py)."""

    def failed(self, kind: str, name: str, threshold: int, policy: LockoutPolicy) -> float:
        """Count one failure of the subject; the seconds it is now locked for (0: not locked)."""
        ...

    def forget(self, kind: str, name: str) -> None: ...

    def locked(self) -> dict[tuple[str, str], float]:
        """Every subject locked now, with the seconds its lock has left."""
        ...


class Lockouts:
    """Failed attempts per key id and per client address; `check` raises the 429 of a locked one."""

    def __init__(
        self, policy: LockoutPolicy, clock: Callable[[], float] = time.monotonic, shared: SharedLockouts | None = None
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.shared = shared
        self._subjects: dict[tuple[str, str], _Subject] = {}

    def follow(self, locked: dict[tuple[str, str], float]) -> None:
        """Take the locks in force in the shared store (read off the event loop every second)."""
        now = self.clock()
        for subject_name, left in locked.items():
            subject = self._subjects.get(subject_name)
            if subject is None:
                subject = self._subjects[subject_name] = _Subject(last=now)
            subject.locked_until = max(subject.locked_until, now + left)

    def check(self, key_id: str | None, address: str | None) -> None:
        """429 if the key id or the address is locked now."""
        now = self.clock()
        for kind, name in (("key", key_id), ("address", address)):
            subject = self._subjects.get((kind, name)) if name else None
            if subject is not None and subject.locked_until > now:
                left = subject.locked_until - now
                who = f"the API key id {name}" if kind == "key" else f"your address {name}"
                raise LockedOut(
                    f"too many failed API key attempts for {who}: locked for {math.ceil(left)} s more. "
                    f"Every attempt until then is refused, even with the right secret; retry after Retry-After "
                    f"seconds with the right key",
                    f"{kind} id {name}" if kind == "key" else f"address {name}",
                    retry_after_s=math.ceil(left),
                )

    def failed(self, key_id: str | None, address: str | None) -> None:
        now = self.clock()
        policy = self.policy
        for kind, name, threshold in (
            ("key", key_id, policy.key_failures),
            ("address", address, policy.address_failures),
        ):
            if not name:
                continue
            if self.shared is not None:  # counted in the row every replica shares, by the database's clock
                left = self.shared.failed(kind, name, threshold, policy)
                if len(self._subjects) >= MAX_SUBJECTS:
                    self._prune(now)
                seen = self._subjects.setdefault((kind, name), _Subject())
                seen.last = now
                if left > 0:
                    seen.locked_until = now + left
                continue
            subject = self._subjects.get((kind, name))
            if subject is None:
                if len(self._subjects) >= MAX_SUBJECTS:
                    self._prune(now)
                subject = self._subjects[(kind, name)] = _Subject()
            elif now - subject.last > policy.window_s + policy.max_lock_s and subject.locked_until <= now:
                subject.locks = 0  # quiet long enough: a fresh start
            subject.last = now
            failures = subject.failures
            failures.append(now)
            while failures and failures[0] <= now - policy.window_s:
                failures.popleft()
            if len(failures) >= threshold:
                period = min(policy.max_lock_s, policy.first_lock_s * 2**subject.locks)
                subject.locked_until = now + period
                subject.locks += 1
                failures.clear()

    def succeeded(self, key_id: str) -> None:
        """The right secret for a key id (not locked): its failures are forgotten. An address's are not."""
        if self._subjects.pop(("key", key_id), None) is not None and self.shared is not None:
            self.shared.forget("key", key_id)  # only where failures were seen here: no round trip per request

    def _prune(self, now: float) -> None:
        quiet = self.policy.window_s + self.policy.max_lock_s
        for name, subject in list(self._subjects.items()):
            if subject.locked_until <= now and now - subject.last > quiet:
                del self._subjects[name]
        if len(self._subjects) >= MAX_SUBJECTS:  # under a flood: keep only what is locked
            for name, subject in list(self._subjects.items()):
                if subject.locked_until <= now:
                    del self._subjects[name]
