"""Each recipe, trained on a slice of the real data for a few steps, learns, reports and exports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from xrserve.core.config import load_model_toml
from xrserve.runtimes import create_model
from xrserve.training.data import DataError, datasets_dir

PICTURES = {
    "gesture": ["curves.png", "confusion_matrix.png", "attributions.png"],
    "gesture-motion": ["curves.png", "confusion_matrix.png", "attributions.png"],
    "terrain-vae": [
        "curves.png",
        "samples.png",
        "interpolation.png",
        "reconstructions.png",
        "terrain_statistics.png",
        "fractal_baseline.png",
    ],
    "terrain-gan": ["curves.png", "samples.png", "terrain_statistics.png", "fractal_baseline.png"],
}
FALLING = {"gesture": "loss", "gesture-motion": "loss", "terrain-vae": "loss", "terrain-gan": "d_loss"}


def load_export(result, version: str = "7"):
    config = load_model_toml(result.export_dir / "model.toml", name=result.report["model"], version=version)
    model = create_model(config)
    model.load()
    return model


@pytest.mark.parametrize("recipe", list(PICTURES))
def test_recipe_learns_and_reports(trained, recipe: str) -> None:
    result = trained(recipe)
    history = result.report["history"]
    key = FALLING[recipe]  # the GAN: the discriminator learns to tell generated from real terrain
    assert history[-1][key] < history[0][key], [row[key] for row in history]
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["data"]["data_hash"].startswith("sha256:") and report["seed"] == 0
    assert set(report["data"]["split"]) == {"train", "val", "test"}
    markdown = (result.run_dir / "report.md").read_text()
    for picture in PICTURES[recipe]:
        assert (result.run_dir / picture).stat().st_size > 1000, picture
        assert picture in markdown
        assert (result.export_dir / picture).exists()
    assert (result.run_dir / "checkpoint.pt").exists()


@pytest.mark.parametrize("recipe", ["gesture", "gesture-motion"])
def test_classifier_metrics_and_export(trained, recipe: str) -> None:
    result = trained(recipe)
    metrics = result.report["metrics"]
    assert 0 < metrics["accuracy"] <= 1 and 0 < metrics["macro_f1"] <= 1
    assert sum(row["support"] for row in metrics["per_class"].values()) == result.report["data"]["split"]["test"]
    model = load_export(result)
    name = model.config.inputs[0].name
    csv = "keypoint.csv" if recipe == "gesture" else "point_history.csv"
    data = np.loadtxt(datasets_dir() / "hand_gestures" / csv, delimiter=",", max_rows=20, dtype=np.float32)
    points = data[:, 1:].reshape(20, -1, 2)
    out = model.infer({name: points}, {})
    assert out["probabilities"].shape == (20, 4) and np.allclose(out["probabilities"].sum(1), 1, atol=1e-5)
    assert out["label"].dtype == object and set(out["label"]) <= {c.encode() for c in model.config.parameters["labels"]}
    if recipe == "gesture":  # image coordinates: the model itself makes them wrist-relative and scales them
        moved = model.infer({name: points * 237.0 + np.float32([320, 240])}, {})
        assert np.allclose(moved["probabilities"], out["probabilities"], atol=1e-4)


def test_terrain_vae_modes(trained) -> None:
    model = load_export(trained("terrain-vae"))
    from xrserve.training.data import matplotlib_dems

    real = matplotlib_dems()[0].heights[:64, :64].reshape(2, 32, 64)[:, :, :32].copy()
    encoded = model.infer({"heightmap": real}, {})
    assert encoded["latent"].shape == (2, 32) and encoded["heightmap"].shape == (2, 32, 32)
    assert 0 < np.abs(encoded["heightmap"]).mean() < 5000  # metres, not standard units
    decoded = model.infer({"latent": encoded["latent"]}, {})
    assert np.allclose(decoded["heightmap"], encoded["heightmap"], atol=1e-3)
    a, b = model.infer({"seed": np.array([5, 5], np.int64)}, {})["heightmap"]
    assert np.array_equal(a, b)  # same seed, same terrain
    strip = model.infer({"heightmap": real}, {"mode": "interpolate", "steps": 5})
    assert strip["heightmap"].shape == (5, 32, 32)
    assert np.allclose(strip["latent"][[0, -1]], encoded["latent"], atol=1e-5)
    from xrserve.core.errors import BadRequest

    with pytest.raises(BadRequest, match="mode 'sample' takes 'latent' or 'seed'"):
        model.infer({"heightmap": real}, {"mode": "sample"})
    with pytest.raises(BadRequest, match="exactly one of"):
        model.check_inputs({"seed": np.array([1]), "latent": np.zeros((1, 32), np.float32)})


def test_terrain_gan_seeds(trained) -> None:
    model = load_export(trained("terrain-gan"))
    first = model.infer({"seed": np.array([1, 2], np.int64)}, {})
    again = model.infer({"latent": first["latent"]}, {})
    assert first["heightmap"].shape == (2, 32, 32) and np.allclose(first["heightmap"], again["heightmap"], atol=1e-4)
    assert not np.allclose(first["heightmap"][0], first["heightmap"][1])
    realism = trained("terrain-gan").report["metrics"]
    assert {"score", "slope", "roughness", "spectral_slope"} <= set(realism["realism"])
    assert realism["fractal_baseline"]["score"] > 0


def test_gan_smoothing_is_a_low_pass_and_zero_is_identity() -> None:
    import torch

    from xrserve.training.recipes.terrain import Smoothing

    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 32, 32)).astype(np.float32))
    assert torch.equal(Smoothing(0.0)(noise), noise)
    smoothed = Smoothing(0.5)(noise)
    assert smoothed.std() < 0.8 * noise.std()  # white noise loses its short wavelengths
    assert torch.allclose(Smoothing(0.5)(torch.full((1, 32, 32), 7.0)), torch.full((1, 32, 32), 7.0))  # flat stays flat


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    from xrserve.training.trainer import train

    log = io.StringIO()
    quiet = Console(file=log, width=200)
    first = train("gesture", out=tmp_path, epochs=2, limit=200, console=quiet)
    state = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    resumed = train("gesture", out=tmp_path, epochs=3, limit=200, console=quiet)
    assert "resuming gesture" in log.getvalue() and "after epoch 2 of 3" in log.getvalue()
    assert [row["epoch"] for row in resumed.report["history"]] == [1, 2, 3]
    assert resumed.report["history"][:2] == first.report["history"]
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns != state
    with pytest.raises(DataError, match="different seed; pass --restart"):
        train("gesture", out=tmp_path, epochs=3, limit=200, seed=1, console=quiet)
