"""The procedural asset library: every object a world can hold, built in code from a few primitives.

Nothing is downloaded or read from disk: each asset is a handful of trimesh primitives
(boxes, cylinders, cones, icospheres) and a few lathed or lofted solids, one flat
vertex colour per part, merged into one `Mesh` (one draw call per object). Shapes are
low poly on purpose: a scene holds hundreds of objects and is rendered twice per frame
on a headset. Sizes are real-world metres so a generated world feels right at 1:1.

Conventions (the layout and the GLB writer rely on them): Y up, -Z forward, the origin
at the centre of the asset's base, the base at y = 0; things that are long (fence,
path, bridge, boats, logs) run along X; things with a front (door, sign board, windmill
sails) face +Z. Every build is deterministic (rocks use fixed seeds), so the same
prompt gives a bitwise-identical GLB.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh
import trimesh.creation

from xrserve.worlds.mesh import Mesh, merge

RGBA = tuple[float, float, float, float]
Vec = Sequence[float] | np.ndarray  # a point or direction, metres

#: The fixed categories, in the order the extraction and matching layers list them.
CATEGORIES: tuple[str, ...] = (
    "tree",
    "bush",
    "flower",
    "rock",
    "log",
    "tent",
    "house",
    "tower",
    "well",
    "fence",
    "path",
    "bridge",
    "water",
    "campfire",
    "sign",
    "lamp",
    "bench",
    "table",
    "chair",
    "boat",
    "crate",
    "barrel",
    "cart",
    "statue",
    "windmill",
    "mushroom",
    "placeholder",
)


def srgb(hex_color: str, alpha: float = 1.0) -> RGBA:
    """Linear RGBA from an sRGB hex colour: colours are picked by eye in sRGB, glTF's COLOR_0 is linear."""
    h = hex_color.lstrip("#")
    channels = [int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return (round(r, 6), round(g, 6), round(b, 6), float(alpha))


#: Colour words the extraction layer can hand to `recolored` (linear RGBA, opaque).
COLORS: dict[str, RGBA] = {
    "red": srgb("#c8302c"),
    "orange": srgb("#e8822a"),
    "yellow": srgb("#f2d23c"),
    "green": srgb("#3f9a3c"),
    "blue": srgb("#2f62c8"),
    "purple": srgb("#7d3fa8"),
    "violet": srgb("#8f5fd0"),
    "pink": srgb("#f08cb4"),
    "white": srgb("#f2f2f0"),
    "black": srgb("#1c1c1e"),
    "grey": srgb("#8c8c8c"),
    "gray": srgb("#8c8c8c"),
    "brown": srgb("#7a4e2c"),
    "golden": srgb("#d4a72c"),
    "gold": srgb("#d4a72c"),
    "silver": srgb("#c0c4c8"),
    "cyan": srgb("#3cc8d8"),
    "turquoise": srgb("#3cc8b4"),
    "teal": srgb("#2a8a84"),
    "beige": srgb("#d8c8a0"),
    "navy": srgb("#1f2f6a"),
    "maroon": srgb("#6a1f24"),
}

# the palette the assets are painted with (sRGB picked by eye, stored linear)
_BARK = srgb("#6b4a2b")
_DARK_BARK = srgb("#4a3520")
_PINE = srgb("#2f5d34")
_LEAF = srgb("#4f8a3a")
_LIGHT_LEAF = srgb("#8fbf4a")
_PALM_LEAF = srgb("#4c9a3a")
_PALM_TRUNK = srgb("#a0804f")
_BIRCH_BARK = srgb("#e8e4d8")
_SCAR = srgb("#2e2b28")
_DEAD_WOOD = srgb("#7a6a58")
_ROCK = srgb("#8a8a85")
_DARK_ROCK = srgb("#6e6e6a")
_WOOD = srgb("#a57a4c")
_PLANK = srgb("#b8895a")
_DARK_WOOD = srgb("#5e4027")
_CUT_WOOD = srgb("#d9b98a")
_CANVAS = srgb("#d9822b")
_CANVAS_GREEN = srgb("#4f7a3a")
_OPENING = srgb("#2a2420")
_LOG_WALL = srgb("#8a5a33")
_CREAM = srgb("#efe6d2")
_STONE = srgb("#9a958c")
_LIGHT_STONE = srgb("#c8c2b6")
_ROOF_BROWN = srgb("#5a3426")
_ROOF_RED = srgb("#a33c2a")
_SLATE = srgb("#4a5058")
_BRICK = srgb("#8c4a3a")
_GLASS = srgb("#9cc7e0")
_WATER = srgb("#3d7fbf", 0.8)
_LILY = srgb("#3f8a3a")
_FLAME = srgb("#ff8c1a")
_FLAME_CORE = srgb("#ffd23f")
_METAL = srgb("#2f2f33")
_LIGHT = srgb("#ffe9a3")
_DIRT = srgb("#a08a66")
_PAVING = srgb("#8f8a80")
_GRAVEL = srgb("#6f6a62")
_WHITE = srgb("#f2f2ee")
_MARBLE = srgb("#d8d4cc")
_MUSHROOM_RED = srgb("#c8302c")
_MUSHROOM_STEM = srgb("#efe8d8")
_SAIL = srgb("#f4f1e8")
_HULL = srgb("#2f5f8a")
_PLACEHOLDER = srgb("#9a9a9a")
_PLACEHOLDER_POST = srgb("#5a5a5a")

_Y = (0.0, 1.0, 0.0)
_X = (1.0, 0.0, 0.0)
_Z = (0.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- parts and primitives


@dataclass(frozen=True)
class _Part:
    """One single-coloured piece of an asset; `main` marks what `recolored` paints."""

    mesh: trimesh.Trimesh
    color: RGBA
    main: bool = False


def _rotate(tm: trimesh.Trimesh, degrees: float, axis: Sequence[float]) -> trimesh.Trimesh:
    """Rotated about an axis through the origin (right-handed)."""
    tm.apply_transform(trimesh.transformations.rotation_matrix(math.radians(degrees), axis))
    return tm


def _move(tm: trimesh.Trimesh, offset: Vec) -> trimesh.Trimesh:
    tm.apply_translation(np.asarray(offset, dtype=np.float64))
    return tm


def _scale(tm: trimesh.Trimesh, factors: Sequence[float]) -> trimesh.Trimesh:
    matrix = np.diag([*map(float, factors), 1.0])
    tm.apply_transform(matrix)
    return tm


def _floor(tm: trimesh.Trimesh, y: float = 0.0) -> trimesh.Trimesh:
    """Vertices below `y` pushed up to it: round shapes that rest on the ground get a flat underside."""
    v = np.array(tm.vertices, dtype=np.float64)
    v[:, 1] = np.maximum(v[:, 1], y)
    tm.vertices = v
    return tm


def _box(extents: Sequence[float], center: Sequence[float] = (0.0, 0.0, 0.0), yaw: float = 0.0) -> trimesh.Trimesh:
    """An axis-aligned box (turned about Y by `yaw` degrees) centred at `center`."""
    tm = trimesh.creation.box(extents=[float(e) for e in extents])
    if yaw:
        _rotate(tm, yaw, _Y)
    return _move(tm, center)


def _slab(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> trimesh.Trimesh:
    """A box given by its bounds (either order): most furniture is easier to read as spans than as centres."""
    return _box((abs(x1 - x0), abs(y1 - y0), abs(z1 - z0)), ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2))


def _rod(radius: float, p0: Vec, p1: Vec, sections: int = 8) -> trimesh.Trimesh:
    """A cylinder from p0 to p1 (trunks, posts, branches, axles); sections=4 makes a square beam."""
    return trimesh.creation.cylinder(radius=radius, segment=[list(p0), list(p1)], sections=sections)


def _cone(
    radius: float,
    height: float,
    base: Sequence[float] = (0.0, 0.0, 0.0),
    sections: int = 8,
    yaw: float = 0.0,
) -> trimesh.Trimesh:
    """An upright cone with its base centre at `base` (trimesh builds cones along +Z)."""
    tm = trimesh.creation.cone(radius=radius, height=height, sections=sections)
    _rotate(tm, -90.0, _X)  # +Z -> +Y
    if yaw:
        _rotate(tm, yaw, _Y)
    return _move(tm, base)


def _blob(
    radius: float,
    center: Sequence[float],
    seed: int,
    squash: Sequence[float] = (1.0, 1.0, 1.0),
    subdivisions: int = 1,
    jitter: float = 0.12,
    floor: float | None = None,
) -> trimesh.Trimesh:
    """A lumpy icosphere (foliage, rocks): radial noise from a fixed seed keeps it deterministic."""
    tm = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    noise = np.random.default_rng(seed).uniform(1.0 - jitter, 1.0 + jitter, len(tm.vertices))
    tm.vertices = np.asarray(tm.vertices) * noise[:, None]
    _scale(tm, [radius * s for s in squash])
    _move(tm, center)
    if floor is not None:
        _floor(tm, floor)
    return tm


def _loft(rings: Sequence[np.ndarray], start: Sequence[float], end: Sequence[float]) -> trimesh.Trimesh:
    """A closed solid through closed rings of equal length, capped by fans to a start and an end point.

    The general form behind lathed shapes (barrels, towers, domes) and boat hulls: rings
    are swept in order, and the winding is fixed afterwards by the sign of the volume.
    """
    n = len(rings[0])
    vertices = np.concatenate([np.asarray(start, np.float64)[None], *rings, np.asarray(end, np.float64)[None]])
    j = np.arange(n)
    jn = (j + 1) % n
    end_index = len(vertices) - 1
    faces = [np.stack([np.zeros(n, int), 1 + jn, 1 + j], axis=1)]
    for k in range(len(rings) - 1):
        a, b = 1 + k * n, 1 + (k + 1) * n
        faces.append(np.stack([a + j, a + jn, b + jn], axis=1))
        faces.append(np.stack([a + j, b + jn, b + j], axis=1))
    last = 1 + (len(rings) - 1) * n
    faces.append(np.stack([np.full(n, end_index), last + j, last + jn], axis=1))
    tm = trimesh.Trimesh(vertices, np.concatenate(faces), process=False)
    if tm.volume < 0:
        tm.invert()
    return tm


def _lathe(profile: Sequence[tuple[float, float]], sections: int = 12, phase: float = 0.0) -> trimesh.Trimesh:
    """A solid of revolution about +Y from a (radius, y) profile that starts and ends on the axis."""
    angles = np.radians(phase) + 2 * np.pi * np.arange(sections) / sections
    rings = [np.stack([r * np.cos(angles), np.full(sections, y), r * np.sin(angles)], axis=1) for r, y in profile[1:-1]]
    return _loft(rings, (0.0, profile[0][1], 0.0), (0.0, profile[-1][1], 0.0))


def _prism(polygon: Sequence[tuple[float, float]], z0: float, z1: float) -> trimesh.Trimesh:
    """A convex polygon in the XY plane extruded from z0 to z1 (roofs, tents, sails)."""
    p = np.asarray(polygon, dtype=np.float64)
    c = p.mean(axis=0)
    rings = [np.column_stack([p, np.full(len(p), z)]) for z in (z0, z1)]
    return _loft(rings, (c[0], c[1], z0), (c[0], c[1], z1))


# ----------------------------------------------------------------------------- shared pieces


def _gable_roof(
    width: float, depth: float, wall_h: float, roof_h: float, overhang: float, roof: RGBA, wall: RGBA
) -> list[_Part]:
    """A gable roof with its ridge along X: wall-coloured gables and two overhanging slabs."""
    gable = _prism([(-depth / 2, wall_h), (depth / 2, wall_h), (0.0, wall_h + roof_h)], -width / 2, width / 2)
    _rotate(gable, 90.0, _Y)  # the prism's XY profile into the ZY plane, extruded along X (the profile is symmetric)
    theta = math.atan2(roof_h, depth / 2)
    t = 0.14
    slope = math.hypot(depth / 2, roof_h) + overhang + t
    parts = [_Part(gable, wall)]
    for side in (1.0, -1.0):
        # a slab down the slope from just above the ridge, offset outwards by half its thickness
        direction = np.array([0.0, -math.sin(theta), side * math.cos(theta)])
        normal = np.array([0.0, math.cos(theta), side * math.sin(theta)])
        ridge = np.array([0.0, wall_h + roof_h, 0.0])
        center = ridge + direction * (slope / 2 - t) + normal * (t / 2)
        slab = trimesh.creation.box(extents=[width + 2 * overhang, t, slope])
        _rotate(slab, side * math.degrees(theta), _X)
        parts.append(_Part(_move(slab, center), roof))
    return parts


def _house(
    width: float,
    depth: float,
    wall_h: float,
    roof_h: float,
    wall: RGBA,
    roof: RGBA,
    storeys: int = 1,
    chimney: RGBA | None = None,
    trim: RGBA = _DARK_WOOD,
) -> list[_Part]:
    """Walls (the main part), a gable roof, a door and windows on the +Z front, windows at the back."""
    parts = [_Part(_slab(-width / 2, width / 2, 0.0, wall_h, -depth / 2, depth / 2), wall, main=True)]
    gable, *slabs = _gable_roof(width, depth, wall_h, roof_h, 0.35, roof, wall)
    parts += [_Part(gable.mesh, wall, main=True), *slabs]  # the gables are wall too: "a white cottage"
    front = depth / 2
    parts.append(_Part(_slab(-0.45, 0.45, 0.0, 2.0, front - 0.02, front + 0.06), trim))
    storey_h = wall_h / storeys
    for s in range(storeys):
        y = s * storey_h + 1.45 if s == 0 else s * storey_h + storey_h / 2
        xs = (-width / 3, width / 3) if s == 0 else (-width / 3, 0.0, width / 3)
        for x in xs:
            for z, sign in ((front, 1.0), (-front, -1.0)):
                parts.append(_Part(_slab(x - 0.4, x + 0.4, y - 0.4, y + 0.4, z - 0.02 * sign, z + 0.05 * sign), _GLASS))
    for z in (-depth / 4, depth / 4):  # side windows
        y = 1.45
        for x, sign in ((width / 2, 1.0), (-width / 2, -1.0)):
            parts.append(_Part(_slab(x - 0.02 * sign, x + 0.05 * sign, y - 0.35, y + 0.35, z - 0.35, z + 0.35), _GLASS))
    if chimney is not None:
        x = width / 2 - 0.9
        top = wall_h + roof_h + 0.5
        parts.append(_Part(_slab(x - 0.3, x + 0.3, wall_h, top, -depth / 4 - 0.3, -depth / 4 + 0.3), chimney))
    return parts


def _rock(
    radius: float, center: Sequence[float], seed: int, squash: Sequence[float], subdiv: int = 1
) -> trimesh.Trimesh:
    return _blob(radius, center, seed, squash, subdivisions=subdiv, jitter=0.18, floor=0.0)


def _hull(length: float, beam: float, depth: float, sheer: float, stations: int = 9) -> tuple[list[_Part], float]:
    """A hollow boat hull along X (bow at +X): one closed solid, split into the outer skin (the main
    part) and the planked inside with the gunwale's top.

    Each station is a U-shaped cross-section with an inner U offset by the planking, so
    looking into the boat shows the inside of the hull rather than a flat lid. Returns
    the parts and the gunwale height amidships.
    """
    t = 0.06
    phis = np.radians(np.linspace(-90.0, 90.0, 9))
    rings = []
    xs = np.linspace(-length / 2, length / 2, stations + 2)[1:-1]
    for x in xs:
        u = x / (length / 2)
        width = beam / 2 * math.sqrt(max(1.0 - u**2, 0.0)) ** 0.8 * (1.0 - 0.15 * max(u, 0.0))
        keel = depth * 0.25 * u**4
        top = depth + sheer * u**2
        outer = np.column_stack([np.full(9, x), keel + (top - keel) * (1 - np.cos(phis)), width * np.sin(phis)])
        inner_w = max(width - t, width * 0.4)
        inner_y0 = keel + t
        inner = np.column_stack(
            [np.full(9, x), inner_y0 + (top - inner_y0) * (1 - np.cos(phis[::-1])), inner_w * np.sin(phis[::-1])]
        )
        rings.append(np.concatenate([outer, inner]))
    tip = depth + sheer
    tm = _loft(rings, (-length / 2, tip, 0.0), (length / 2, tip, 0.0))
    # the inside and the gunwale's top are planking: faces whose ring vertices are all inner or rim ones
    n = len(rings[0])
    local = (np.asarray(tm.faces) - 1) % n
    pole = (np.asarray(tm.faces) == 0) | (np.asarray(tm.faces) == len(tm.vertices) - 1)
    inner_or_rim = (local >= 9) | (local == 0) | (local == 8) | pole
    inside = inner_or_rim.all(axis=1)
    hull = tm.submesh([np.flatnonzero(~inside)], append=True)
    floor = tm.submesh([np.flatnonzero(inside)], append=True)
    assert isinstance(hull, trimesh.Trimesh) and isinstance(floor, trimesh.Trimesh)  # append=True: one mesh
    return [_Part(hull, _HULL, main=True), _Part(floor, _PLANK)], depth


# ----------------------------------------------------------------------------- trees and plants


def _pine() -> list[_Part]:
    parts = [_Part(_rod(0.25, (0, 0, 0), (0, 2.6, 0)), _BARK)]
    for r, h, y, yaw in ((2.6, 4.0, 1.6, 0.0), (2.0, 3.6, 3.8, 22.5), (1.3, 3.2, 6.0, 0.0)):
        parts.append(_Part(_cone(r, h, (0, y, 0), sections=9, yaw=yaw), _PINE, main=True))
    return parts[1:] + parts[:1]


def _oak() -> list[_Part]:
    trunk = _lathe([(0, 0), (0.5, 0), (0.36, 0.4), (0.3, 3.4), (0, 3.4)], sections=8)
    branches = [_rod(0.12, (0, 2.4, 0), (1.1, 3.8, 0.4), 6), _rod(0.11, (0, 2.6, 0), (-1.0, 3.9, -0.5), 6)]
    crown = [
        _blob(2.1, (0.0, 5.0, 0.0), 1),
        _blob(1.7, (1.4, 4.2, 0.5), 2),
        _blob(1.6, (-1.3, 4.3, -0.5), 3),
        _blob(1.5, (0.2, 5.9, -0.6), 4),
        _blob(1.4, (-0.3, 4.2, 1.3), 5),
    ]
    return [_Part(c, _LEAF, main=True) for c in crown] + [_Part(trunk, _BARK)] + [_Part(b, _BARK) for b in branches]


def _birch() -> list[_Part]:
    trunk = _lathe([(0, 0), (0.17, 0), (0.15, 0.5), (0.1, 7.0), (0, 7.0)], sections=8)
    scars = []  # the dark marks of birch bark: thin plates on the trunk's surface
    for y, angle in ((0.9, 10.0), (1.7, 140.0), (2.6, 260.0), (3.4, 60.0), (4.3, 190.0), (5.2, 310.0)):
        r = 0.165 - 0.008 * y
        a = math.radians(angle)
        scars.append(_box((0.05, 0.07, 0.17), (r * math.cos(a), y, r * math.sin(a)), yaw=-angle))
    crown = [
        _blob(1.0, (0.0, 6.6, 0.0), 11, (1.3, 1.9, 1.3)),
        _blob(0.9, (0.5, 5.0, 0.3), 12, (1.2, 1.5, 1.2)),
        _blob(0.8, (-0.5, 5.4, -0.3), 13, (1.2, 1.5, 1.2)),
    ]
    return (
        [_Part(c, _LIGHT_LEAF, main=True) for c in crown]
        + [_Part(trunk, _BIRCH_BARK)]
        + [_Part(s, _SCAR) for s in scars]
    )


def _palm() -> list[_Part]:
    parts: list[_Part] = []
    n = 6
    points = [(0.9 * (i / n) ** 2, 7.0 * i / n, 0.0) for i in range(n + 1)]
    for i in range(n):
        r = 0.22 - 0.012 * i
        color = _PALM_TRUNK if i % 2 == 0 else _BARK
        parts.append(_Part(_rod(r, points[i], points[i + 1], 8), color))
    crown = np.array(points[-1])
    for k in range(7):
        leaf = trimesh.creation.cone(radius=0.45, height=3.0, sections=4)
        _scale(leaf, (1.0, 0.12, 1.0))  # a flat blade
        _rotate(leaf, 90.0, _Y)  # +Z -> +X
        _rotate(leaf, -28.0 - 6.0 * (k % 2), _Z)  # droop
        _rotate(leaf, k * 360.0 / 7 + 10.0, _Y)
        parts.insert(0, _Part(_move(leaf, crown + (0, 0.15, 0)), _PALM_LEAF, main=True))
    for k in range(3):
        a = math.radians(k * 120.0 + 30.0)
        nut = trimesh.creation.icosphere(subdivisions=1, radius=0.13)
        parts.append(_Part(_move(nut, crown + (0.25 * math.cos(a), -0.12, 0.25 * math.sin(a))), _DARK_BARK))
    return parts


def _dead_tree() -> list[_Part]:
    trunk = _lathe([(0, 0), (0.38, 0), (0.3, 0.4), (0.16, 4.4), (0, 4.6)], sections=8)
    branches = [
        ((0, 2.2, 0), (1.5, 3.6, 0.3), 0.09),
        ((1.0, 3.1, 0.2), (1.7, 4.3, -0.2), 0.05),
        ((0, 2.8, 0), (-1.3, 4.1, -0.5), 0.08),
        ((-0.8, 3.6, -0.3), (-1.0, 4.7, 0.2), 0.05),
        ((0, 3.6, 0), (0.3, 4.9, 1.1), 0.07),
        ((0, 1.6, 0), (-0.6, 2.4, 1.0), 0.06),
    ]
    return [_Part(trunk, _DEAD_WOOD, main=True)] + [_Part(_rod(r, a, b, 6), _DEAD_WOOD) for a, b, r in branches]


def _bush() -> list[_Part]:
    blobs = [
        _blob(0.65, (0.0, 0.55, 0.0), 21, floor=0.0),
        _blob(0.5, (0.55, 0.4, 0.2), 22, floor=0.0),
        _blob(0.5, (-0.5, 0.42, -0.15), 23, floor=0.0),
        _blob(0.42, (0.05, 0.38, 0.55), 24, floor=0.0),
    ]
    return [_Part(b, _LEAF, main=True) for b in blobs]


def _hedge() -> list[_Part]:
    parts = [_Part(_slab(-1.5, 1.5, 0.0, 0.9, -0.4, 0.4), _PINE, main=True)]
    for i, x in enumerate((-1.0, 0.0, 1.0)):
        parts.append(_Part(_blob(0.55, (x, 0.85, 0.0), 31 + i, (0.95, 0.5, 0.72)), _PINE, main=True))
    return parts


def _flowers() -> list[_Part]:
    heads = [srgb(c) for c in ("#d83a3a", "#f2d23c", "#f08cb4", "#f4f1e8", "#8f5fd0", "#e8822a", "#d83a3a")]
    spots = [(0.0, 0.0, 0.45), (0.3, 0.1, 0.38), (-0.28, 0.18, 0.42), (0.12, -0.32, 0.35)]
    spots += [(-0.2, -0.25, 0.4), (0.34, -0.18, 0.3), (-0.05, 0.36, 0.33)]
    parts: list[_Part] = []
    for (x, z, h), color in zip(spots, heads):
        parts.append(_Part(_move(trimesh.creation.icosphere(subdivisions=0, radius=0.06), (x, h, z)), color, True))
        parts.append(_Part(_rod(0.012, (x, 0, z), (x, h, z), 4), _LEAF))
    for i, (x, z) in enumerate(((0.15, 0.15), (-0.2, 0.0), (0.1, -0.2))):
        parts.append(_Part(_blob(0.22, (x, 0.0, z), 41 + i, (1.0, 0.45, 1.0), floor=0.0), _LEAF))
    return parts


def _sunflower() -> list[_Part]:
    head_y = 1.9
    petals = _rod(0.28, (0, head_y, 0.05), (0, head_y, 0.09), 12)
    center = _rod(0.14, (0, head_y, 0.07), (0, head_y, 0.13), 12)
    parts = [_Part(petals, srgb("#f2c21c"), main=True), _Part(center, srgb("#4a3020"))]
    parts.append(_Part(_rod(0.035, (0, 0, 0), (0, head_y, 0.05), 6), _LEAF))
    for y, yaw in ((0.7, 0.0), (1.15, 180.0)):
        leaf = trimesh.creation.cone(radius=0.14, height=0.45, sections=4)
        _scale(leaf, (1.0, 0.15, 1.0))
        _rotate(leaf, 90.0, _Y)
        _rotate(leaf, 20.0, _Z)
        _rotate(leaf, yaw, _Y)
        parts.append(_Part(_move(leaf, (0, y, 0)), _LEAF))
    return parts


def _mushroom_at(x: float, z: float, scale: float, seed: int) -> list[_Part]:
    stem_h = 0.13 * scale
    stem = _lathe([(0, 0), (0.04 * scale, 0), (0.03 * scale, stem_h), (0, stem_h)], sections=8)
    _move(stem, (x, 0, z))
    cap_profile = [
        (0, stem_h - 0.01 * scale),
        (0.11 * scale, stem_h - 0.01 * scale),
        (0.1 * scale, stem_h + 0.035 * scale),
    ]
    cap_profile += [(0.07 * scale, stem_h + 0.065 * scale), (0, stem_h + 0.08 * scale)]
    cap = _move(_lathe(cap_profile, sections=10), (x, 0, z))
    parts = [_Part(cap, _MUSHROOM_RED, main=True), _Part(stem, _MUSHROOM_STEM)]
    rng = np.random.default_rng(seed)
    for k in range(5):
        a = rng.uniform(0, 2 * np.pi)
        rr = (0.035 + 0.035 * (k % 2)) * scale
        y = stem_h + (0.075 if rr < 0.05 * scale else 0.05) * scale
        spot = trimesh.creation.icosphere(subdivisions=0, radius=0.014 * scale)
        parts.append(_Part(_move(spot, (x + rr * math.cos(a), y, z + rr * math.sin(a))), _MUSHROOM_STEM))
    return parts


def _mushroom() -> list[_Part]:
    return _mushroom_at(0.0, 0.0, 1.6, 51) + _mushroom_at(0.14, 0.08, 1.1, 52) + _mushroom_at(-0.1, 0.12, 0.8, 53)


def _giant_mushroom() -> list[_Part]:
    return _mushroom_at(0.0, 0.0, 18.0, 61)


# ----------------------------------------------------------------------------- rocks and logs


def _boulder() -> list[_Part]:
    return [_Part(_rock(1.0, (0, 0.35, 0), 71, (1.25, 0.9, 1.0), subdiv=2), _ROCK, main=True)]


def _small_rock() -> list[_Part]:
    return [_Part(_rock(0.3, (0, 0.1, 0), 72, (1.2, 0.8, 1.0)), _ROCK, main=True)]


def _rock_pile() -> list[_Part]:
    rocks = [
        _rock(0.55, (0.0, 0.2, 0.0), 81, (1.2, 0.9, 1.0)),
        _rock(0.4, (0.75, 0.12, 0.2), 82, (1.1, 0.8, 1.0)),
        _rock(0.38, (-0.7, 0.1, 0.25), 83, (1.0, 0.9, 1.2)),
        _rock(0.32, (0.2, 0.1, -0.65), 84, (1.2, 0.8, 1.0)),
        _rock(0.3, (0.15, 0.62, 0.05), 85, (1.0, 0.8, 1.0)),
        _rock(0.25, (-0.35, 0.05, -0.5), 86, (1.0, 0.9, 1.0)),
    ]
    return [_Part(r, _ROCK if i % 2 == 0 else _DARK_ROCK, main=True) for i, r in enumerate(rocks)]


def _log() -> list[_Part]:
    body = _rod(0.3, (-1.5, 0.3, 0), (1.5, 0.3, 0), 10)
    ends = [_rod(0.24, (x, 0.3, 0), (x + 0.02 * s, 0.3, 0), 10) for x, s in ((1.5, 1), (-1.5, -1))]
    return [_Part(body, _BARK, main=True)] + [_Part(e, _CUT_WOOD) for e in ends]


def _stump() -> list[_Part]:
    body = _lathe([(0, 0), (0.5, 0), (0.42, 0.12), (0.38, 0.48), (0, 0.48)], sections=10)
    top = _rod(0.33, (0, 0.48, 0), (0, 0.5, 0), 10)
    roots = [_box((0.35, 0.16, 0.12), (0.45, 0.08, 0), yaw=a) for a in (0.0, 130.0, 250.0)]
    for r, a in zip(roots, (0.0, 130.0, 250.0)):
        _move(r, (-0.45, 0, 0))
        _move(r, (0.45 * math.cos(math.radians(a)), 0, -0.45 * math.sin(math.radians(a))))
    return [_Part(body, _BARK, main=True), _Part(top, _CUT_WOOD)] + [_Part(r, _BARK) for r in roots]


# ----------------------------------------------------------------------------- shelter and buildings


def _tent() -> list[_Part]:
    body = _prism([(-0.9, 0.0), (0.9, 0.0), (0.0, 1.3)], -1.1, 1.1)
    door = _prism([(-0.42, 0.0), (0.42, 0.0), (0.0, 0.95)], 1.1, 1.13)
    poles = [_rod(0.025, (0, 0, z), (0, 1.45, z), 6) for z in (-1.15, 1.16)]
    return [_Part(body, _CANVAS, main=True), _Part(door, _OPENING)] + [_Part(p, _DARK_WOOD) for p in poles]


def _dome_tent() -> list[_Part]:
    profile = [(0, 0), (1.3, 0), (1.26, 0.35), (1.12, 0.7), (0.85, 1.0), (0.45, 1.2), (0, 1.25)]
    dome = _scale(_lathe(profile, sections=12), (1.0, 1.0, 0.85))
    door = _blob(1.0, (0.0, 0.2, 1.03), 91, (0.42, 0.62, 0.12), jitter=0.0, floor=0.0)
    seam = _scale(
        _lathe([(0, 0), (1.32, 0), (1.28, 0.35), (1.14, 0.7), (0.87, 1.0), (0.46, 1.2), (0, 1.27)], 12), (0.04, 1, 0.87)
    )
    return [_Part(dome, _CANVAS_GREEN, main=True), _Part(door, _OPENING), _Part(seam, _DARK_WOOD)]


def _cabin() -> list[_Part]:
    parts = _house(6.0, 4.0, 2.6, 1.6, _LOG_WALL, _ROOF_BROWN, chimney=_STONE)
    for x in (-3.0, 3.0):  # corner posts
        for z in (-2.0, 2.0):
            parts.append(_Part(_rod(0.14, (x, 0, z), (x, 2.6, z), 6), _DARK_WOOD))
    return parts


def _cottage() -> list[_Part]:
    return _house(5.0, 4.0, 2.5, 2.3, _CREAM, _ROOF_RED, chimney=_BRICK)


def _stone_house() -> list[_Part]:
    return _house(7.0, 5.0, 5.0, 2.0, _STONE, _SLATE, storeys=2, chimney=_STONE)


def _watchtower() -> list[_Part]:
    parts: list[_Part] = []
    half = 1.2
    deck = 6.0
    corners = [(sx * half, sz * half) for sx in (-1, 1) for sz in (-1, 1)]
    for x, z in corners:
        parts.append(_Part(_rod(0.13, (x * 1.15, 0, z * 1.15), (x, deck + 2.2, z), 4), _WOOD, main=True))
    for (x0, z0), (x1, z1) in (
        (corners[0], corners[1]),
        (corners[2], corners[3]),
        (corners[0], corners[2]),
        (corners[1], corners[3]),
    ):
        parts.append(_Part(_rod(0.05, (x0 * 1.1, 0.8, z0 * 1.1), (x1, deck - 0.2, z1), 4), _DARK_WOOD))
        parts.append(_Part(_rod(0.05, (x1 * 1.1, 0.8, z1 * 1.1), (x0, deck - 0.2, z0), 4), _DARK_WOOD))
    parts.append(_Part(_slab(-1.6, 1.6, deck, deck + 0.2, -1.6, 1.6), _PLANK))
    for s in (-1, 1):  # parapet boards
        parts.append(_Part(_slab(-1.6, 1.6, deck + 0.2, deck + 1.1, s * 1.6 - 0.04, s * 1.6 + 0.04), _PLANK))
        parts.append(_Part(_slab(s * 1.6 - 0.04, s * 1.6 + 0.04, deck + 0.2, deck + 1.1, -1.6, 1.6), _PLANK))
    parts.append(_Part(_cone(2.6, 1.6, (0, deck + 2.2, 0), sections=4, yaw=45.0), _ROOF_BROWN))
    return parts


def _stone_tower() -> list[_Part]:
    body = _lathe([(0, 0), (2.4, 0), (2.2, 1.0), (2.2, 9.0), (0, 9.0)], sections=12)
    top = _lathe([(0, 8.8), (2.2, 8.8), (2.55, 9.4), (2.55, 9.6), (0, 9.6)], sections=12)
    parts = [_Part(body, _STONE, main=True), _Part(top, _LIGHT_STONE)]
    for k in range(8):
        a = k * 45.0
        merlon = _box((0.75, 0.7, 0.4), (0, 9.95, 0))
        _move(merlon, (0, 0, 2.3))
        parts.append(_Part(_rotate(merlon, a, _Y), _LIGHT_STONE))
    parts.append(_Part(_slab(-0.55, 0.55, 0.0, 2.1, 2.1, 2.42), _DARK_WOOD))
    for y in (4.0, 6.6):
        parts.append(_Part(_slab(-0.15, 0.15, y, y + 0.9, 2.12, 2.24), _OPENING))
    return parts


def _well() -> list[_Part]:
    ring = trimesh.creation.annulus(r_min=0.6, r_max=0.9, height=0.8, sections=14)
    _rotate(ring, -90.0, _X)
    _move(ring, (0, 0.4, 0))
    water = _rod(0.61, (0, 0.5, 0), (0, 0.52, 0), 14)
    parts = [_Part(ring, _STONE, main=True), _Part(water, _WATER)]
    for x in (-0.75, 0.75):
        parts.append(_Part(_slab(x - 0.07, x + 0.07, 0.8, 2.2, -0.07, 0.07), _WOOD))
    roof = _gable_roof(1.5, 1.3, 2.15, 0.6, 0.15, _ROOF_BROWN, _WOOD)
    parts += roof[1:]  # the slabs only: an open roof
    parts.append(_Part(_rod(0.045, (-0.85, 1.8, 0), (0.85, 1.8, 0), 6), _DARK_WOOD))
    parts.append(_Part(_rod(0.01, (0, 1.8, 0), (0, 1.3, 0), 4), _DARK_WOOD))
    bucket = _lathe([(0, 1.05), (0.1, 1.05), (0.13, 1.3), (0, 1.3)], sections=8)
    parts.append(_Part(bucket, _WOOD))
    return parts


def _windmill() -> list[_Part]:
    body = _lathe([(0, 0), (2.4, 0), (1.7, 7.0), (0, 7.0)], sections=8, phase=22.5)
    roof = _cone(2.0, 2.0, (0, 6.9, 0), sections=8, yaw=22.5)
    parts = [_Part(body, _CREAM, main=True), _Part(roof, _ROOF_BROWN)]
    hub_c = np.array([0.0, 7.4, 1.95])
    parts.append(_Part(_rod(0.22, (0, 7.4, 1.4), hub_c + (0, 0, 0.3), 8), _DARK_WOOD))
    for k in range(4):
        blade = _slab(-0.05, 0.05, 0.3, 4.6, -0.03, 0.03)  # spar
        sail = _slab(0.06, 0.75, 1.2, 4.5, -0.02, 0.02)  # the lattice sail beside it
        for m, color in ((blade, _DARK_WOOD), (sail, _SAIL)):
            _rotate(m, 45.0 + 90.0 * k, _Z)
            parts.append(_Part(_move(m, hub_c + (0, 0, 0.25)), color))
    parts.append(_Part(_slab(-0.5, 0.5, 0.0, 2.0, 2.12, 2.38), _DARK_WOOD))
    parts.append(_Part(_slab(-0.35, 0.35, 4.0, 4.7, 1.88, 2.02), _GLASS))
    return parts


# ----------------------------------------------------------------------------- fences, paths, bridges, water


def _fence() -> list[_Part]:
    posts = [_slab(x - 0.05, x + 0.05, 0.0, 1.1, -0.05, 0.05) for x in (-1.45, 0.0, 1.45)]
    rails = [_slab(-1.5, 1.5, y - 0.05, y + 0.05, 0.05, 0.1) for y in (0.45, 0.9)]
    return [_Part(r, _WOOD, main=True) for r in rails] + [_Part(p, _DARK_WOOD) for p in posts]


def _picket_fence() -> list[_Part]:
    parts: list[_Part] = []
    for i in range(20):
        x = -1.425 + 0.15 * i
        parts.append(_Part(_slab(x - 0.045, x + 0.045, 0.0, 0.88, -0.02, 0.02), _WHITE, main=True))
        parts.append(_Part(_cone(0.064, 0.12, (x, 0.88, 0), sections=4, yaw=45.0), _WHITE, main=True))
        _scale(parts[-1].mesh, (1.0, 1.0, 0.44))
    for y in (0.25, 0.68):
        parts.append(_Part(_slab(-1.5, 1.5, y - 0.04, y + 0.04, -0.07, -0.02), _WHITE, main=True))
    return parts


def _path() -> list[_Part]:
    return [_Part(_slab(-2.0, 2.0, 0.0, 0.03, -0.6, 0.6), _DIRT, main=True)]


def _stone_path() -> list[_Part]:
    parts = [_Part(_slab(-2.0, 2.0, 0.0, 0.02, -0.7, 0.7), _GRAVEL)]
    for i, x in enumerate(np.linspace(-1.6, 1.6, 6)):
        slab = _rod(0.3, (0, 0.02, 0), (0, 0.04, 0), 6)
        _scale(slab, (1.0, 1.0, 1.4))
        parts.append(_Part(_move(slab, (float(x), 0, 0.12 if i % 2 else -0.12)), _PAVING, main=True))
    return parts


def _bridge() -> list[_Part]:
    parts = [_Part(_slab(-4.0, 4.0, 0.6, 0.8, -1.0, 1.0), _PLANK, main=True)]
    for x in (-3.9, -1.3, 1.3, 3.9):
        for z in (-0.95, 0.95):
            parts.append(_Part(_slab(x - 0.08, x + 0.08, 0.0 if abs(x) > 3 else 0.2, 1.8, z - 0.08, z + 0.08), _WOOD))
    for z in (-0.95, 0.95):
        parts.append(_Part(_slab(-4.0, 4.0, 1.7, 1.8, z - 0.06, z + 0.06), _WOOD))
        parts.append(_Part(_slab(-4.0, 4.0, 1.2, 1.26, z - 0.04, z + 0.04), _WOOD))
    for x in (-3.0, 3.0):  # beams under the deck
        parts.append(_Part(_slab(x - 0.9, x + 0.9, 0.35, 0.6, -0.9, 0.9), _DARK_WOOD))
    return parts


def _water_disc(rx: float, rz: float) -> trimesh.Trimesh:
    disc = _rod(1.0, (0, 0, 0), (0, 0.02, 0), 32)
    return _scale(disc, (rx, 1.0, rz))


def _lake() -> list[_Part]:
    return [_Part(_water_disc(8.0, 6.0), _WATER, main=True)]


def _pond() -> list[_Part]:
    parts = [_Part(_water_disc(3.0, 2.2), _WATER, main=True)]
    for x, z, r in ((1.2, 0.6, 0.3), (-0.9, -0.8, 0.25), (-1.5, 0.5, 0.22), (0.4, -1.2, 0.2)):
        parts.append(_Part(_rod(r, (x, 0.02, z), (x, 0.03, z), 8), _LILY))
    return parts


# ----------------------------------------------------------------------------- camp, light, furniture


def _campfire() -> list[_Part]:
    parts = [
        _Part(_cone(0.26, 0.75, (0, 0.08, 0), sections=7), _FLAME, main=True),
        _Part(_cone(0.14, 0.5, (0.12, 0.08, 0.06), sections=6, yaw=15), _FLAME_CORE, main=True),
        _Part(_cone(0.12, 0.42, (-0.1, 0.08, -0.08), sections=6, yaw=40), _FLAME_CORE, main=True),
    ]
    for k in range(9):
        a = 2 * math.pi * k / 9
        stone = _rock(0.13, (0.55 * math.cos(a), 0.05, 0.55 * math.sin(a)), 100 + k, (1.1, 0.8, 1.0))
        parts.append(_Part(stone, _ROCK if k % 2 else _DARK_ROCK))
    for a in (30.0, 120.0, 75.0):
        d = np.array([math.cos(math.radians(a)), 0.0, math.sin(math.radians(a))]) * 0.42
        y = 0.07 if a != 75.0 else 0.17
        parts.append(_Part(_rod(0.065, (-d[0], y, -d[2]), (d[0], y, d[2]), 7), _BARK))
    return parts


def _signpost() -> list[_Part]:
    post = _slab(-0.06, 0.06, 0.0, 2.0, -0.06, 0.06)
    board = _slab(-0.6, 0.6, _SIGN_CENTER[1] - 0.3, _SIGN_CENTER[1] + 0.3, 0.06, _SIGN_CENTER[2])
    return [_Part(board, _PLANK, main=True), _Part(post, _DARK_WOOD)]


def _lamp_post() -> list[_Part]:
    base = _lathe([(0, 0), (0.18, 0), (0.16, 0.15), (0.08, 0.35), (0, 0.35)], sections=8)
    post = _rod(0.05, (0, 0.3, 0), (0, 2.5, 0), 8)
    glass = _slab(-0.14, 0.14, 2.5, 2.85, -0.14, 0.14)
    frame = [_slab(-0.18, 0.18, 2.46, 2.5, -0.18, 0.18)]
    cap = _cone(0.26, 0.15, (0, 2.85, 0), sections=4, yaw=45.0)
    parts = [_Part(post, _METAL, main=True), _Part(base, _METAL), _Part(glass, _LIGHT), _Part(cap, _METAL)]
    return parts + [_Part(f, _METAL) for f in frame]


def _torch() -> list[_Part]:
    stick = _rod(0.03, (0, 0, 0), (0, 1.4, 0), 6)
    cup = _lathe([(0, 1.35), (0.05, 1.35), (0.09, 1.5), (0, 1.5)], sections=8)
    flame = _cone(0.08, 0.28, (0, 1.48, 0), sections=6)
    return [_Part(stick, _WOOD, main=True), _Part(cup, _METAL), _Part(flame, _FLAME)]


def _bench() -> list[_Part]:
    parts: list[_Part] = []
    for z in (-0.15, 0.0, 0.15):  # seat slats
        parts.append(_Part(_slab(-0.8, 0.8, 0.43, 0.47, z - 0.065, z + 0.065), _PLANK, main=True))
    for y in (0.62, 0.78):  # back slats
        parts.append(_Part(_slab(-0.8, 0.8, y - 0.06, y + 0.06, -0.22, -0.18), _PLANK, main=True))
    for x in (-0.65, 0.65):
        parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.0, 0.43, 0.14, 0.2), _METAL))
        parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.0, 0.86, -0.225, -0.165), _METAL))
        parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.38, 0.43, -0.2, 0.2), _METAL))
    return parts


