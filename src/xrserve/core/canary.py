"""Canary releases: a share of the requests without a version goes to a new version, judged as it serves.

`Canaries` holds at most one canary per model (`xrserve models canary NAME VERSION --percent P`).
`Scheduler.resolve` asks it, only for requests that name no version:

- a request with an `affinity` (an XR session's id; an OIP client's `parameters.session`) is
  hashed with the canary version: the same session always lands on the same version for the
  canary's life, in every replica, with no state kept per session;
- any other request takes the next step of a per-model error diffusion: the credit grows by P
  per request and each time it passes 100 the request goes to the canary, so exactly P of
  every 100 go there (not a coin flip: 20% of 1,000 is 200).

Every request to the canary or the stable version while it runs is observed (failed or not,
how long it took). Over the last `window_s` seconds, once the canary has `min_requests`, the
canary is ended automatically when its error rate exceeds the stable version's by more than
`max_error_rate_margin`, or its p99 latency is above both `min_p99_ms` and `max_p99_ratio`
times the stable version's (the `[canary]` table of the canary version's model.toml).
`on_end` is told why (the server writes the audit record).

Without a shared store the state is in memory: a restart ends every canary (traffic goes back
to the stable version, which starting a canary promoted). With one (`--database`: a PostgreSQL
table, `CanaryStore`) every replica runs the same canaries: a start, an end by an operator and an
automatic rollback are written through, and each replica follows the table every second
(`follow`). Each replica judges the canary on the requests it serves itself, and the first to
see it worse than stable rolls it back for all of them.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from xrserve.core.config import CanaryDecl
from xrserve.core.metrics import Metrics

log = logging.getLogger("xrserve.canary")

P99_EVERY_S = 0.25  # the p99 comparison sorts the window: at most this often


@dataclass(slots=True)
class _Window:
    """One version's requests over the last `window_s`: (monotonic time, failed, seconds)."""

    samples: deque[tuple[float, bool, float]] = field(default_factory=deque)
    errors: int = 0

    def add(self, now: float, failed: bool, seconds: float, window_s: float) -> None:
        self.samples.append((now, failed, seconds))
        self.errors += failed
        self.trim(now, window_s)

    def trim(self, now: float, window_s: float) -> None:
        samples = self.samples
        while samples and samples[0][0] < now - window_s:
            self.errors -= samples.popleft()[1]

    @property
    def error_rate(self) -> float:
        return self.errors / len(self.samples) if self.samples else 0.0

    def p99(self) -> float:
        latencies = sorted(s for _, _, s in self.samples)
        return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0.0


class Canary:
    """VERSION of NAME takes PERCENT of the requests without a version; STABLE takes the rest."""

    def __init__(self, name: str, version: str, stable: str, percent: float, policy: CanaryDecl) -> None:
        self.name, self.version, self.stable, self.percent, self.policy = name, version, stable, percent, policy
        self.started = time.time()
        self._credit = 0.0
        self._salt = f"{name}/{version}/"
        self._windows = {version: _Window(), stable: _Window()}
        self._next_p99 = 0.0

    def pick(self, affinity: str | None) -> str:
        """The version a request without one goes to."""
        if affinity is not None:  # sticky: the same session, the same version, for the canary's life
            bucket = zlib.crc32((self._salt + affinity).encode()) % 10_000
            return self.version if bucket < self.percent * 100 else self.stable
        self._credit += self.percent
        if self._credit >= 100:
            self._credit -= 100
            return self.version
        return self.stable

    def watches(self, version: str) -> bool:
        return version in self._windows

    def observe(self, version: str, failed: bool, seconds: float) -> str | None:
        """Count one request; a reason to end the canary when the canary version looks worse than stable."""
        window = self._windows.get(version)
        if window is None:
            return None
        now = time.monotonic()
        policy = self.policy
        window.add(now, failed, seconds, policy.window_s)
        if version != self.version:
            return None
        canary, stable = window, self._windows[self.stable]
        stable.trim(now, policy.window_s)
        count = len(canary.samples)
        if count < policy.min_requests:
            return None
        span = f"over {count} requests in {policy.window_s:g} s"
        if canary.error_rate > stable.error_rate + policy.max_error_rate_margin:
            return f"error rate {canary.error_rate:.2f} vs {stable.error_rate:.2f} {span}"
        if now >= self._next_p99 and len(stable.samples) >= policy.min_requests:
            self._next_p99 = now + P99_EVERY_S
            mine, theirs = canary.p99(), stable.p99()
            if mine * 1000 > policy.min_p99_ms and mine > policy.max_p99_ratio * theirs:
                return f"p99 latency {mine * 1000:.1f} ms vs {theirs * 1000:.1f} ms {span}"
        return None

    def state(self) -> dict[str, object]:
        canary, stable = self._windows[self.version], self._windows[self.stable]
        return {
            "name": self.name,
            "version": self.version,
            "stable_version": self.stable,
            "percent": self.percent,
            "started": self.started,
            "window_s": self.policy.window_s,
            "canary_requests": len(canary.samples),
            "canary_error_rate": round(canary.error_rate, 4),
            "stable_requests": len(stable.samples),
            "stable_error_rate": round(stable.error_rate, 4),
        }


