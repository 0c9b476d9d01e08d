"""The procedural asset library and text labels: valid, real-sized, deterministic meshes.

The layout trusts `size`, the base at y = 0, `footprint_radius` and `surface_height`; the
GLB writer trusts the array types and the outward winding (back faces are culled on a
headset). These tests hold each asset to that, so a wrong shape fails here rather than
as an object floating in, or sinking into, a generated world.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import trimesh
from PIL import Image

from xrserve.worlds import assets
from xrserve.worlds.assets import (
    ASSETS,
    CATEGORIES,
    COLORS,
    PLACEHOLDER,
    asset_mesh,
    footprint_radius,
    label_anchor,
    placeholder_mesh,
    recolored,
    scaled,
)
from xrserve.worlds.labels import MAX_WIDTH_PX, label_mesh
from xrserve.worlds.mesh import Mesh

NAMES = list(ASSETS)
ALL = [*NAMES, "placeholder"]
MAGENTA = (1.0, 0.0, 1.0, 1.0)


def spec(name: str) -> assets.Asset:
    return ASSETS.get(name, PLACEHOLDER)


def test_categories_are_the_fixed_list_and_all_but_placeholder_are_covered() -> None:
    assert CATEGORIES[:3] == ("tree", "bush", "flower") and CATEGORIES[-1] == "placeholder"
    assert len(CATEGORIES) == 27 and len(set(CATEGORIES)) == 27
    assert len(ASSETS) >= 28
    used = {a.category for a in ASSETS.values()}
    assert used == set(CATEGORIES) - {"placeholder"}
    assert "placeholder" not in ASSETS  # matching must never pick it
    for group, members in (("tree", 5), ("rock", 3), ("house", 3)):
        assert sum(a.category == group for a in ASSETS.values()) >= members


def test_names_and_descriptions() -> None:
    for name, asset in ASSETS.items():
        assert asset.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert asset.description.strip() and asset.description == asset.description.lower()
    assert len({a.description for a in ASSETS.values()}) == len(ASSETS)
    # the order is by category, so matching lists candidates predictably
    order = [CATEGORIES.index(a.category) for a in ASSETS.values()]
    assert order == sorted(order)


@pytest.mark.parametrize("name", ALL)
def test_mesh_is_valid_and_low_poly(name: str) -> None:
    mesh = asset_mesh(name)
    assert mesh.positions.dtype == np.float32 and mesh.positions.ndim == 2 and mesh.positions.shape[1] == 3
    assert mesh.indices.dtype == np.uint32 and len(mesh.indices) >= 4
    assert np.isfinite(mesh.positions).all()
    assert int(mesh.indices.max()) < len(mesh.positions)
    assert len(np.unique(mesh.indices)) == len(mesh.positions)  # no unused vertices
    assert mesh.normals is not None and mesh.normals.shape == mesh.positions.shape
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-3)
    assert mesh.colors is not None and mesh.colors.shape == (len(mesh.positions), 4)
    assert mesh.colors.dtype == np.float32 and (mesh.colors >= 0).all() and (mesh.colors <= 1).all()
    assert len(np.unique(mesh.colors, axis=0)) >= 1
    assert mesh.uvs is None and mesh.texture_png is None
    assert len(mesh.indices) < 3000, f"{name}: {len(mesh.indices)} triangles"
    if spec(name).category in ("tree", "rock"):
        assert len(mesh.indices) <= 600


@pytest.mark.parametrize("name", ALL)
def test_base_on_the_ground_and_bounds_match_size(name: str) -> None:
    asset = spec(name)
    lo, hi = asset_mesh(name).bounds.astype(np.float64)
    assert abs(lo[1]) <= 1e-3, f"{name}: base at y={lo[1]}"
    extent = hi - lo
    np.testing.assert_allclose(extent, asset.size, rtol=0.15, err_msg=name)
    # the origin is at the base (inside the x/z bounds), not at a corner
    assert lo[0] < 0 < hi[0] and lo[2] < 0 < hi[2], name
    if asset.flat:
        assert extent[1] <= 0.05 and asset.category in ("water", "path")
    else:
        assert extent[1] > 0.1
    radius = footprint_radius(name)
    assert max(abs(lo[0]), hi[0], abs(lo[2]), hi[2]) - 1e-6 <= radius <= np.hypot(*np.maximum(-lo, hi)[[0, 2]]) + 1e-6


def test_real_world_sizes() -> None:
    """A few sizes a visitor would notice at 1:1 (metres)."""
    height = {name: asset.size[1] for name, asset in ASSETS.items()}
    assert 8 <= height["pine"] <= 12
    assert 1.0 <= height["tent"] <= 2.5 and max(ASSETS["tent"].size) <= 2.5
    assert 2.5 <= height["lamp_post"] <= 3.5 and 1.8 <= height["signpost"] <= 2.2
    assert 1.4 <= ASSETS["bench"].size[0] <= 1.8 and 0.7 <= max(ASSETS["crate"].size) <= 0.9
    w, _, d = ASSETS["cabin"].size
    assert 5.5 <= w <= 7.5 and 3.5 <= d <= 5.5
    assert 12 <= max(ASSETS["lake"].size) <= 20
    for long in ("fence", "path", "bridge", "log", "rowboat", "bench"):  # long things run along X
        assert ASSETS[long].size[0] > ASSETS[long].size[2], long


@pytest.mark.parametrize("name", [n for n in NAMES if ASSETS[n].surface_height is not None])
def test_surface_height_is_an_upward_face(name: str) -> None:
    """Something put "on" the asset stands on a real horizontal face at `surface_height`."""
    mesh = asset_mesh(name)
    tri = mesh.positions[mesh.indices].astype(np.float64)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    surface = ASSETS[name].surface_height
    assert surface is not None
    up = (normal[:, 1] > 0.99) & (np.abs(tri[:, :, 1].mean(axis=1) - surface) < 0.015)
    assert up.any(), name
    assert surface <= ASSETS[name].size[1] + 0.01


@pytest.mark.parametrize("name", ALL)
def test_build_is_deterministic_and_cached(name: str) -> None:
    first, second = spec(name).build(), spec(name).build()
    assert first is not second
    cached = asset_mesh(name)
    for a, b, c in (
        (first.positions, second.positions, cached.positions),
        (first.indices, second.indices, cached.indices),
        (first.colors, second.colors, cached.colors),
        (first.normals, second.normals, cached.normals),
    ):
        assert a is not None and b is not None and c is not None
        assert a.tobytes() == b.tobytes() == c.tobytes()
    assert asset_mesh(name) is cached


def test_cached_meshes_are_read_only() -> None:
    """asset_mesh returns one shared object: an in-place edit must fail rather than change every scene."""
    mesh = asset_mesh("pine")
    with pytest.raises(ValueError):
        mesh.positions[0, 0] = 5.0
    assert mesh.colors is not None
    with pytest.raises(ValueError):
        mesh.colors[:, 0] = 0.0
    # a fresh build is the caller's to change
    fresh = ASSETS["pine"].build()
    fresh.positions[0, 0] = 5.0
    assert asset_mesh("pine").positions[0, 0] != 5.0


@pytest.mark.parametrize("name", ALL)
def test_trimesh_reads_it_as_a_solid(name: str) -> None:
    mesh = asset_mesh(name)
    tm = trimesh.Trimesh(mesh.positions, mesh.indices)  # merges the flat-shaded corners again
    assert tm.area > 0 and tm.volume > 0, name
    assert (tm.area_faces > 1e-10).all(), f"{name}: degenerate faces"
    lo, hi = tm.bounds
    assert np.all(hi - lo > 0)


@pytest.mark.parametrize("name", ALL)
def test_closed_parts_are_wound_outwards(name: str) -> None:
    """Each closed part has positive volume: counter-clockwise from outside, as back-face culling expects."""
    parts = assets._BUILDERS[name]()
    closed = [p for p in parts if p.mesh.is_watertight]
    assert closed, name
    for part in closed:
        assert part.mesh.volume > 0, f"{name}: a part is inside out"


@pytest.mark.parametrize("name", ALL)
def test_recolored_paints_the_main_part_only(name: str) -> None:
    base = asset_mesh(name)
    painted = recolored(name, MAGENTA)
    assert base.colors is not None and painted.colors is not None
    assert painted is recolored(name, MAGENTA)  # cached per (name, colour)
    assert painted.positions.tobytes() == base.positions.tobytes()
    changed = np.any(painted.colors != base.colors, axis=1)
    assert changed.any(), name
    assert np.allclose(painted.colors[changed, :3], MAGENTA[:3])
    # the main part's own opacity survives (a recoloured lake stays a translucent surface)
    np.testing.assert_allclose(painted.colors[changed, 3], base.colors[changed, 3])
    assert not np.allclose(base.colors[:, :3], MAGENTA[:3])  # the library itself is untouched
    if len(np.unique(base.colors, axis=0)) > 1:
        assert not changed.all() or name in ("lake", "boulder", "small_rock", "bush", "rock_pile"), name


def test_recolored_main_parts_are_what_a_prompt_means() -> None:
    """ "a red tent" paints the canvas, "a blue boat" the hull, "a white cottage" the walls."""
    for name, color in (("tent", "red"), ("rowboat", "blue"), ("cottage", "white"), ("oak", "yellow")):
        base, painted = asset_mesh(name), recolored(name, COLORS[color])
        assert base.colors is not None and painted.colors is not None
        changed = np.any(painted.colors != base.colors, axis=1)[base.indices[:, 0]]
        tri = base.positions[base.indices].astype(np.float64)
        area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        share = area[changed].sum() / area.sum()
        assert 0.3 < share < 0.95, (name, share)  # the main part is most of what one sees, not all of it
    lake = recolored("lake", COLORS["green"])
    assert lake.colors is not None and np.allclose(lake.colors[:, 3], 0.8)
    with pytest.raises(ValueError):
        recolored("pine", (2.0, 0.0, 0.0, 1.0))


def test_colors() -> None:
    for word in ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "grey", "gray"):
        assert word in COLORS
    assert "brown" in COLORS and "golden" in COLORS
    for rgba in COLORS.values():
        assert len(rgba) == 4 and all(0.0 <= c <= 1.0 for c in rgba) and rgba[3] == 1.0
    assert COLORS["grey"] == COLORS["gray"]
    assert COLORS["white"][0] > 0.8 and max(COLORS["black"][:3]) < 0.05
    red = COLORS["red"]
    assert red[0] > 0.4 and red[1] < 0.1  # linear: an sRGB 0x30 channel is ~0.03


def test_scaled() -> None:
    base = asset_mesh("oak")
    big = scaled("oak", 2.0)
    np.testing.assert_allclose(big.bounds, base.bounds * 2.0, rtol=1e-5, atol=1e-5)
    assert abs(float(big.bounds[0, 1])) < 1e-3
    assert scaled("oak", 2.0) is big
    with pytest.raises(ValueError):
        scaled("oak", 0.0)


def test_placeholder() -> None:
    mesh = placeholder_mesh()
    assert mesh is asset_mesh("placeholder")
    assert PLACEHOLDER.category == "placeholder" and mesh.extras["category"] == "placeholder"
    lo, hi = mesh.bounds
    assert 0.8 <= hi[1] - lo[1] <= 2.0
    assert mesh.colors is not None and np.ptp(mesh.colors[:, :3], axis=1).max() < 0.01  # grey, no hue


def test_signpost_board_faces_the_front_at_the_label_anchor() -> None:
    anchor = label_anchor("signpost")
    assert anchor is not None and label_anchor("pine") is None
    (x, y, z), width = anchor
    mesh = asset_mesh("signpost")
    tri = mesh.positions[mesh.indices].astype(np.float64)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    front = (normal[:, 2] > 0) & (np.abs(normal[:, :2]).max(axis=1) < 1e-9) & np.all(np.abs(tri[:, :, 2] - z) < 1e-4, 1)
    board = tri[front]
    assert len(board) >= 2
    assert board[:, :, 0].min() <= x - width / 2 + 1e-3 and board[:, :, 0].max() >= x + width / 2 - 1e-3
    assert board[:, :, 1].min() < y < board[:, :, 1].max()
    assert z >= float(mesh.bounds[1, 2]) - 1e-4  # nothing stands in front of the board


def test_unknown_asset() -> None:
    with pytest.raises(KeyError):
        asset_mesh("spaceship")


# ----------------------------------------------------------------------------- labels


def texture(mesh: Mesh) -> Image.Image:
    assert mesh.texture_png is not None and mesh.texture_png.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(mesh.texture_png))
    image.load()
    return image


def test_label_is_a_textured_quad_with_the_image_aspect() -> None:
    mesh = label_mesh("Welcome to the lake", height_m=0.4)
    image = texture(mesh)
    assert image.mode == "RGBA" and image.width <= MAX_WIDTH_PX
    lo, hi = mesh.bounds
    width, height = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    assert height == pytest.approx(0.4, abs=1e-6)
    assert width / height == pytest.approx(image.width / image.height, rel=1e-3)
    assert width > height  # a one-line caption is wide
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)  # centred at the origin
    assert np.allclose(mesh.positions[:, 2], 0.0)
    assert mesh.double_sided and mesh.uvs is not None and mesh.normals is not None
    assert np.allclose(mesh.normals, [0.0, 0.0, 1.0])
    tri = mesh.positions[mesh.indices].astype(np.float64)
    assert (np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] > 0).all()  # CCW seen from +Z
    # glTF UVs: v = 0 at the top of the image, u = 0 on the left
    top, left = mesh.positions[:, 1] > 0, mesh.positions[:, 0] < 0
    assert np.allclose(mesh.uvs[top, 1], 0.0) and np.allclose(mesh.uvs[~top, 1], 1.0)
    assert np.allclose(mesh.uvs[left, 0], 0.0) and np.allclose(mesh.uvs[~left, 0], 1.0)


def test_label_draws_the_text() -> None:
    image = np.asarray(texture(label_mesh("Hi", color=(1, 1, 1, 1), background=(0, 0, 0, 1))))
    white = (image[..., :3] > 250).all(axis=-1)
    assert 0.01 < white.mean() < 0.6  # the glyphs, and only them, are in the text colour
    assert (image[0, 0] == [0, 0, 0, 255]).all()  # the corner is background
    a = texture(label_mesh("Lake"))
    b = texture(label_mesh("Lake Lake Lake"))
    assert b.width > a.width and b.height == a.height


def test_label_is_deterministic_and_wraps_long_text() -> None:
    assert label_mesh("Old Mill").texture_png == label_mesh("Old Mill").texture_png
    assert label_mesh("Old Mill").texture_png != label_mesh("Old Mall").texture_png
    long = label_mesh("a rather long sentence for a sign " * 10)
    image = texture(long)
    assert image.width <= MAX_WIDTH_PX and image.height > texture(label_mesh("a")).height * 3
    assert long.extras["label"].endswith("...") and len(long.extras["label"]) <= 200
    unbroken = texture(label_mesh("W" * 120))  # a word wider than a line is broken, not overflowed
    assert unbroken.width <= MAX_WIDTH_PX


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_label_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        label_mesh(text)
