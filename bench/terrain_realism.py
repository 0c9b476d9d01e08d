"""Large terrain from 32x32 generators: how realistic is it, design by design?

Each design builds terrains with `xrserve.worlds.terrain.generate_heightmap` through a real
in-process `Scheduler` (the built-in `terrain-gan`, as the service runs it), at the
training pixel scale: `extent_m` is the canvas's real span (63 pixels x 90 m), so heights
come back in the DEM's own metres, and the vertex grid holds every canvas pixel (4
vertices a pixel), which is read back by taking every 4th vertex. 32x32 windows of that
canvas, 16 px apart, are compared with the held-out real crops the terrain recipes
report on (`split_terrain(..., seed 0)`: test, and validation + test):

  realism          `training.evaluate.realism_score` (0 = indistinguishable, lower is better)
  lag-16           autocorrelation of plane-detrended crops at 16 px, the tile spacing; real
                   terrain's is the reference, a higher one means features repeat tile by tile
  seam ratio       mean slope where tiles meet in equal shares / where one tile dominates:
                   1 is an invisible seam, below 1 a grid of smoother lines

    nice .venv/bin/python bench/terrain_realism.py              # ~5 minutes on the busy 2-core machine
    nice .venv/bin/python bench/terrain_realism.py --terrains 20
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace

import numpy as np

from xrserve.core.scheduler import Scheduler
from xrserve.models.trained import builtin_configs
from xrserve.runtimes import RUNTIMES
from xrserve.training.data import read_dems, split_terrain
from xrserve.training.evaluate import realism_score
from xrserve.worlds.terrain import DESIGN, TILE, Design, TerrainSpec, generate_heightmap

VERTICES_PER_PIXEL = 4
PLAIN = replace(DESIGN, detail=0.0)
DESIGNS: list[tuple[str, Design]] = [
    ("single tile, upsampled", Design(tiles=1, detail=0.0)),
    (
        "3x3 tiles, independent latents, plain average",
        replace(PLAIN, correlation_tiles=0.0, variance_correction=0.0, mean_keep=1.0),
    ),
    ("3x3, correlated latents, plain average", replace(PLAIN, variance_correction=0.0, mean_keep=1.0)),
    ("3x3, correlated, variance-preserving", replace(PLAIN, variance_correction=1.0, mean_keep=1.0)),
    ("3x3, correlated, plain average, means halved", replace(PLAIN, variance_correction=0.0)),
    ("3x3, correlated, var.-pres., means halved", replace(PLAIN, variance_correction=1.0)),
    ("3x3, strongly correlated (1 tile), means halved, blend 0.4", replace(PLAIN, correlation_tiles=1.0)),
    ("3x3, correlated, means halved, blend 0.4", PLAIN),
    ("the service: the above + detail octave", DESIGN),
]


def held_out() -> tuple[np.ndarray, np.ndarray]:
    """The terrain recipes' held-out crops: validation and test (seed 0, as the shipped models)."""
    dems, _ = read_dems(None)
    split = split_terrain(dems, TILE, 40, 0)
    return split.fixed_crops("val"), split.fixed_crops("test")


def windows(canvas: np.ndarray, stride: int = 16) -> list[np.ndarray]:
    side = canvas.shape[0]
    return [
        canvas[y : y + TILE, x : x + TILE]
        for y in range(0, side - TILE + 1, stride)
        for x in range(0, side - TILE + 1, stride)
    ]


def lag_correlation(crops: np.ndarray, lag: int = 16) -> float:
    """Mean over crops of the correlation between heights `lag` pixels apart (rows and columns), plane removed."""
    n = crops.shape[-1]
    yy, xx = np.mgrid[0:n, 0:n]
    design = np.stack([np.ones(n * n), yy.ravel(), xx.ravel()], axis=1)
    flat = crops.reshape(len(crops), -1).astype(np.float64).T
    coeffs, *_ = np.linalg.lstsq(design, flat, rcond=None)
    residual = (flat - design @ coeffs).T.reshape(-1, n, n)
    values = []
    for r in residual:
        a = np.concatenate([r[:, :-lag].ravel(), r[:-lag, :].ravel()])
        b = np.concatenate([r[:, lag:].ravel(), r[lag:, :].ravel()])
        values.append(np.corrcoef(a, b)[0, 1])
    return float(np.mean(values))


