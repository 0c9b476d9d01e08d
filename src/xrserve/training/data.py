"""Datasets the recipes learn from, read strictly, split reproducibly, hashed.

Every problem with the data (missing file, a row that is not numbers, a wrong column
count, no rows at all) is a `DataError` naming the file, the line and the fix, because
a bad CSV found at epoch 30 costs far more than one found before the first step.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the data the default training runs learn from, shipped inside the package (see its README.md)
PACKAGED_DATASETS = Path(__file__).resolve().parent / "datasets"


class DataError(Exception):
    """Training data that cannot be used: the message names the file and the problem."""


def datasets_dir() -> Path:
    """The folder the recipes' default data is read from: $XRSERVE_DATASETS, else the data in the package."""
    return Path(os.environ.get("XRSERVE_DATASETS") or PACKAGED_DATASETS)


def _where_data_comes_from(missing: Path) -> str:
    """The fix for a missing data file: which setting chose it, and how to choose another."""
    missing, folder = missing.resolve(), datasets_dir().resolve()
    if not missing.is_relative_to(folder):
        return "check the --data PATH"
    if os.environ.get("XRSERVE_DATASETS"):
        return (
            f"XRSERVE_DATASETS={os.environ['XRSERVE_DATASETS']} has no {missing.relative_to(folder)}: "
            "unset it to use the data shipped with xrserve, or pass --data PATH"
        )
    return f"the data shipped with xrserve is missing from {PACKAGED_DATASETS} (reinstall it), or pass --data PATH"


