"""Where replicas say who they are and what they measured: per-replica status and metrics.

Serve routes a handle call to one replica of its choosing, so a front cannot ask each replica
in turn. Instead every replica reports to one named actor every `REPORT_EVERY_S` seconds: its
id, model, version, process, node, whether its model is ready, and its Prometheus series. The
front reads the board for `/metrics` (each replica's series with a `replica` label) and for
`xrserve ray status`; a replica silent for `STALE_AFTER_S` is shown as lost and then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import ray

BOARD_NAME = "xrserve-replica-board"
REPORT_EVERY_S = 2.0
STALE_AFTER_S = 30.0


@ray.remote(num_cpus=0)
class ReplicaBoard:
    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, report: dict[str, Any]) -> None:
        self.reports[replica] = {**report, "seen": time.time()}

    def leave(self, replica: str) -> None:
        self.reports.pop(replica, None)

    def read(self) -> list[dict[str, Any]]:
        now = time.time()
        for replica in [r for r, report in self.reports.items() if now - report["seen"] > STALE_AFTER_S]:
            del self.reports[replica]
        return [{**report, "age_s": now - report["seen"]} for report in self.reports.values()]


def board() -> Any:
    """The board of this Ray namespace, created by whoever asks first."""
    return ReplicaBoard.options(name=BOARD_NAME, get_if_exists=True, lifetime="detached").remote()  # type: ignore[attr-defined]


async def report_forever(replica: str, describe: Any) -> None:
    """A replica's reporting loop: `describe()` gives what to report; a board that is away is retried."""
    target = board()
    while True:
        with contextlib.suppress(Exception):  # the board restarting must not take the replica down
            await target.report.remote(replica, describe())
        await asyncio.sleep(REPORT_EVERY_S)