def seam_ratio(canvases: list[np.ndarray], stride: int = 16) -> float:
    """Mean slope where tiles meet in equal shares over where a single tile dominates (inner canvas only)."""
    side = canvases[0].shape[0]
    if side <= TILE:
        return float("nan")
    phase = np.arange(side) % stride
    inner = (np.arange(side) >= stride) & (np.arange(side) < side - stride)
    seam = inner & np.isin(phase, (stride // 2 - 1, stride // 2))
    centre = inner & np.isin(phase, (stride - 1, 0))
    at_seam, at_centre = [], []
    for canvas in canvases:
        gy, gx = np.gradient(canvas.astype(np.float64))
        slope = np.hypot(gx, gy)
        at_seam.append(slope[np.ix_(seam, seam)].ravel())
        at_centre.append(slope[np.ix_(centre, centre)].ravel())
    return float(np.mean(np.concatenate(at_seam)) / np.mean(np.concatenate(at_centre)))


async def canvases_of(scheduler: Scheduler, design: Design, count: int, first_seed: int) -> list[np.ndarray]:
    """`count` terrains at the training pixel scale (metres, one sample per generator pixel)."""
    size = VERTICES_PER_PIXEL * (design.canvas - 1) + 1
    out = []
    for seed in range(first_seed, first_seed + count):
        spec = TerrainSpec(seed=seed, size=size, extent_m=design.span_m)
        heights = await generate_heightmap(scheduler, spec, design=design)
        out.append(heights[::VERTICES_PER_PIXEL, ::VERTICES_PER_PIXEL])
    return out


async def main(terrains: int) -> None:
    val, test = held_out()
    both = np.concatenate([val, test])
    scheduler = Scheduler(RUNTIMES)
    for config in builtin_configs():
        if config.name == "terrain-gan":
            await scheduler.load(config)
    rows = []
    try:
        for name, design in DESIGNS:
            started = time.perf_counter()
            per_terrain = len(windows(np.zeros((design.canvas, design.canvas))))
            count = max(terrains, terrains * 9 // per_terrain)  # about the same number of crops for every design
            canvases = await canvases_of(scheduler, design, count, first_seed=1000)
            crops = np.stack([w for c in canvases for w in windows(c)]).astype(np.float32)
            on_test, on_both = realism_score(crops, test), realism_score(crops, both)
            rows.append(
                (
                    name,
                    design.maps,
                    len(crops),
                    on_test,
                    on_both["score"],
                    lag_correlation(crops),
                    seam_ratio(canvases),
                    time.perf_counter() - started,
                )
            )
    finally:
        await scheduler.close()
    print(
        f"held out: {len(test)} test crops, {len(val)} validation crops; lag-16 of real test crops: "
        f"{lag_correlation(test):+.2f}, of validation: {lag_correlation(val):+.2f}"
    )
    print()
    columns = ["design", "maps", "crops", "realism (test)", "slope", "roughness", "spectral", "realism (val+test)"]
    print("| " + " | ".join([*columns, "lag-16", "seam ratio"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, maps, n, score, both_score, lag, seam, _ in rows:
        seam_text = "-" if np.isnan(seam) else f"{seam:.2f}"
        print(
            f"| {name} | {maps} | {n} | **{score['score']:.3f}** | {score['slope']:.2f} | {score['roughness']:.2f} "
            f"| {score['spectral_slope']:.2f} | {both_score:.3f} | {lag:+.2f} | {seam_text} |"
        )
    print()
    print("seconds per design:", ", ".join(f"{r[-1]:.1f}" for r in rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terrains", type=int, default=60, help="terrains per tiled design (single tiles: 9x)")
    asyncio.run(main(parser.parse_args().terrains))
