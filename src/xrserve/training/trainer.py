"""The training loop every recipe shares: progress, checkpoints and resume, the report, the export.

A checkpoint is written (atomically) after every epoch with the recipe's state, the
history and the data hash. Running the same command again resumes after the last
finished epoch; a checkpoint made from other data or another recipe is refused rather
than silently mixed in.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from xrserve.training.data import DataError
from xrserve.training.recipes import recipes
from xrserve.training.report import curves_plot, write_report

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunResult:
    run_dir: Path
    export_dir: Path
    report: dict[str, Any]


def default_out(recipe: str) -> Path:
    return Path("runs") / recipe


def train(
    recipe_name: str,
    *,
    data: Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    limit: int | None = None,
    steps: int | None = None,
    threads: int | None = None,
    restart: bool = False,
    console: Console | None = None,
) -> RunResult:
    """Train one recipe into `out` (resuming from its checkpoint), evaluate, report and export.

    `limit` keeps a slice of the data (rows, or terrain tiles) and `steps` caps the steps
    per epoch: both are for quick runs and tests. `threads` sets PyTorch's intra-op threads
    (on a machine shared with other work, 1 is often faster than 2).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    console = console or Console(stderr=True)
    known = recipes()
    if recipe_name not in known:
        raise DataError(f"unknown recipe '{recipe_name}'; the recipes are: {', '.join(known)}")
    recipe = known[recipe_name]()
    epochs = epochs or recipe.default_epochs
    run_dir = Path(out or default_out(recipe_name))
    run_dir.mkdir(parents=True, exist_ok=True)
    data_info = recipe.prepare(data, seed, limit)
    recipe.build(seed)

    steps = min(steps or recipe.steps_per_epoch(), recipe.steps_per_epoch())
    checkpoint_path = run_dir / CHECKPOINT
    history: list[dict[str, float]] = []
    start, spent = 0, 0.0
    if checkpoint_path.exists() and not restart:
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        mine = {
            "recipe": recipe_name,
            "seed": seed,
            "data_hash": data_info["data_hash"],
            "limit": limit,
            "steps": steps,
        }
        theirs = {k: state.get(k) for k in mine}
        if mine != theirs:
            changed = ", ".join(k for k in mine if mine[k] != theirs[k])
            raise DataError(
                f"{checkpoint_path} was made with a different {changed}; pass --restart to start over, or another --out"
            )
        recipe.load_state_dict(state["recipe_state"])
        history, start, spent = state["history"], state["epoch"], state["train_seconds"]
        console.print(f"resuming {recipe_name} from {checkpoint_path} after epoch {start} of {epochs}")

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{recipe_name}", total=epochs * steps, completed=start * steps)
            for epoch in range(start, epochs):
                began = time.monotonic()
                rng = np.random.default_rng([seed, epoch])  # same batches whether resumed or not
                torch.manual_seed(seed * 100_003 + epoch)
                sums: dict[str, float] = {}
                for step in range(steps):
                    for key, value in recipe.train_step(rng).items():
                        sums[key] = sums.get(key, 0.0) + value
                    progress.update(
                        task,
                        advance=1,
                        description=f"{recipe_name} epoch {epoch + 1}/{epochs} "
                        + " ".join(f"{k} {v / (step + 1):.4f}" for k, v in sums.items()),
                    )
                row = {"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()}, **recipe.validate()}
                history.append(row)
                spent += time.monotonic() - began
                _save_checkpoint(
                    checkpoint_path,
                    {
                        "recipe": recipe_name,
                        "seed": seed,
                        "data_hash": data_info["data_hash"],
                        "limit": limit,
                        "steps": steps,
                        "epoch": epoch + 1,
                        "history": history,
                        "train_seconds": spent,
                        "recipe_state": recipe.state_dict(),
                    },
                )
    except KeyboardInterrupt:
        console.print(
            f"interrupted; the last finished epoch is saved in {checkpoint_path}: run the same command again to resume"
        )
        raise

    console.print(f"evaluating {recipe_name} on the test split")
    recipe.console = console
    metrics = recipe.evaluate(run_dir)
    report: dict[str, Any] = {
        "recipe": recipe_name,
        "model": recipe.name,
        "seed": seed,
        "epochs": epochs,
        "limit": limit,
        "steps_per_epoch": steps,
        "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "train_seconds": round(spent, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": data_info,
        "history": history,
        "metrics": metrics,
        "headline": recipe.headline(metrics),
        "plots": {"curves": curves_plot(run_dir / "curves.png", history, recipe_name)},
    }
    write_report(run_dir, report)
    export_dir = run_dir / "model"
    if export_dir.exists():
        shutil.rmtree(export_dir)
    export_dir.mkdir()
    recipe.export(export_dir, report)
    for name in ("report.json", "report.md", *report["plots"].values(), *metrics.get("plots", {}).values()):
        shutil.copy(run_dir / name, export_dir / name)
    console.print(f"[bold]{recipe_name}[/]: {report['headline']}; {spent:.1f} s of training; report in {run_dir}")
    return RunResult(run_dir, export_dir, report)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)