def _table() -> list[_Part]:
    parts = [_Part(_slab(-0.7, 0.7, 0.7, 0.75, -0.4, 0.4), _PLANK, main=True)]
    for x in (-0.62, 0.62):
        for z in (-0.32, 0.32):
            parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.0, 0.7, z - 0.03, z + 0.03), _WOOD))
    return parts


def _picnic_table() -> list[_Part]:
    parts = [_Part(_slab(-0.9, 0.9, 0.72, 0.77, -0.38, 0.38), _PLANK, main=True)]
    for z in (-0.62, 0.62):
        parts.append(_Part(_slab(-0.9, 0.9, 0.42, 0.46, z - 0.14, z + 0.14), _PLANK, main=True))
    for x in (-0.7, 0.7):
        parts.append(_Part(_floor(_rod(0.035, (x, 0, -0.62), (x, 0.69, 0.12), 4)), _WOOD))
        parts.append(_Part(_floor(_rod(0.035, (x, 0, 0.62), (x, 0.69, -0.12), 4)), _WOOD))
        parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.36, 0.42, -0.76, 0.76), _WOOD))
    return parts


def _chair() -> list[_Part]:
    parts = [_Part(_slab(-0.22, 0.22, 0.43, 0.47, -0.22, 0.22), _PLANK, main=True)]
    parts.append(_Part(_slab(-0.22, 0.22, 0.65, 0.9, -0.22, -0.19), _PLANK, main=True))
    for x in (-0.19, 0.19):
        for z in (-0.19, 0.19):
            top = 0.95 if z < 0 else 0.43
            parts.append(_Part(_slab(x - 0.025, x + 0.025, 0.0, top, z - 0.025, z + 0.025), _WOOD))
    return parts


