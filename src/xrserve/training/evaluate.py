"""Metrics people use for these models: classification scores, and terrain statistics.

Terrain realism compares generated heightmaps with held-out real ones on three
statistics that geomorphologists use to tell terrain apart: the distribution of
slopes, roughness (height spread after removing the best-fit plane), and the slope of
the radially averaged power spectrum (how height variation scales with wavelength).
The score is the mean, over the three, of the 1-D Wasserstein distance between the
generated and the real distribution divided by the real distribution's spread:
0 means indistinguishable on these statistics, lower is better.
"""

from __future__ import annotations

import numpy as np


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class and macro precision / recall / F1, and the confusion matrix (rows = truth)."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    tp = np.diag(confusion).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(tp / confusion.sum(axis=0))
        recall = np.nan_to_num(tp / confusion.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {
        "accuracy": float(tp.sum() / max(1, confusion.sum())),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, confusion.sum(axis=1))
        },
        "confusion": confusion.tolist(),
    }


# -- terrain -------------------------------------------------------------------------------


def slopes(heights: np.ndarray) -> np.ndarray:
    """Gradient magnitude in metres per pixel, every pixel of every map (a sample)."""
    gy, gx = np.gradient(heights.astype(np.float64), axis=(1, 2))
    return np.hypot(gx, gy).ravel()


def roughness(heights: np.ndarray) -> np.ndarray:
    """Per map: standard deviation of height after removing the least-squares plane, metres."""
    n, h, w = heights.shape
    yy, xx = np.mgrid[0:h, 0:w]
    design = np.stack([np.ones(h * w), yy.ravel(), xx.ravel()], axis=1)
    flat = heights.reshape(n, -1).astype(np.float64).T
    coeffs, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (flat - design @ coeffs).std(axis=0)


def spectral_slopes(heights: np.ndarray) -> np.ndarray:
    """Per map: slope of log power vs log spatial frequency, radially averaged (about -2 to -4 for terrain)."""
    n, h, w = heights.shape
    maps = heights.astype(np.float64) - heights.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(maps * window)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.hypot(fy, fx)
    bins = np.linspace(1.0 / min(h, w), 0.5, 10)
    which = np.digitize(radius, bins)
    centres, rows = [], []
    for b in range(1, len(bins)):
        mask = which == b
        if mask.any():
            centres.append(radius[mask].mean())
            rows.append(power[:, mask].mean(axis=1))
    logf = np.log(np.asarray(centres))
    logp = np.log(np.stack(rows, axis=1) + 1e-12)
    logf_c = logf - logf.mean()
    return ((logp - logp.mean(axis=1, keepdims=True)) @ logf_c) / (logf_c @ logf_c)


def terrain_statistics(heights: np.ndarray) -> dict[str, np.ndarray]:
    return {"slope": slopes(heights), "roughness": roughness(heights), "spectral_slope": spectral_slopes(heights)}


def _wasserstein(a: np.ndarray, b: np.ndarray, points: int = 512) -> float:
    q = np.linspace(0, 1, points)
    return float(np.mean(np.abs(np.quantile(a, q) - np.quantile(b, q))))


def realism_score(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Per statistic and overall ('score'): normalised distance to real terrain; lower is more realistic."""
    ours, theirs = terrain_statistics(generated), terrain_statistics(real)
    parts = {name: _wasserstein(ours[name], theirs[name]) / (float(np.std(theirs[name])) + 1e-9) for name in ours}
    return {"score": float(np.mean(list(parts.values()))), **parts}


def fractal_terrain(
    count: int, size: int, beta: float, roughness_m: float, mean_m: float, rng: np.random.Generator
) -> np.ndarray:
    """Fractal (fBm) noise by spectral synthesis: power ~ f^-beta, scaled to a roughness and mean height.

    The usual procedural-terrain baseline; `beta`, roughness and mean are fitted to the
    training terrain so the comparison is with the best this baseline can do.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    amplitude = radius ** (-beta / 2)
    amplitude[0, 0] = 0.0
    phases = rng.uniform(0, 2 * np.pi, size=(count, size, size))
    noise = rng.normal(size=(count, size, size))
    maps = np.real(np.fft.ifft2(amplitude * noise * np.exp(1j * phases)))
    current = roughness(maps)
    maps *= roughness_m / np.median(current)
    return (maps + mean_m).astype(np.float32)


def fit_fractal_baseline(train: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Fractal terrain with the training crops' median spectral slope, roughness and mean height.

    The exponent is calibrated so that the *measured* spectral slope (windowed, finite
    map) matches the real median, not just the nominal one of the synthesis.
    """
    target = float(np.median(spectral_slopes(train)))
    size, rough, mean = train.shape[-1], float(np.median(roughness(train))), float(np.mean(train))
    beta = -target
    for _ in range(4):
        probe = fractal_terrain(128, size, beta, rough, mean, np.random.default_rng(99))
        beta += float(np.median(spectral_slopes(probe))) - target
    return fractal_terrain(count, size, beta, rough, mean, rng)
