"""`xrserve train`: the command line of the training pipeline (kept here so `xrserve --help` stays fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xrserve.training.recipes import RECIPE_NAMES


def train_command(
    recipe: Annotated[str, typer.Argument(help=f"One of: {', '.join(RECIPE_NAMES)}.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Training data (default: the real data; gesture recipes read hand_gestures/ from the data shipped "
            "with xrserve or $XRSERVE_DATASETS, terrain recipes matplotlib's sample DEMs)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the recipe's).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the initialisation and the batches.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run folder: checkpoint, report, pictures, exported model (default: runs/RECIPE). "
            "Running again with the same folder resumes.",
            file_okay=False,
        ),
    ] = None,
    register: Annotated[
        Path | None,
        typer.Option(
            "--register", help="Model repository to add the trained model to as a new version.", file_okay=False
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="With --register: a running server to load the new version at once.")
    ] = None,
    key: Annotated[str | None, typer.Option(envvar="XRSERVE_API_KEY", help="Admin API key for --url.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Quick run: keep this many rows (terrain: training tiles).", min=1)
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Quick run: at most this many steps per epoch.", min=1)] = None,
    threads: Annotated[int | None, typer.Option(help="PyTorch threads (default: one per core).", min=1)] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore an existing checkpoint in --out.")] = False,
) -> None:
    """Train a recipe on real data, evaluate it, write a report, and optionally register it."""
    from xrserve.cli import fail
    from xrserve.core.config import ConfigError
    from xrserve.training.data import DataError

    if recipe not in RECIPE_NAMES:
        fail(f"unknown recipe '{recipe}'; use one of: {', '.join(RECIPE_NAMES)}")
    console = Console(stderr=True)
    try:
        from xrserve.training.register import register as register_version
        from xrserve.training.trainer import train
    except ModuleNotFoundError as exc:  # matplotlib: the plots and the terrain data come with the `train` extra
        fail(
            f"training needs {exc.name}, which comes with the 'train' extra: pip install 'xrserve[train]' "
            "(make install does it)"
        )
    try:
        result = train(
            recipe,
            data=data,
            epochs=epochs,
            seed=seed,
            out=out,
            limit=limit,
            steps=steps,
            threads=threads,
            restart=restart,
            console=console,
        )
        if register is not None:
            target = register_version(result.export_dir, register, result.report["model"])
            console.print(f"registered [bold]{result.report['model']}[/] version {target.name} in {target}")
            if url:
                _load(url, key, result.report["model"])
    except (DataError, ConfigError, ValueError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _load(url: str, key: str | None, model: str) -> None:
    from xrserve.cli import _call

    entries = _call(url, key, "POST", f"/v2/repository/models/{model}/load").json()
    states = ", ".join(f"v{e.get('version') or '-'} {e['state']}" for e in entries)
    Console(stderr=True).print(f"{url} now has {model}: {states}")