def _stool() -> list[_Part]:
    parts = [_Part(_rod(0.18, (0, 0.56, 0), (0, 0.6, 0), 12), _PLANK, main=True)]
    for k in range(4):
        c, s = math.cos(math.radians(45.0 + 90.0 * k)), math.sin(math.radians(45.0 + 90.0 * k))
        leg = _floor(_rod(0.02, (0.2 * c, 0, 0.2 * s), (0.11 * c, 0.56, 0.11 * s), 6))
        parts.append(_Part(leg, _WOOD))
    return parts


# ----------------------------------------------------------------------------- boats and goods


def _rowboat() -> list[_Part]:
    parts, gunwale = _hull(3.6, 1.3, 0.5, 0.18)
    for x in (-0.6, 0.5):  # thwarts
        parts.append(_Part(_slab(x - 0.13, x + 0.13, gunwale - 0.14, gunwale - 0.1, -0.58, 0.58), _WOOD))
    for s in (-1.0, 1.0):  # oars resting on the gunwales
        parts.append(_Part(_rod(0.025, (-1.2, gunwale + 0.05, s * 0.66), (1.0, gunwale + 0.05, s * 0.66), 6), _WOOD))
    return parts


def _sailboat() -> list[_Part]:
    parts, gunwale = _hull(5.6, 1.9, 0.75, 0.25)
    parts.append(_Part(_slab(-1.0, 0.9, gunwale - 0.15, gunwale + 0.35, -0.5, 0.5), _WHITE))  # cabin
    mast_x = 0.7
    parts.append(_Part(_rod(0.06, (mast_x, 0.1, 0), (mast_x, 7.5, 0), 8), _WOOD))
    parts.append(_Part(_rod(0.05, (mast_x, gunwale + 0.9, 0), (-2.3, gunwale + 0.9, 0), 6), _WOOD))
    sail = _prism([(mast_x - 0.08, gunwale + 1.0), (-2.2, gunwale + 1.0), (mast_x - 0.08, 7.3)], -0.015, 0.015)
    jib = _prism([(mast_x + 0.08, gunwale + 0.6), (2.6, gunwale + 0.45), (mast_x + 0.08, 6.6)], -0.015, 0.015)
    parts += [_Part(sail, _SAIL), _Part(jib, _SAIL)]
    return parts


