"""Bad data fails before training with a message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli
from xrserve.training.data import DataError, datasets_dir, read_dems, read_labeled_csv, split_terrain, stratified_split
from xrserve.training.evaluate import classification_metrics, fit_fractal_baseline, realism_score

KEYPOINTS = datasets_dir() / "hand_gestures" / "keypoint.csv"


def dataset(tmp_path: Path, text: str, labels: str = "Open\nClose\n") -> Path:
    path = tmp_path / "points.csv"
    path.write_text(text)
    (tmp_path / "points_labels.csv").write_text(labels)
    return path


def good_row(label: int = 0) -> str:
    return ",".join([str(label)] + ["0.5"] * 42)


@pytest.mark.parametrize(
    "text, problem",
    [
        (good_row() + "\n0,0.1,zebra" + ",0.2" * 40 + "\n", r"points.csv: line 2: 'zebra' is not a number"),
        (good_row() + "\n" + ",".join(["1"] * 30) + "\n", r"points.csv: line 2 has 30 columns, expected 43"),
        ("", r"points.csv: no data rows; the dataset is empty"),
        ("\n\n", r"points.csv: no data rows; the dataset is empty"),
        (good_row(5) + "\n", r"points.csv: data row 1: label 5 is not one of 0..1"),
        (good_row() + "\n0" + ",nan" * 42 + "\n", r"points.csv: line 2 has a NaN"),
    ],
)
def test_bad_csv_is_named(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        read_labeled_csv(dataset(tmp_path, text), 42)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing.csv: file not found"):
        read_labeled_csv(tmp_path / "nothing.csv", 42)
    (tmp_path / "points.csv").write_text(good_row() + "\n")
    with pytest.raises(DataError, match=r"points_labels.csv: label file not found"):
        read_labeled_csv(tmp_path / "points.csv", 42)


def test_binary_file_is_not_a_csv(tmp_path: Path) -> None:
    path = dataset(tmp_path, "")
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError, match="not a text CSV"):
        read_labeled_csv(path, 42)


@pytest.mark.parametrize("case", ["corrupt", "columns", "empty", "missing"])
def test_cli_reports_bad_data_in_one_line(tmp_path: Path, case: str) -> None:
    texts = {"corrupt": good_row() + "\n0,oops" + ",1" * 41 + "\n", "columns": "0,1,2\n", "empty": ""}
    path = dataset(tmp_path, texts[case]) if case != "missing" else tmp_path / "absent.csv"
    result = cli("train", "gesture", "--data", str(path), "--out", str(tmp_path / "run"), check=False)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "Traceback" not in result.stderr and len(message.splitlines()) == 1, message
    assert message.startswith("xrserve: error: ") and path.name in message
    assert {
        "corrupt": "is not a number",
        "columns": "has 3 columns, expected 43",
        "empty": "dataset is empty",
        "missing": "file not found",
    }[case] in message


def test_unknown_recipe_lists_the_recipes(tmp_path: Path) -> None:
    result = cli("train", "gestures", check=False)
    assert result.returncode == 2 and "use one of: gesture, gesture-motion, terrain-vae, terrain-gan" in result.stderr


def test_real_data_split_is_stratified_and_fixed_by_the_seed() -> None:
    rows = read_labeled_csv(KEYPOINTS, 42)
    assert rows.classes == ["Open", "Close", "Pointer", "OK"] and rows.data_hash.startswith("sha256:")
    a, b, c = stratified_split(rows.labels, 0), stratified_split(rows.labels, 0), stratified_split(rows.labels, 1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["test"], c["test"])
    assert sum(len(v) for v in a.values()) == len(rows.labels)
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    for cls in range(4):  # every class in every split, in about the same share
        share = [np.mean(rows.labels[a[k]] == cls) for k in ("train", "test")]
        assert abs(share[0] - share[1]) < 0.03


def test_terrain_tiles_do_not_overlap_and_are_metres() -> None:
    dems, data_hash = read_dems(None)
    assert {d.name for d in dems} == {"jacksboro_fault_dem", "topobathy"} and data_hash.startswith("sha256:")
    assert 1000 < dems[0].heights.max() < 1100  # Cross Mountain, 1077 m
    split = split_terrain(dems, 32, 40, seed=0)
    ids = {k: {id(b) for b in v} for k, v in split.blocks.items()}
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    crops = split.random_crops("train", 16, np.random.default_rng(0))
    assert crops.shape == (16, 32, 32) and split.fixed_crops("test").shape[0] == 40 * len(split.blocks["test"])


def test_bad_heightmaps_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no .npy or .npz heightmaps"):
        read_dems(tmp_path)
    (tmp_path / "flat.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="flat.npy: cannot be read"):
        read_dems(tmp_path)


def test_metrics() -> None:
    result = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    assert result["accuracy"] == 0.75 and result["confusion"] == [[1, 1], [0, 2]]
    assert result["per_class"]["a"]["precision"] == 1.0 and result["per_class"]["b"]["recall"] == 1.0
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    split = split_terrain(read_dems(None)[0], 32, 40, seed=0)
    real = split.fixed_crops("test")
    assert realism_score(real, real)["score"] < 0.01
    fractal = fit_fractal_baseline(
        split.random_crops("train", 256, np.random.default_rng(0)), 256, np.random.default_rng(1)
    )
    assert realism_score(fractal, real)["score"] > 0.1
