"""Registration: a trained run's `model/` folder becomes the next numbered version in a repository.

The version folder is written under a hidden name and renamed into place, so a server
scanning the repository never sees half a version.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from xrserve.core.config import load_model_toml
from xrserve.training.data import DataError


def next_version(repo: Path, model: str) -> int:
    """One past the newest version in the repository and among the shipped built-ins (which stay served)."""
    from xrserve.models.trained import builtin_configs

    folder = repo / model
    existing = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    existing += [int(c.version) for c in builtin_configs() if c.name == model]
    return max(existing, default=0) + 1


def register(export_dir: Path, repo: Path, model: str) -> Path:
    """Copy the exported version into `repo/<model>/<n>/` (n = newest + 1); return that folder."""
    if not (export_dir / "model.toml").is_file():
        raise DataError(f"{export_dir} holds no model.toml; train first (xrserve train {model})")
    repo.mkdir(parents=True, exist_ok=True)
    version = next_version(repo, model)
    partial = repo / model / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(export_dir, partial)
    load_model_toml(partial / "model.toml", name=model, version=str(version))  # refuse to publish a broken one
    target = repo / model / str(version)
    os.rename(partial, target)
    return target