def _crate() -> list[_Part]:
    h = 0.4
    e = 0.035
    parts = [_Part(_box((0.76, 0.76, 0.76), (0, h, 0)), _PLANK, main=True)]
    for axis in range(3):
        for a in (-1, 1):
            for b in (-1, 1):
                extents = [2 * e] * 3
                extents[axis] = 0.8
                center = [0.0, 0.0, 0.0]
                others = [i for i in range(3) if i != axis]
                center[others[0]] = a * (h - e)
                center[others[1]] = b * (h - e)
                center[1] += h
                parts.append(_Part(_box(extents, center), _DARK_WOOD))
    return parts


def _barrel() -> list[_Part]:
    profile = [(0, 0), (0.27, 0), (0.31, 0.2), (0.33, 0.45), (0.31, 0.7), (0.27, 0.9), (0, 0.9)]
    parts = [_Part(_lathe(profile, sections=12), _WOOD, main=True)]
    for y, r in ((0.12, 0.3), (0.45, 0.34), (0.78, 0.3)):
        parts.append(_Part(_rod(r, (0, y - 0.025, 0), (0, y + 0.025, 0), 12), _METAL))
    return parts


def _cart() -> list[_Part]:
    parts = [_Part(_slab(-1.0, 1.0, 0.62, 0.72, -0.6, 0.6), _PLANK, main=True)]
    for z in (-0.6, 0.6):
        parts.append(_Part(_slab(-1.0, 1.0, 0.72, 1.02, z - 0.03, z + 0.03), _PLANK, main=True))
    for x in (-1.0, 1.0):
        parts.append(_Part(_slab(x - 0.03, x + 0.03, 0.72, 1.02, -0.6, 0.6), _PLANK, main=True))
    for z in (-0.72, 0.72):
        parts.append(_Part(_rod(0.5, (0.1, 0.5, z - 0.05), (0.1, 0.5, z + 0.05), 12), _DARK_WOOD))
        parts.append(_Part(_rod(0.1, (0.1, 0.5, z - 0.09), (0.1, 0.5, z + 0.09), 8), _METAL))
    parts.append(_Part(_rod(0.04, (0.1, 0.5, -0.66), (0.1, 0.5, 0.66), 6), _METAL))
    for z in (-0.35, 0.35):
        parts.append(_Part(_rod(0.04, (-0.8, 0.6, z), (-2.4, 0.45, z * 0.7), 4), _WOOD))
    return parts


