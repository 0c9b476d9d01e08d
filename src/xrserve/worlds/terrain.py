"""Large terrain from the trained 32x32 generators, and what a client or a scene needs of it.

The generators (`terrain-gan`, `terrain-vae`) draw 32x32 heightmaps in metres whose
pixels are those of the DEM they learned from (Jacksboro, ~90 m a pixel: 2.8 km a map).
A terrain here is built from many such maps; `bench/terrain_realism.py` measured each
choice against held-out real terrain (the table and the reasoning: `docs/worlds.md`,
"Terrain"):

- **a grid of tiles, half overlapping**: 3x3 maps 16 px apart make a 64x64 canvas of
  generator pixels, each pixel a blend of 1 to 4 tiles under raised-cosine windows;
- **correlated latents**: the tiles' latents are a Gaussian random field over the grid
  (neighbours correlate 0.37), so the kind of terrain drifts across the map instead of
  jumping from tile to tile (independent latents: realism 0.76 -> 0.61). Stronger
  correlation scores better still but repeats features every 16 px, which real terrain
  does not (the lag-16 autocorrelation turns positive);
- **tile means pulled halfway together**: the generator draws each map at any elevation
  its training data had, sea floor to summits; neighbouring maps differ far more than
  neighbouring windows of real land, and that step is most of what blending costs;
- **a partly variance-preserving blend**: a plain average of unrelated maps is smoother
  where they meet, a fully variance-preserving one (w / sqrt(sum w^2)) steeper; dividing
  by sqrt(sum w^2)^0.4 makes the slopes at seams those inside tiles (ratio 1.01);
- **a detail octave**: 7x7 maps at half the pixel size, band-passed and added at 0.4 of
  their height (self-similar terrain with the held-out spectral slope, -4.65, scales
  heights by 2^-1.33 per halving): relief between the 90 m samples, which a spline alone
  leaves smooth, and no change to realism at the training scale;
- **resampled** (cubic spline) to the N x N vertices asked for. The land is the same
  whatever N: `size` is resolution, never more or less terrain.

Heights keep the real terrain's proportions: the canvas spans 63 generator pixels
(5.67 km), scaled to `extent_m` in all three axes, so slopes are the real land's;
`height_scale` exaggerates them. The lowest vertex is at 0.

The mesh (`terrain_mesh`) puts row i of the heightmap at z = -extent/2 + i*step and
column j at x = -extent/2 + j*step, and splits every cell along the diagonal from (i, j)
to (i+1, j+1); `height_at` interpolates on exactly those triangles.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

from xrserve.core.client import InferenceClient
from xrserve.core.errors import BadRequest, ModelFailed
from xrserve.core.request import InferenceRequest, Priority
from xrserve.worlds.glb import Node, write_glb
from xrserve.worlds.mesh import Mesh

TILE = 32  # the generators' map size
PIXEL_M = 90.0  # ground distance of one generator pixel: the Jacksboro DEM's 3 arc-seconds (training.data)
LATENT_SIZES = {"terrain-gan": 64, "terrain-vae": 32}
MAX_SIZE = 513
MAX_SEED = 2**63  # the models' `seed` is INT64; the same bound here keeps the two interchangeable
MAX_LATENT = 10.0  # latents are standard normal: |z| > 10 has probability 1e-23 and only breaks the generator

Seed = Annotated[int, Field(ge=0, lt=MAX_SEED)]
LatentValue = Annotated[float, Field(ge=-MAX_LATENT, le=MAX_LATENT)]


@dataclass(frozen=True)
class Design:
    """How tiles become a terrain; `DESIGN` is what the service uses, the others are measured beside it."""

    tiles: int = 3  # coarse tiles a side
    stride: int = 16  # pixels between tiles (half a tile: every pixel under 2 to 4 tiles)
    correlation_tiles: float = (
        0.5  # latent field's Gaussian width (neighbours correlate exp(-1/(4 w^2))); 0: independent
    )
    variance_correction: float = 0.4  # 0: plain average of the tiles; 1: variance-preserving (w / sqrt(sum w^2))
    mean_keep: float = 0.5  # share of each tile's deviation from the mean elevation kept (1: as generated)
    detail: float = 0.4  # detail octave amplitude (0: none)
    detail_lowpass_px: float = 1.0  # detail maps are band-passed: this Gaussian smooths away the generator's
    detail_highpass_px: float = 2.0  # pixel streaks (a crosshatch otherwise), this one is subtracted (the coarse band)

    @property
    def canvas(self) -> int:
        """Coarse canvas side in generator pixels."""
        return self.stride * (self.tiles - 1) + TILE

    @property
    def detail_tiles(self) -> int:
        """Detail tiles a side: they cover the canvas at twice its resolution."""
        return 0 if not self.detail else (2 * self.canvas - TILE) // self.stride + 1

    @property
    def span_m(self) -> float:
        """The real ground distance between the first and the last vertex: what `extent_m` is scaled from."""
        return (self.canvas - 1) * PIXEL_M

    @property
    def maps(self) -> int:
        return self.tiles**2 + self.detail_tiles**2


DESIGN = Design()


class TerrainSpec(BaseModel):
    """A terrain to generate: what it looks like (seed, latent or two seeds mixed), its size and its format."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON types as written: no false for 0

    seed: Seed | None = Field(
        None, description="the same seed always gives the same terrain (seed 0 when no seed, latent or seeds is sent)"
    )
    latent: list[LatentValue] | None = Field(
        None,
        description="the centre tile's latent vector (64 numbers for terrain-gan, 32 for terrain-vae), "
        "e.g. the `latent` a model answered; the rest of the terrain follows from it",
    )
    seeds: list[Seed] | None = Field(
        None, min_length=2, max_length=2, description="two seeds whose terrains `mix` blends: [a, b]"
    )
    mix: float | None = Field(
        None, ge=0.0, le=1.0, description="with `seeds`: 0 is seed a's terrain, 1 seed b's (default 0.5)"
    )
    size: int = Field(129, ge=2, le=MAX_SIZE, description="vertices a side (the same land at any size)")
    extent_m: float = Field(200.0, ge=1.0, le=10000.0, description="the square's side in metres")
    height_scale: float = Field(
        1.0, ge=0.0, le=100.0, description="multiplies the heights; 1 keeps the real terrain's slopes"
    )
    model: Literal["terrain-gan", "terrain-vae"] = Field("terrain-gan", description="the generator")
    format: Literal["glb", "png16", "f32"] = Field(
        "glb", description="glb: a mesh; png16: 16-bit greyscale heights; f32: little-endian float32 heights"
    )
    lods: int = Field(1, ge=1, le=4, description="levels of detail in the GLB, the full one included; each halves")

    @model_validator(mode="after")
    def _one_source(self) -> TerrainSpec:
        sent = [name for name in ("seed", "latent", "seeds") if getattr(self, name) is not None]
        if len(sent) > 1:
            raise ValueError(f"send one of 'seed', 'latent' or 'seeds' (with 'mix'), not {' and '.join(sent)}")
        if self.mix is not None and self.seeds is None:
            raise ValueError("'mix' blends two terrains: send it with 'seeds': [a, b]")
        if self.latent is not None and len(self.latent) != LATENT_SIZES[self.model]:
            raise ValueError(
                f"'latent' has {len(self.latent)} numbers; model '{self.model}' takes {LATENT_SIZES[self.model]}"
            )
        return self


