"""Recipes: what to learn from which data, and how to export it for serving.

A recipe owns its data, modules and optimisers; the trainer (`training/trainer.py`)
owns the loop, checkpoints, progress, the report and nothing model-specific.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class Recipe:
    """The contract between a recipe and the trainer. Subclasses fill in every method."""

    name: str = ""  # the recipe's name is also the served model's name
    description: str = ""
    default_epochs: int = 10
    console: Any = None  # the trainer's rich Console, for progress bars of long evaluations

    def default_data(self) -> Path | None:
        """Where the real data lives (None: data that ships with an installed package)."""
        return None

    def prepare(self, data: Path | None, seed: int, limit: int | None) -> dict[str, Any]:
        """Read and split the data; return what the report records (source, hash, split sizes)."""
        raise NotImplementedError

    def build(self, seed: int) -> None:
        """Create fresh modules and optimisers."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        """One optimisation step; returns the losses to average over the epoch."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Held-out numbers at the end of each epoch (validation split)."""
        raise NotImplementedError

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """Final test-split metrics; may write pictures into `run_dir` (listed under 'plots')."""
        raise NotImplementedError

    def export(self, directory: Path, report: dict[str, Any]) -> None:
        """Write a servable version folder: model.toml and weights."""
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any]) -> str:
        """One line summing up the test metrics, for the console and report.md."""
        return ""


def save_torchscript(module: Any, path: Path) -> None:
    """Script and save: TorchScript is what the serving side loads (deprecated upstream, still supported)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))


def recipes() -> dict[str, type[Recipe]]:
    from xrserve.training.recipes.gesture import GestureMotionRecipe, GestureRecipe
    from xrserve.training.recipes.terrain import TerrainGanRecipe, TerrainVaeRecipe

    return {r.name: r for r in (GestureRecipe, GestureMotionRecipe, TerrainVaeRecipe, TerrainGanRecipe)}


RECIPE_NAMES = ("gesture", "gesture-motion", "terrain-vae", "terrain-gan")