def _statue() -> list[_Part]:
    pedestal = _slab(-0.6, 0.6, 0.0, 1.0, -0.6, 0.6)
    plinth = _slab(-0.7, 0.7, 0.0, 0.15, -0.7, 0.7)
    robe = _lathe([(0, 1.0), (0.36, 1.0), (0.3, 1.7), (0.24, 2.35), (0.12, 2.45), (0, 2.45)], sections=10)
    head = _move(trimesh.creation.icosphere(subdivisions=2, radius=0.15), (0, 2.6, 0))
    arm_l = _rod(0.06, (-0.24, 2.3, 0), (-0.35, 1.75, 0.1), 6)
    arm_r = _rod(0.06, (0.24, 2.3, 0), (0.55, 2.9, 0.1), 6)
    figure = [robe, head, arm_l, arm_r]
    return [_Part(f, _MARBLE, main=True) for f in figure] + [_Part(pedestal, _STONE), _Part(plinth, _DARK_ROCK)]


def _placeholder() -> list[_Part]:
    post = _slab(-0.06, 0.06, 0.0, 0.5, -0.06, 0.06)
    block = _slab(-0.5, 0.5, 0.5, 1.5, -0.5, 0.5)
    return [_Part(block, _PLACEHOLDER, main=True), _Part(post, _PLACEHOLDER_POST)]  # neutral: no hue