# -- heightmaps ---------------------------------------------------------------------------------


async def generate_heightmap(
    client: InferenceClient, spec: TerrainSpec, *, session: str | None = None, design: Design = DESIGN
) -> np.ndarray:
    """float32 [size, size] metres, lowest vertex 0; the same spec always gives the same array.

    The maps come from the model in requests of exactly its batch size (the last one
    padded): a full batch never shares the model with another client's rows, so the
    arithmetic, and hence every height, is the same however busy the server is.
    """
    width = LATENT_SIZES[spec.model]
    config = client.resolve(spec.model).config
    declared = int(config.parameters.get("latent", width))
    if declared != width:
        raise BadRequest(f"model '{spec.model}' takes latents of {declared} numbers; terrain expects {width}")
    latents = _latents(spec, width, design)
    chunk = config.max_batch_size or len(latents)
    parameters = {"mode": "decode"} if spec.model == "terrain-vae" else {}
    requests = []
    for start in range(0, len(latents), chunk):
        rows = latents[start : start + chunk]
        if len(rows) < chunk:
            rows = np.concatenate([rows, np.zeros((chunk - len(rows), width), np.float32)])
        request = InferenceRequest(
            spec.model,
            {"latent": rows},
            parameters=dict(parameters),
            priority=Priority.BULK,
            session=session,
        )
        requests.append(client.submit(request))
    answers = await asyncio.gather(*requests)
    maps = np.concatenate([a.outputs["heightmap"] for a in answers])[: len(latents)]
    if maps.shape[1:] != (TILE, TILE):
        raise ModelFailed(f"model '{spec.model}' answered heightmaps of {maps.shape[1:]}; terrain needs 32x32")
    if not np.isfinite(maps).all():
        raise ModelFailed(f"model '{spec.model}' answered heights that are NaN or infinite")
    return await asyncio.to_thread(_heights, maps, spec, design)