def file_hash(*paths: Path) -> str:
    """SHA-256 over the files' bytes, so a report says exactly which data made a model."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return "sha256:" + digest.hexdigest()


@dataclass
class LabeledRows:
    """A classification dataset: features [N, F] float32, labels [N] int64, class names."""

    features: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: Path
    data_hash: str


def read_labels(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: label file not found (one class name per line, line n = class n)")
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{path}: label file is empty; write one class name per line")
    return names


def read_labeled_csv(path: Path, features: int, labels_path: Path | None = None) -> LabeledRows:
    """Rows of `label,f1,...,fF`; labels are integers indexing the label file (line order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; {_where_data_comes_from(path)}")
    labels_path = labels_path or path.with_name(path.stem + "_labels.csv")
    classes = read_labels(labels_path)
    rows: list[list[float]] = []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file (byte {exc.start} is not UTF-8)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != features + 1:
            raise DataError(
                f"{path}: line {number} has {len(cells)} columns, expected {features + 1} "
                f"(a label and {features} numbers)"
            )
        try:
            values = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise DataError(f"{path}: line {number}: '{bad.strip()[:20]}' is not a number") from None
        if not np.isfinite(values).all():
            raise DataError(f"{path}: line {number} has a NaN or infinite value")
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: no data rows; the dataset is empty")
    array = np.asarray(rows, dtype=np.float64)
    labels = array[:, 0]
    if (labels != np.round(labels)).any() or labels.min() < 0 or labels.max() >= len(classes):
        bad_row = int(np.argmax((labels != np.round(labels)) | (labels < 0) | (labels >= len(classes)))) + 1
        raise DataError(
            f"{path}: data row {bad_row}: label {labels[bad_row - 1]:g} is not one of 0..{len(classes) - 1} "
            f"(the lines of {labels_path.name})"
        )
    return LabeledRows(
        array[:, 1:].astype(np.float32), labels.astype(np.int64), classes, path, file_hash(path, labels_path)
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def stratified_split(
    labels: np.ndarray, seed: int, fractions: tuple[float, float] = (0.7, 0.15)
) -> dict[str, np.ndarray]:
    """Train/validation/test indices, the same class mix in each, fixed by the seed."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_train = int(round(len(idx) * fractions[0]))
        n_val = int(round(len(idx) * fractions[1]))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def subsample(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` rows, stratified: for quick runs and tests on a slice of the real data."""
    if not limit or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed + 1)
    keep = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        share = max(3, int(round(limit * len(idx) / len(labels))))
        keep.append(rng.choice(idx, size=min(share, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))


# -- elevation data ----------------------------------------------------------------------


@dataclass
class Elevation:
    """One digital elevation model in metres."""

    name: str
    heights: np.ndarray  # [H, W] float32, metres
    spacing_m: float  # approximate ground distance between pixels


def matplotlib_dems() -> list[Elevation]:
    """The real DEMs matplotlib ships as sample data (both in metres already).

    `jacksboro_fault_dem.npz`: 3 arc-second (~90 m) SRTM of the Cumberland Mountains,
    Tennessee; its top, 1076, is Cross Mountain (1077 m), so the unit is metres.
    `topobathy.npz`: 2 arc-minute topography and bathymetry off Vancouver Island, metres
    (its top, 2205, is the Golden Hinde, 2195 m).
    """
    from matplotlib import cbook

    jacksboro: Any = cbook.get_sample_data("jacksboro_fault_dem.npz")  # an NpzFile
    topo: Any = cbook.get_sample_data("topobathy.npz")
    return [
        Elevation("jacksboro_fault_dem", np.asarray(jacksboro["elevation"], dtype=np.float32), 90.0),
        Elevation("topobathy", np.asarray(topo["topo"], dtype=np.float32), 3000.0),
    ]


def dem_files() -> list[Path]:
    from matplotlib import cbook

    base = Path(cbook._get_data_path("sample_data"))
    return [base / "jacksboro_fault_dem.npz", base / "topobathy.npz"]


def read_dems(path: Path | None) -> tuple[list[Elevation], str]:
    """The DEMs to learn from: matplotlib's (path None), or every `.npz` (key `elevation` or `topo`) and
    `.npy` in a folder."""
    if path is None:
        return matplotlib_dems(), file_hash(*dem_files())
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; pass a .npy/.npz heightmap or a folder of them (metres)")
    files = sorted(p for p in ([path] if path.is_file() else path.iterdir()) if p.suffix in (".npy", ".npz"))
    if not files:
        raise DataError(f"{path}: no .npy or .npz heightmaps in it; the dataset is empty")
    dems = []
    for file in files:
        try:
            loaded = np.load(file)
        except Exception as exc:  # noqa: BLE001 - any reader failure means a corrupt file
            raise DataError(f"{file}: cannot be read as numpy data ({exc})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            key = next((k for k in ("elevation", "topo", "heights") if k in loaded.files), None)
            if key is None:
                raise DataError(f"{file}: has arrays {loaded.files}; name the heightmap 'elevation'")
            loaded = loaded[key]
        heights = np.asarray(loaded, dtype=np.float32)
        if heights.ndim != 2 or min(heights.shape) < 8 or not np.isfinite(heights).all():
            raise DataError(f"{file}: a heightmap must be a 2-D finite array of at least 8x8, got {heights.shape}")
        dems.append(Elevation(file.stem, heights, 90.0))
    return dems, file_hash(*files)


@dataclass
class TerrainSplit:
    """Blocks of the DEMs assigned to train/val/test, so held-out crops never overlap training ones."""

    blocks: dict[str, list[np.ndarray]]  # split -> list of [B, B] blocks in metres
    crop: int

    def random_crops(self, split: str, count: int, rng: np.random.Generator) -> np.ndarray:
        """Random crops with random flips and 90-degree rotations (the terrain looks the same either way)."""
        blocks = self.blocks[split]
        out = np.empty((count, self.crop, self.crop), dtype=np.float32)
        picks = rng.integers(0, len(blocks), size=count)
        for i, b in enumerate(picks):
            block = blocks[b]
            y = rng.integers(0, block.shape[0] - self.crop + 1)
            x = rng.integers(0, block.shape[1] - self.crop + 1)
            crop = block[y : y + self.crop, x : x + self.crop]
            crop = np.rot90(crop, k=int(rng.integers(4)))
            out[i] = crop[:, ::-1] if rng.integers(2) else crop
        return out

    def fixed_crops(self, split: str) -> np.ndarray:
        """Deterministic held-out crops: the four corners and the centre of each block, all 8 orientations."""
        crops = []
        c = self.crop
        for block in self.blocks[split]:
            h, w = block.shape
            for y, x in ((0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)):
                crop = block[y : y + c, x : x + c]
                for k in range(4):
                    rotated = np.rot90(crop, k)
                    crops += [rotated, rotated[:, ::-1]]
        return np.ascontiguousarray(np.stack(crops), dtype=np.float32)


def split_terrain(
    dems: list[Elevation], crop: int, block: int, seed: int, fractions: tuple[float, float] = (0.7, 0.15)
) -> TerrainSplit:
    """Cut each DEM into block x block tiles and deal them to train/val/test with a fixed seed."""
    if block < crop:
        raise ValueError("block must be at least the crop size")
    tiles = []
    for dem in dems:
        h, w = dem.heights.shape
        for y in range(0, h - block + 1, block):
            for x in range(0, w - block + 1, block):
                tiles.append(dem.heights[y : y + block, x : x + block])
    if len(tiles) < 3:
        raise DataError(
            f"the elevation data gives only {len(tiles)} tiles of {block}x{block}; "
            "need at least 3 (train, validation, test): use larger heightmaps"
        )
    order = np.random.default_rng(seed).permutation(len(tiles))
    n_train = max(1, int(round(len(tiles) * fractions[0])))
    n_val = max(1, int(round(len(tiles) * fractions[1])))
    n_train = min(n_train, len(tiles) - 2)
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return TerrainSplit({k: [tiles[i] for i in v] for k, v in parts.items()}, crop)