# ----------------------------------------------------------------------------- the library

#: Where a label goes on the signpost: the centre of the board's front face (it faces +Z).
_SIGN_CENTER = (0.0, 1.6, 0.11)


@dataclass(frozen=True)
class Asset:
    """One object of the library: what matching compares, what layout places, and how to build it."""

    name: str  # "pine", "oak", "cabin", ... unique, lowercase, snake_case
    category: str  # one of CATEGORIES
    description: str  # a short phrase used for embedding similarity
    size: tuple[float, float, float]  # nominal bounding box (x width, y height, z depth) of the built mesh, metres
    build: Callable[[], Mesh]  # deterministic; origin at the centre of the base, base at y = 0
    flat: bool = False  # lies on the ground (water, path): the layout flattens the terrain under it
    surface_height: float | None = None  # y of the top others can stand on (relation "on")


def _assemble(parts: list[_Part]) -> tuple[Mesh, np.ndarray]:
    """One flat-shaded mesh from the parts, and which of its vertices belong to main parts.

    Faces do not share vertices (each face gets its own three), so every face is lit
    with its own normal: the faceted low-poly look, and colours never bleed across parts.
    """
    meshes = []
    masks = []
    for part in parts:
        tm = part.mesh
        triangles = np.asarray(tm.vertices, dtype=np.float64)[np.asarray(tm.faces)]
        area2 = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
        corners = triangles[area2 > 1e-10].reshape(-1, 3)  # faces squashed flat by `_floor` can be slivers
        n = len(corners)
        meshes.append(
            Mesh(corners, np.arange(n).reshape(-1, 3), colors=np.tile(np.asarray(part.color, np.float32), (n, 1)))
        )
        masks.append(np.full(n, part.main))
    mesh = merge(meshes)
    mesh.positions[:, 1] -= mesh.positions[:, 1].min()  # the base exactly at y = 0
    mask = np.concatenate(masks)
    if not mask.any():
        mask[: len(meshes[0].positions)] = True
    return mesh, mask


