"""Each recipe trained once per session on a small slice of the real data, for a few steps."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

SLICES = {  # recipe -> quick-run options: a slice of the real data, a few steps
    "gesture": {"limit": 300, "epochs": 4},
    "gesture-motion": {"limit": 300, "epochs": 4},
    "terrain-vae": {"limit": 4, "epochs": 3, "steps": 5},
    "terrain-gan": {"limit": 4, "epochs": 3, "steps": 5},
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """recipe -> RunResult; trained lazily, so a test run that needs one recipe trains one."""
    from xrserve.training.trainer import train

    cache = {}

    def get(recipe: str):
        if recipe not in cache:
            out = tmp_path_factory.mktemp(f"run-{recipe}")
            log = io.StringIO()
            cache[recipe] = train(
                recipe, out=out, seed=0, threads=1, console=Console(file=log, width=200), **SLICES[recipe]
            )
            cache[recipe].log = log.getvalue()
        return cache[recipe]

    return get


def rows(path: Path, count: int) -> list[str]:
    return path.read_text().splitlines()[:count]