#: a running canary as the shared store keeps it: (version, stable version, percent)
CanaryRow = tuple[str, str, float]


class CanaryStore(Protocol):
    """Canaries kept where every replica reads them (security/postgres.py)."""

    def load(self) -> dict[str, CanaryRow]: ...

    def save(self, name: str, row: CanaryRow) -> None: ...

    def delete(self, name: str) -> None: ...


class Canaries:
    """At most one canary per model; `on_end(canary, reason)` hears of every automatic rollback."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.active: dict[str, Canary] = {}  # read on the hot path: empty unless a canary runs
        self.on_end: Callable[[Canary, str], None] | None = None
        self.store: CanaryStore | None = None  # set by the server with --database

    def start(self, name: str, version: str, stable: str, percent: float, policy: CanaryDecl) -> Canary:
        canary = self._start(name, version, stable, percent, policy)
        if self.store is not None:
            self.store.save(name, (version, stable, percent))
        return canary

    def follow(self, rows: dict[str, CanaryRow], policy_of: Callable[[str, str], CanaryDecl | None]) -> None:
        """Run the canaries the shared store lists, and no others (on the event loop, between requests).

        `policy_of(name, version)` is the canary version's `[canary]` table, None where that version
        is not loaded here (its canary then waits until it is).
        """
        for name in [n for n in self.active if n not in rows]:
            self._end(name)  # ended elsewhere: by an operator or another replica's rollback
        for name, (version, stable, percent) in rows.items():
            current = self.active.get(name)
            if current is not None and (current.version, current.stable, current.percent) == (version, stable, percent):
                continue
            policy = policy_of(name, version)
            if policy is not None:
                self._start(name, version, stable, percent, policy)

    def _start(self, name: str, version: str, stable: str, percent: float, policy: CanaryDecl) -> Canary:
        previous = self.active.get(name)
        if previous is not None:
            self._clear_gauge(previous)
        canary = self.active[name] = Canary(name, version, stable, percent, policy)
        self.metrics.canary_percent.labels(name, version).set(percent)
        self.metrics.canary_percent.labels(name, stable).set(100 - percent)
        log.info("canary: %s version %s takes %g%% (stable: version %s)", name, version, percent, stable)
        return canary

    def end(self, name: str) -> Canary | None:
        """Stop splitting NAME's traffic; every request without a version goes to the default again."""
        canary = self._end(name)
        if self.store is not None:
            self.store.delete(name)
        return canary

    def _end(self, name: str) -> Canary | None:
        canary = self.active.pop(name, None)
        if canary is not None:
            self._clear_gauge(canary)
        return canary

    def observe(self, canary: Canary, version: str, failed: bool, seconds: float) -> None:
        reason = canary.observe(version, failed, seconds)
        if reason is None or self.active.get(canary.name) is not canary:
            return
        self.end(canary.name)
        self.metrics.canary_rollbacks.labels(canary.name, canary.version).inc()
        log.warning("canary rollback: %s version %s: %s", canary.name, canary.version, reason)
        if self.on_end is not None:
            try:
                self.on_end(canary, reason)
            except Exception:  # noqa: BLE001 - the request that tipped the verdict is not the one to fail
                log.exception("canary rollback of %s version %s: could not be recorded", canary.name, canary.version)

    def _clear_gauge(self, canary: Canary) -> None:
        self.metrics.canary_percent.labels(canary.name, canary.version).set(0)
        self.metrics.canary_percent.labels(canary.name, canary.stable).set(100)