def _latents(spec: TerrainSpec, size: int, design: Design) -> np.ndarray:
    """Every tile's latent, coarse tiles first (row-major), then the detail tiles."""
    if spec.seeds is not None:
        a, b = (_field(_seed_latent(s, size), design) for s in spec.seeds)
        t = 0.5 if spec.mix is None else spec.mix
        # normalised: the mix of two independent N(0, I) latents stays N(0, I), a typical latent
        mixed = (a * (1 - t) + b * t) / math.sqrt((1 - t) ** 2 + t**2)
        return mixed.astype(np.float32)
    if spec.latent is not None:
        return _field(np.asarray(spec.latent, np.float32), design)
    return _field(_seed_latent(spec.seed or 0, size), design)


def _seed_latent(seed: int, size: int) -> np.ndarray:
    """The latent the models themselves draw for a seed, so the centre tile is what `seed` alone gives."""
    return np.random.default_rng(seed).standard_normal(size).astype(np.float32)


def _field(centre: np.ndarray, design: Design) -> np.ndarray:
    """The latents of all tiles: a Gaussian random field conditioned on the centre tile's latent.

    The field's other values come from a generator seeded by the centre latent's bytes,
    so a latent (or the seed that makes it) fixes the whole terrain. Conditioning keeps
    the field's statistics exactly: z = f + rho * (centre - f_centre) has the same joint
    distribution as f when the centre latent is standard normal.
    """
    size = len(centre)
    digest = hashlib.sha256(centre.astype("<f4").tobytes()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    coarse, rho = _gaussian_field(rng, design.tiles, size, design.correlation_tiles)
    c = design.tiles // 2
    coarse = coarse + rho[:, :, None] * (centre - coarse[c, c])[None, None, :]
    parts = [coarse.reshape(-1, size)]
    if design.detail_tiles:
        detail, _ = _gaussian_field(rng, design.detail_tiles, size, design.correlation_tiles)
        parts.append(detail.reshape(-1, size))
    return np.concatenate(parts).astype(np.float32)


def _gaussian_field(rng: np.random.Generator, n: int, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """[n, n, size] unit-variance Gaussian field (white noise smoothed over the grid), and each tile's
    correlation with the centre tile."""
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2)) if sigma > 0 else (offsets == 0).astype(np.float64)
    kernel /= math.sqrt(float((kernel**2).sum()))  # unit variance after smoothing
    noise = rng.standard_normal((n + 2 * radius, n + 2 * radius, size))
    field = ndimage.correlate1d(noise, kernel, axis=0, mode="constant")
    field = ndimage.correlate1d(field, kernel, axis=1, mode="constant")[radius : radius + n, radius : radius + n]
    lag = np.array(
        [float((kernel[: len(kernel) - d] * kernel[d:]).sum()) if d < len(kernel) else 0.0 for d in range(n)]
    )
    distance = np.abs(np.arange(n) - n // 2)
    rho = np.outer(lag[distance], lag[distance])
    return field, rho


def _compose(maps: np.ndarray, tiles: int, stride: int, correction: float, mean_keep: float) -> np.ndarray:
    """Tiles (row-major) blended under raised-cosine windows into one canvas."""
    side = stride * (tiles - 1) + TILE
    bell = np.sin(np.pi * (np.arange(TILE) + 0.5) / TILE) ** 2  # sums to 1 over tiles half a tile apart
    window = np.outer(bell, bell)
    maps = maps.astype(np.float64)
    means = maps.mean(axis=(1, 2))
    kept = means.mean() + mean_keep * (means - means.mean())
    level, anomaly = np.zeros((side, side)), np.zeros((side, side))
    weight, squares = np.zeros((side, side)), np.zeros((side, side))
    for k, tile in enumerate(maps):
        r, c = divmod(k, tiles)
        at = (slice(r * stride, r * stride + TILE), slice(c * stride, c * stride + TILE))
        level[at] += window * kept[k]
        anomaly[at] += window * (tile - means[k])
        weight[at] += window
        squares[at] += window**2
    return level / weight + anomaly / (np.sqrt(squares) ** correction * weight ** (1 - correction))


def _heights(maps: np.ndarray, spec: TerrainSpec, design: Design) -> np.ndarray:
    """The maps as the terrain: compose, add the detail octave, resample to size x size, scale to the extent."""
    coarse_count = design.tiles**2
    coarse = _compose(maps[:coarse_count], design.tiles, design.stride, design.variance_correction, design.mean_keep)
    canvas = coarse
    if design.detail_tiles:
        fine_side = 2 * design.canvas - 1  # samples at half-pixel steps, first and last on the coarse ones
        fine = _resample(coarse, fine_side)
        # zero-mean and fully variance-preserving: the octave is as strong at a seam as inside a tile
        detail = _compose(maps[coarse_count:], design.detail_tiles, design.stride, 1.0, 0.0)
        if design.detail_lowpass_px:
            detail = ndimage.gaussian_filter(detail, design.detail_lowpass_px, mode="reflect")
        detail = detail - ndimage.gaussian_filter(detail, design.detail_highpass_px, mode="reflect")
        canvas = fine + design.detail * detail[:fine_side, :fine_side]
    heights = _resample(canvas, spec.size)
    scale = spec.extent_m / design.span_m * spec.height_scale
    return ((heights - heights.min()) * scale).astype(np.float32)


def _resample(canvas: np.ndarray, size: int) -> np.ndarray:
    """Cubic-spline samples at `size` evenly spaced points a side, the corners on the corners.

    Shrinking low-passes first, so detail finer than the new spacing does not alias into
    false bumps (a 65-vertex terrain is the 513 one seen from afar, not a different one).
    """
    side = canvas.shape[0]
    if size == side:
        return canvas
    factor = (side - 1) / (size - 1)
    if factor > 1:
        canvas = ndimage.gaussian_filter(canvas, 0.5 * factor, mode="reflect")
    coords = np.linspace(0.0, side - 1.0, size)
    spline = ndimage.spline_filter(canvas, order=3, mode="mirror")
    grid = np.meshgrid(coords, coords, indexing="ij")
    return ndimage.map_coordinates(spline, grid, order=3, mode="mirror", prefilter=False)


# -- the mesh -------------------------------------------------------------------------------------

# linear RGB of the ramp (sRGB values converted: glTF's COLOR_0 is linear)
_SAND = (0.76, 0.70, 0.50)
_GRASS = (0.33, 0.49, 0.20)
_FOREST = (0.20, 0.33, 0.15)
_ROCK = (0.45, 0.42, 0.38)
_SNOW = (0.94, 0.95, 0.97)


def _linear(rgb: tuple[float, float, float]) -> np.ndarray:
    c = np.asarray(rgb, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _square(heights: np.ndarray) -> np.ndarray:
    h = np.asarray(heights)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] < 2:
        raise ValueError(f"a heightmap is square with at least 2x2 vertices, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise ValueError("the heightmap has NaN or infinite heights")
    return h


def _check(heights: np.ndarray, extent_m: float) -> np.ndarray:
    if not extent_m > 0:
        raise ValueError(f"extent_m must be positive, got {extent_m}")
    return _square(heights)


def terrain_mesh(heights: np.ndarray, extent_m: float, *, alpine: bool = True) -> Mesh:
    """The heightmap as a grid mesh centred at the origin (x right, z toward the viewer, y up).

    Normals are the surface's (central differences), UVs run 0..1 over the square (u with
    x, v with z, so the heightmap as an image lies on it unflipped), colours follow height
    and slope: sand low, grass, forest, rock high or steep, snow on high gentle ground.
    With `alpine` off (a scene's few metres of relief, where snow on a hillock would be
    absurd) the high ground stays green.
    """
    h = _check(heights, extent_m)
    n = h.shape[0]
    step = extent_m / (n - 1)
    axis = np.arange(n, dtype=np.float64) * step - extent_m / 2
    zz, xx = np.meshgrid(axis, axis, indexing="ij")
    positions = np.stack([xx, h.astype(np.float64), zz], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a = (i * n + j).ravel()
    b, c, d = a + 1, a + n, a + n + 1
    # (a, c, d) and (a, d, b): counter-clockwise seen from +y, split along the a-d diagonal
    indices = np.stack([np.stack([a, c, d], 1), np.stack([a, d, b], 1)], 1).reshape(-1, 3)
    dz, dx = np.gradient(h.astype(np.float64), step)
    normals = np.stack([-dx, np.ones_like(dx), -dz], axis=-1).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    uv = np.arange(n, dtype=np.float64) / (n - 1)
    vv, uu = np.meshgrid(uv, uv, indexing="ij")
    uvs = np.stack([uu, vv], axis=-1).reshape(-1, 2)
    return Mesh(positions, indices, normals, _colours(h, normals, alpine), uvs)


def _colours(h: np.ndarray, normals: np.ndarray, alpine: bool = True) -> np.ndarray:
    low, high = float(h.min()), float(h.max())
    t = ((h - low) / (high - low)).ravel() if high > low else np.zeros(h.size)
    stops = [0.0, 0.06, 0.12, 0.45, 0.7, 0.8, 0.88, 1.0]
    if alpine:
        ramp = [_SAND, _SAND, _GRASS, _GRASS, _FOREST, _ROCK, _SNOW, _SNOW]
    else:
        ramp = [_SAND, _SAND, _GRASS, _GRASS, _FOREST, _FOREST, _FOREST, _FOREST]
    linear = np.stack([_linear(c) for c in ramp])
    rgb = np.stack([np.interp(t, stops, linear[:, k]) for k in range(3)], axis=1)
    steepness = np.degrees(np.arccos(np.clip(normals[:, 1], -1.0, 1.0)))
    rock = np.clip((steepness - 28.0) / 14.0, 0.0, 1.0)[:, None]  # 28-42 degrees: grass gives way to rock
    rock = rock * rock * (3 - 2 * rock)
    rgb = rgb * (1 - rock) + _linear(_ROCK)[None, :] * rock
    return np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1).astype(np.float32)


def height_at(heights: np.ndarray, extent_m: float, x: float, z: float) -> float:
    """The height of `terrain_mesh`'s surface at (x, z), on its triangles; outside the square, at its edge."""
    h = np.asarray(heights)
    n = h.shape[0]
    step = extent_m / (n - 1)
    u = min(max((x + extent_m / 2) / step, 0.0), n - 1.0)
    v = min(max((z + extent_m / 2) / step, 0.0), n - 1.0)
    j, i = min(int(u), n - 2), min(int(v), n - 2)
    fu, fv = u - j, v - i
    ha, hb, hc, hd = (float(h[i, j]), float(h[i, j + 1]), float(h[i + 1, j]), float(h[i + 1, j + 1]))
    if fv >= fu:  # triangle (a, c, d)
        return ha + fv * (hc - ha) + fu * (hd - hc)
    return ha + fu * (hb - ha) + fv * (hd - hb)  # triangle (a, d, b)


def lod_heights(heights: np.ndarray, level: int) -> np.ndarray:
    """The heightmap with (n - 1) / 2^level + 1 vertices a side (at least 2).

    When 2^level divides n - 1 the coarser grid keeps every 2^level-th vertex, so each of
    its vertices lies on the full mesh; otherwise it samples the full mesh bilinearly.
    """
    h = np.asarray(heights)
    n = h.shape[0]
    every = 2**level
    if (n - 1) % every == 0 and (n - 1) // every >= 1:
        return np.ascontiguousarray(h[::every, ::every])
    m = max(2, (n - 1) // every + 1)
    coords = np.linspace(0.0, n - 1.0, m)
    grid = np.meshgrid(coords, coords, indexing="ij")
    return ndimage.map_coordinates(h.astype(np.float64), grid, order=1).astype(h.dtype)


def lod_meshes(heights: np.ndarray, extent_m: float, levels: int) -> list[Mesh]:
    """`levels` meshes, the full one first, each with half the vertices a side of the one before."""
    if levels < 1:
        raise ValueError(f"levels counts the full mesh too: at least 1, got {levels}")
    return [terrain_mesh(lod_heights(heights, k), extent_m) for k in range(levels)]


# -- formats ----------------------------------------------------------------------------------------


def png16(heights: np.ndarray) -> tuple[bytes, float, float]:
    """A 16-bit greyscale PNG (row 0 at the top = z most negative) and the heights 0 and 65535 stand for."""
    from PIL import Image

    h = _square(heights).astype(np.float64)
    low, high = float(h.min()), float(h.max())
    scaled = (h - low) / (high - low) * 65535.0 if high > low else np.zeros_like(h)
    image = Image.fromarray(np.round(scaled).astype("<u2"))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), low, high


def f32(heights: np.ndarray) -> bytes:
    """Little-endian float32, row-major (row i is z = -extent/2 + i*step)."""
    return np.ascontiguousarray(heights, dtype="<f4").tobytes()


def terrain_glb(heights: np.ndarray, extent_m: float, lods: int = 1) -> bytes:
    """A GLB with the node `terrain`; coarser levels as MSFT_lod nodes `terrain_lod1`.. outside the scene tree."""
    h = _check(heights, extent_m)
    meshes = lod_meshes(h, extent_m, lods)
    extras: dict = {
        "size": int(h.shape[0]),
        "extent_m": float(extent_m),
        "min_height": float(h.min()),
        "max_height": float(h.max()),
    }
    levels = [Node(f"terrain_lod{k}", mesh, extras={"lod": k}) for k, mesh in enumerate(meshes[1:], start=1)]
    if levels:
        # a level per halving of the screen height the terrain covers
        extras["MSFT_screencoverage"] = [round(0.5**k, 6) for k in range(1, lods + 1)]
    return write_glb([Node("terrain", meshes[0], extras=extras, lods=levels)])