def _freeze(mesh: Mesh) -> Mesh:
    """Arrays made read-only: cached meshes are shared, so an in-place edit must fail instead of spreading."""
    for array in (mesh.positions, mesh.indices, mesh.normals, mesh.colors):
        if array is not None:
            array.flags.writeable = False
    return mesh


def _make(name: str) -> tuple[Mesh, np.ndarray]:
    mesh, mask = _assemble(_BUILDERS[name]())
    mesh.extras = {"asset": name, "category": ASSETS[name].category if name in ASSETS else "placeholder"}
    return mesh, mask


def _build(name: str) -> Mesh:
    """A fresh (uncached, writable) build of an asset: what `Asset.build` calls."""
    return _make(name)[0]


@functools.cache
def _built(name: str) -> tuple[Mesh, np.ndarray]:
    """The shared build of an asset and its main-part vertex mask, both read-only."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown asset {name!r}")
    mesh, mask = _make(name)
    mask.flags.writeable = False
    return _freeze(mesh), mask


_Builder = Callable[[], list[_Part]]

#: name -> asset, in category order (matching lists candidates in this order)
ASSETS: dict[str, Asset] = {}
_BUILDERS: dict[str, _Builder] = {}


def _add(
    name: str,
    category: str,
    size: tuple[float, float, float],
    builder: _Builder,
    description: str,
    flat: bool = False,
    surface_height: float | None = None,
) -> None:
    """Registers an asset; `size` is measured from the built mesh (the tests hold the two together)."""
    _BUILDERS[name] = builder
    ASSETS[name] = Asset(name, category, description, size, functools.partial(_build, name), flat, surface_height)


_add("pine", "tree", (5.04, 9.2, 5.12), _pine, "pine tree, conifer, fir, spruce, evergreen tree")
_add("oak", "tree", (6.13, 7.37, 5.1), _oak, "oak tree, leafy deciduous tree, broadleaf tree, maple, elm")
_add("birch", "tree", (3.1, 8.57, 2.69), _birch, "birch tree, slender tree with white bark, aspen, poplar")
_add("palm", "tree", (5, 7.2, 4.92), _palm, "palm tree, coconut palm, tropical beach tree")
_add("dead_tree", "tree", (3.1, 4.95, 1.72), _dead_tree, "dead tree, bare leafless tree, withered spooky tree")
_add("bush", "bush", (1.96, 1.28, 1.65), _bush, "bush, shrub, green shrubbery, thicket")
_add("hedge", "bush", (3.01, 1.14, 0.81), _hedge, "hedge, hedgerow, row of trimmed shrubs, garden hedge")
_add("flowers", "flower", (0.83, 0.5, 0.85), _flowers, "flowers, flower bed, wildflowers, tulips, roses, blossoms")
_add("sunflower", "flower", (0.85, 2.18, 0.28), _sunflower, "sunflower, tall yellow flower")
_add("boulder", "rock", (2.67, 1.3, 2.15), _boulder, "boulder, large rock, big stone")
_add("small_rock", "rock", (0.71, 0.36, 0.64), _small_rock, "small rock, stone, pebble")
_add("rock_pile", "rock", (2.33, 0.82, 1.66), _rock_pile, "pile of rocks, heap of stones, rubble, cairn")
_add("log", "log", (3.04, 0.57, 0.6), _log, "log, fallen tree trunk, timber, firewood")
_add("stump", "log", (1.12, 0.5, 1.13), _stump, "tree stump, cut stump", surface_height=0.5)
_add("tent", "tent", (1.8, 1.45, 2.36), _tent, "tent, camping tent, ridge tent, shelter")
_add("dome_tent", "tent", (2.6, 1.27, 2.3), _dome_tent, "dome tent, igloo tent, camping tent")
_add("cabin", "house", (6.7, 4.7, 4.72), _cabin, "log cabin, wooden hut, shack, lodge")
_add("cottage", "house", (5.7, 5.3, 4.67), _cottage, "cottage, small house, home, farmhouse")
_add("stone_house", "house", (7.7, 7.5, 5.72), _stone_house, "stone house, two-storey building, manor, villa")
_add("watchtower", "tower", (3.68, 9.8, 3.68), _watchtower, "wooden watchtower, lookout tower, observation platform")
_add("stone_tower", "tower", (5.1, 10.3, 5.1), _stone_tower, "stone tower, castle tower, turret, keep, fortress")
_add("well", "well", (1.8, 2.95, 1.75), _well, "water well, wishing well, stone well with a roof")
_add("fence", "fence", (3, 1.1, 0.15), _fence, "wooden fence, rail fence, fence section")
_add("picket_fence", "fence", (3, 1, 0.09), _picket_fence, "white picket fence, garden fence")
_add("path", "path", (4, 0.03, 1.2), _path, "dirt path, trail, footpath, walkway", flat=True)
_add("stone_path", "path", (4, 0.04, 1.4), _stone_path, "stone path, paved path, cobblestone walkway, road", flat=True)
_add("bridge", "bridge", (8, 1.8, 2.06), _bridge, "wooden bridge, footbridge, bridge over a river or stream")
_add("lake", "water", (16, 0.02, 12), _lake, "lake, water, loch, lagoon", flat=True)
_add("pond", "water", (6, 0.03, 4.4), _pond, "pond, small pool of water with lily pads", flat=True)
_add("campfire", "campfire", (1.34, 0.83, 1.35), _campfire, "campfire, bonfire, fire pit, camp fire, flames")
_add("signpost", "sign", (1.2, 2, 0.17), _signpost, "signpost, sign, sign board, notice board, wooden sign")
_add("lamp_post", "lamp", (0.37, 3, 0.37), _lamp_post, "lamp post, street lamp, lantern, streetlight, light")
_add("torch", "lamp", (0.18, 1.76, 0.18), _torch, "torch, tiki torch, burning torch")
_add("bench", "bench", (1.6, 0.86, 0.44), _bench, "bench, park bench, wooden seat", surface_height=0.47)
_add("table", "table", (1.4, 0.75, 0.8), _table, "table, wooden table, desk", surface_height=0.75)
_add("picnic_table", "table", (1.8, 0.77, 1.52), _picnic_table, "picnic table with benches", surface_height=0.77)
_add("chair", "chair", (0.44, 0.95, 0.44), _chair, "chair, wooden chair, seat", surface_height=0.47)
_add("stool", "chair", (0.36, 0.6, 0.36), _stool, "stool, bar stool, round seat", surface_height=0.6)
_add("rowboat", "boat", (3.6, 0.68, 1.37), _rowboat, "rowboat, boat, canoe, dinghy, rowing boat")
_add("sailboat", "boat", (5.6, 7.5, 1.9), _sailboat, "sailboat, sailing boat, yacht, ship")
_add("crate", "crate", (0.8, 0.8, 0.8), _crate, "wooden crate, box, chest, container", surface_height=0.8)
_add("barrel", "barrel", (0.68, 0.9, 0.68), _barrel, "barrel, wooden cask, keg", surface_height=0.9)
_add("cart", "cart", (3.43, 1.02, 1.62), _cart, "wooden cart, wagon, wheelbarrow, handcart")
_add("statue", "statue", (1.4, 2.93, 1.4), _statue, "statue, stone sculpture, monument figure on a pedestal")
_add("windmill", "windmill", (7.42, 11.11, 4.6), _windmill, "windmill, mill with sails")
_add("mushroom", "mushroom", (0.45, 0.35, 0.37), _mushroom, "mushrooms, toadstools, fly agaric, fungi")
_add("giant_mushroom", "mushroom", (3.96, 3.9, 3.77), _giant_mushroom, "giant mushroom, huge fantasy toadstool")


#: What a word no asset matches becomes: a neutral grey block on a post, labelled by the layout.
#: Not in `ASSETS` (matching must never choose it), but every function here accepts its name.
PLACEHOLDER = Asset(
    "placeholder",
    "placeholder",
    "placeholder, unknown object",
    (1.0, 1.5, 1.0),
    functools.partial(_build, "placeholder"),
)
_BUILDERS["placeholder"] = _placeholder


def asset_mesh(name: str) -> Mesh:
    """The asset's mesh, built once: the same (read-only) object on every call, so scenes share it."""
    return _built(name)[0]


