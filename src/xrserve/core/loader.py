"""Bringing the repository into the scheduler: at startup, and on a load request.

Loading is where a user first meets mistakes, so every failure is kept with its
reason (file, field, problem) and shown by `/v2/repository/index` and
`xrserve models`, while everything that can load does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from xrserve.core.repository import RepositorySource, scan_repository
from xrserve.core.scheduler import Scheduler

log = logging.getLogger("xrserve.loader")


@dataclass
class RepositoryState:
    """What is not loaded and why, by model name."""

    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, reason: str) -> None:
        self.problems.setdefault(name, []).append(reason)


def _model_name_of(path: str, fallback: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return parts[-3] if len(parts) >= 3 and parts[-1] == "model.toml" else fallback


async def load_all(scheduler: Scheduler, source: RepositorySource, state: RepositoryState, console: Console) -> None:
    scan = scan_repository(source)
    for error in scan.errors:
        state.add(_model_name_of(error.path, error.path), str(error))
        console.print(f"[yellow]skipped[/]: {escape(str(error))}")
    configs = [c for c in scan.configs if source.wanted(c)]
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("loading models", total=len(configs))
        for config in configs:
            progress.update(task, description=f"loading {config.name} v{config.version} ({config.runtime})")
            try:
                await scheduler.load(config)
            except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
                state.add(config.name, f"version {config.version} failed to load: {exc}")
                console.print(f"[red]failed[/]: {config.name} v{config.version}: {escape(str(exc))}")
            progress.advance(task)
        progress.update(task, description="models loaded")


async def reload_model(scheduler: Scheduler, source: RepositorySource, state: RepositoryState, name: str) -> list[str]:
    """Load new versions of one model from the repository and drop versions that are gone.

    Versions already serving stay up, so a running client never sees a gap.
    """
    scan = scan_repository(source)
    state.problems.pop(name, None)
    for error in scan.errors:
        if _model_name_of(error.path, "") == name:
            state.add(name, str(error))
    configs = {c.version: c for c in scan.configs if c.name == name}
    loaded = scheduler.models.get(name, {})
    added = []
    for version, config in sorted(configs.items(), key=lambda item: int(item[0])):
        if version in loaded and loaded[version].ready:
            continue
        if version in loaded:
            await scheduler.unload(name, version)
        try:
            await scheduler.load(config)
            added.append(version)
        except Exception as exc:  # noqa: BLE001
            state.add(name, f"version {version} failed to load: {exc}")
    for version in [v for v in list(scheduler.models.get(name, {})) if v not in configs]:
        await scheduler.unload(name, version)
    return added
