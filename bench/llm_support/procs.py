"""Server processes for the benches and the tests: started in their own sessions, ended with their whole group.

`start_xrserve` is the one "start xrserve and wait until it is ready": the benches
(`bench/*.py`, with bench/ on sys.path, as `llm_support.procs`) and the tests
(`tests/conftest.py`, from the repository root, as `bench.llm_support.procs`) both call it.
It lives here, beside the process start and end it is made of, rather than in the
package, because only the repository's own tests and benches start servers this way.

Also the CPU accounting that tells a measured window apart from one that ran beside
someone else's compiler or test suite (this machine has 2 cores).
"""

from __future__ import annotations

import atexit
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_started: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    cmd: list[str],
    log_path: Path,
    env: dict[str, str | None] | None = None,
    cwd: Path | None = None,
    pipes: bool = False,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """Start `cmd` as the leader of a new session (and so of a new process group).

    The environment is ours with `env` on top (a None value removes that variable).
    stderr (and stdout unless `pipes`) go to `log_path`; with `pipes`, stdin and stdout
    are text pipes for a line protocol. `preexec` runs in the child before the command (e.g. to set
    a resource limit).
    """
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    log = open(log_path, "wb")
    process = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stdout=subprocess.PIPE if pipes else log,
        stderr=log,
        text=pipes,
        bufsize=1 if pipes else -1,
        env=environment,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=preexec,
    )
    log.close()
    _started.append(process)
    return process


def wait_ready(process: subprocess.Popen, url: str, timeout: float, interval: float = 0.25) -> str | None:
    """Poll `url` until it answers 200: None then, else why not (the process exited, or time ran out)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode} before it was ready"
        try:  # a server started with --tls-cert: its own certificate is what is being waited for, not checked
            if httpx.get(url, timeout=2.0, verify=False).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return f"not ready within {timeout:.0f} s"


def start_xrserve(
    args: list[str],
    log_path: Path,
    env: dict[str, str | None] | None = None,
    timeout: float = 180.0,
    preexec: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen, str]:
    """`python -m xrserve serve ARGS` on a free loopback port, returned once `/v2/health/ready` says 200.

    Returns the process and its base URL. When the server exits first or is not ready
    within `timeout`, it is ended and RuntimeError carries the end of its log.
    """
    port = free_port()
    command = [sys.executable, "-m", "xrserve", "serve", "--port", str(port), *args]
    process = start(command, log_path, env={"PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}, preexec=preexec)
    url = f"{'https' if '--tls-cert' in args else 'http'}://127.0.0.1:{port}"
    failure = wait_ready(process, f"{url}/v2/health/ready", timeout)
    if failure:
        end(process)
        log = Path(log_path).read_text(errors="replace")
        raise RuntimeError(f"xrserve {failure} ({' '.join(command)}); the end of {log_path}:\n{log[-6000:]}")
    return process, url


def end(process: subprocess.Popen) -> None:
    """SIGTERM the process group (the pids collected first), wait, then SIGKILL what is left."""
    pids = tree_pids(process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    _signal_group(process.pid, signal.SIGKILL)
    for pid in pids | tree_pids(process.pid):  # children forked while it was ending too
        _signal(pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait()
    if process in _started:
        _started.remove(process)


@atexit.register
def end_all() -> None:
    """Whatever happens to the bench (an exception, Ctrl-C), no server outlives it."""
    for process in list(_started):
        end(process)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# -- CPU accounting ---------------------------------------------------------------------------


def _proc_stats() -> dict[int, list[str]]:
    """Fields of /proc/<pid>/stat after the command name, for every live process."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                raw = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = raw[raw.rfind(")") + 2 :].split()
    return stats


def tree_pids(root: int, stats: dict[int, list[str]] | None = None) -> set[int]:
    """The root, its descendants, and anything still in its session (re-parented children)."""
    stats = stats if stats is not None else _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    found |= {pid for pid, fields in stats.items() if int(fields[3]) == root}
    return found


def trees_cpu_s(roots: list[int], stats: dict[int, list[str]] | None = None) -> float:
    """User + system CPU seconds of the live processes of these trees."""
    stats = stats if stats is not None else _proc_stats()
    pids = set().union(*(tree_pids(r, stats) for r in roots)) if roots else set()
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in pids if p in stats) / CLK_TCK


def system_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (all of /proc/stat but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def own_cpu_s() -> float:
    """CPU of this process and of the children it has reaped (a load generator like wrk): ours, not foreign."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class CpuWindow:
    """CPU over a stretch of time: the measured server's (`own`), all of ours, and everyone else's.

    `ours` are the roots of every process tree this bench started (all targets are up at
    once); with this client they are not "foreign". Foreign load is what the whole
    machine did (/proc/stat) minus all of that.
    """

    def __init__(self, ours: list[int], own: int | None = None) -> None:
        self.ours, self.own = [p for p in ours if p], own
        self.started = time.monotonic()
        self._before = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        stats = _proc_stats()
        return (
            trees_cpu_s([self.own] if self.own else [], stats),
            trees_cpu_s(self.ours, stats),
            system_busy_s(),
            own_cpu_s(),
        )

    def close(self) -> dict[str, float]:
        server, ours, busy, client = (a - b for a, b in zip(self._sample(), self._before))
        seconds = max(time.monotonic() - self.started, 1e-9)
        return {
            "seconds": seconds,
            "server_cores": server / seconds,
            "client_cores": client / seconds,
            "foreign_cores": max(busy - ours - client, 0.0) / seconds,
        }


def foreign_cores(ours: list[int], seconds: float) -> float:
    window = CpuWindow(ours)
    time.sleep(seconds)
    return window.close()["foreign_cores"]


class QuietGate:
    """Holds each measurement until other processes use under `cores`, bounded per window and per run."""

    def __init__(self, cores: float = 0.25, budget_s: float = 180.0, per_window_s: float = 30.0) -> None:
        self.cores = cores
        self.budget_s = budget_s
        self.per_window_s = per_window_s

    def wait(self, ours: list[int], on_wait=None) -> float:
        started = time.monotonic()
        limit = min(self.per_window_s, max(self.budget_s, 0.0))
        if limit <= 0:
            return 0.0
        while (busy := foreign_cores(ours, 0.5)) >= self.cores and time.monotonic() - started < limit:
            if on_wait is not None:
                on_wait(busy)
        self.budget_s -= time.monotonic() - started
        return busy

    def wait_shown(self, ours: list[int], progress) -> float:
        """`wait`, with a line on a rich `Progress` saying how busy the machine is while it holds."""
        task = None

        def show(busy: float) -> None:
            nonlocal task
            text = f"  waiting for other processes to go quiet ({busy:.2f} cores busy)"
            task = task if task is not None else progress.add_task(text, total=None)
            progress.update(task, description=text)

        try:
            return self.wait(ours, show)
        finally:
            if task is not None:
                progress.remove_task(task)