def placeholder_mesh() -> Mesh:
    """The placeholder's mesh (cached like any asset)."""
    return asset_mesh("placeholder")


@functools.cache
def footprint_radius(name: str) -> float:
    """Radius of the circle about the origin, in the ground plane, that holds the whole mesh (for spacing)."""
    p = asset_mesh(name).positions.astype(np.float64)
    return float(np.sqrt(p[:, 0] ** 2 + p[:, 2] ** 2).max())


@functools.lru_cache(maxsize=512)
def scaled(name: str, factor: float) -> Mesh:
    """The asset scaled uniformly about its base centre ("small", "large", "huge"); cached per (name, factor)."""
    if not factor > 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    return _freeze(asset_mesh(name).transformed(np.diag([factor, factor, factor, 1.0])))


def recolored(name: str, rgba: Sequence[float]) -> Mesh:
    """The asset with its main part (canvas, hull, walls, foliage, ...) painted `rgba` (linear, 0..1).

    The colour's alpha scales the part's own: a "green lake" stays translucent. Cached per
    (name, colour), so a forest of red tents shares one mesh.
    """
    values = tuple(float(c) for c in rgba)
    if len(values) == 3:
        values = (*values, 1.0)
    if len(values) != 4 or not all(0.0 <= c <= 1.0 for c in values):
        raise ValueError(f"expected RGB or RGBA in 0..1, got {rgba!r}")
    return _recolored(name, values)


@functools.lru_cache(maxsize=1024)
def _recolored(name: str, rgba: tuple[float, ...]) -> Mesh:
    mesh, mask = _built(name)
    assert mesh.colors is not None  # _assemble always colours
    colors = mesh.colors.copy()
    colors[mask, :3] = rgba[:3]
    colors[mask, 3] = mesh.colors[mask, 3] * rgba[3]
    out = Mesh(mesh.positions, mesh.indices, mesh.normals, colors, extras=dict(mesh.extras))
    return _freeze(out)


def label_anchor(name: str) -> tuple[tuple[float, float, float], float] | None:
    """Where a label belongs on an asset that carries text: (front centre of the board, its width), else None.

    The signpost's board faces +Z; a label quad placed a few millimetres in front of this
    point (same transform as the asset) reads as painted on the board.
    """
    if ASSETS.get(name, PLACEHOLDER).category == "sign":
        return (_SIGN_CENTER, 1.2)
    if name == "placeholder":
        return ((0.0, 1.0, 0.5), 1.0)
    return None
