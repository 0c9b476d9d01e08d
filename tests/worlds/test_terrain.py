"""Terrain from the trained generators, its mesh, formats and GLB; the GLB writer itself.

The heightmaps come from the built-in `terrain-gan` / `terrain-vae` through a real
in-process `Scheduler`, as the service makes them; they are generated once for the module.
"""

from __future__ import annotations

import asyncio
import io
import struct

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image
from pydantic import ValidationError

from tests.worlds.gltf import problems, validate
from xrserve.core.scheduler import Scheduler
from xrserve.models.trained import builtin_configs
from xrserve.runtimes import RUNTIMES
from xrserve.worlds.glb import Node, write_glb
from xrserve.worlds.mesh import Mesh
from xrserve.worlds.terrain import (
    TerrainSpec,
    f32,
    generate_heightmap,
    height_at,
    lod_heights,
    lod_meshes,
    png16,
    terrain_glb,
    terrain_mesh,
)

SPECS = {
    "a": TerrainSpec(seed=1),
    "a_again": TerrainSpec(seed=1),
    "b": TerrainSpec(seed=2),
    "mix0": TerrainSpec(seeds=[1, 2], mix=0.0),
    "mix1": TerrainSpec(seeds=[1, 2], mix=1.0),
    "mix_half": TerrainSpec(seeds=[1, 2]),
    "latent_of_seed_1": TerrainSpec(latent=np.random.default_rng(1).standard_normal(64).tolist()),
    "large": TerrainSpec(seed=1, size=513),
    "tiny": TerrainSpec(seed=1, size=2),
    "default": TerrainSpec(),
    "seed0": TerrainSpec(seed=0),
    "vae": TerrainSpec(seed=1, size=65, model="terrain-vae"),
}


@pytest.fixture(scope="module")
def maps() -> dict[str, np.ndarray]:
    async def main() -> dict[str, np.ndarray]:
        scheduler = Scheduler(RUNTIMES)
        for config in builtin_configs():
            if config.name in ("terrain-gan", "terrain-vae"):
                await scheduler.load(config)
        try:
            return {name: await generate_heightmap(scheduler, spec) for name, spec in SPECS.items()}
        finally:
            await scheduler.close()

    return asyncio.run(main())


def _json(glb: bytes) -> dict:
    import json

    length = struct.unpack("<I", glb[12:16])[0]
    return json.loads(glb[20 : 20 + length])


# -- heightmaps -------------------------------------------------------------------------------


def test_heightmaps_are_deterministic_and_seeded(maps: dict[str, np.ndarray]) -> None:
    a = maps["a"]
    assert a.shape == (129, 129) and a.dtype == np.float32
    assert a.min() == 0.0 and 2.0 < a.max() < 100.0  # real proportions over 200 m: hills, not spikes
    assert np.array_equal(a, maps["a_again"])
    assert not np.allclose(a, maps["b"])
    assert np.array_equal(maps["default"], maps["seed0"])  # no source sent: seed 0


def test_mix_ends_are_the_two_seeds(maps: dict[str, np.ndarray]) -> None:
    assert np.array_equal(maps["mix0"], maps["a"])
    assert np.array_equal(maps["mix1"], maps["b"])
    half = maps["mix_half"]
    assert not np.allclose(half, maps["a"]) and not np.allclose(half, maps["b"])


def test_a_seed_is_the_latent_the_models_draw_for_it(maps: dict[str, np.ndarray]) -> None:
    assert np.array_equal(maps["latent_of_seed_1"], maps["a"])


def test_size_is_resolution_not_more_land(maps: dict[str, np.ndarray]) -> None:
    large, small = maps["large"], maps["a"]
    assert large.shape == (513, 513)
    every4 = large[::4, ::4] - large[::4, ::4].min()
    assert np.abs(every4 - small).max() < 1e-3
    assert maps["tiny"].shape == (2, 2)


def test_vae_terrain(maps: dict[str, np.ndarray]) -> None:
    assert maps["vae"].shape == (65, 65) and np.isfinite(maps["vae"]).all() and maps["vae"].max() > 0


def test_spec_says_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="not seed and latent"):
        TerrainSpec(seed=1, latent=[0.0] * 64)
    with pytest.raises(ValidationError, match="'mix' blends two terrains"):
        TerrainSpec(seed=1, mix=0.5)
    with pytest.raises(ValidationError, match="'latent' has 64 numbers; model 'terrain-vae' takes 32"):
        TerrainSpec(latent=[0.0] * 64, model="terrain-vae")
    with pytest.raises(ValidationError, match="seeds"):
        TerrainSpec(seeds=[1])
    with pytest.raises(ValidationError, match="size"):
        TerrainSpec(size=514)
    with pytest.raises(ValidationError, match="extra"):
        TerrainSpec(colour="red")  # type: ignore[call-arg]


# -- the mesh ------------------------------------------------------------------------------------


def test_mesh_vertices_are_the_heightmap(maps: dict[str, np.ndarray]) -> None:
    h, extent = maps["a"], 200.0
    mesh = terrain_mesh(h, extent)
    n = h.shape[0]
    assert np.array_equal(mesh.positions[:, 1], h.ravel())
    step = extent / (n - 1)
    i, j = 37, 91
    x, _, z = mesh.positions[i * n + j]
    assert x == pytest.approx(-extent / 2 + j * step) and z == pytest.approx(-extent / 2 + i * step)
    assert len(mesh.indices) == 2 * (n - 1) ** 2
    tri = mesh.positions[mesh.indices].astype(np.float64)
    up = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 1]
    assert (up > 0).all()  # counter-clockwise seen from above
    assert mesh.normals is not None and (mesh.normals[:, 1] > 0).all()
    assert mesh.uvs is not None and mesh.uvs.min() == 0.0 and mesh.uvs.max() == 1.0
    assert mesh.colors is not None and mesh.colors.shape == (n * n, 4)


def _on_triangles(mesh: Mesh, x: float, z: float) -> float:
    """The mesh's height at (x, z) from its own triangles (barycentric), independent of `height_at`."""
    tri = mesh.positions[mesh.indices].astype(np.float64)
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (tri[:, k].T for k in range(3))
    det = (bz - cz) * (ax - cx) + (cx - bx) * (az - cz)
    la = ((bz - cz) * (x - cx) + (cx - bx) * (z - cz)) / det
    lb = ((cz - az) * (x - cx) + (ax - cx) * (z - cz)) / det
    lc = 1 - la - lb
    inside = np.flatnonzero((la >= -1e-9) & (lb >= -1e-9) & (lc >= -1e-9))
    assert len(inside) >= 1
    k = inside[0]
    return float(la[k] * ay[k] + lb[k] * by[k] + lc[k] * cy[k])


def test_height_at_is_on_the_triangles(maps: dict[str, np.ndarray]) -> None:
    extent = 200.0
    h = lod_heights(maps["a"], 3)  # 17x17: a mesh small enough to search every triangle
    bumpy = np.random.default_rng(3).normal(0, 5, (9, 9)).astype(np.float32)  # sharp: the diagonal matters
    for heights in (h, bumpy):
        n = heights.shape[0]
        step = extent / (n - 1)
        for i, j in ((0, 0), (n - 1, n - 1), (3, 5), (n - 1, 0)):
            assert height_at(heights, extent, -extent / 2 + j * step, -extent / 2 + i * step) == pytest.approx(
                float(heights[i, j]), abs=1e-4
            )
        mesh = terrain_mesh(heights, extent)
        rng = np.random.default_rng(7)
        for x, z in rng.uniform(-extent / 2, extent / 2, (100, 2)):
            assert height_at(heights, extent, x, z) == pytest.approx(_on_triangles(mesh, x, z), abs=1e-3)
    # outside the square: the edge's height
    assert height_at(bumpy, extent, -1e6, -1e6) == pytest.approx(float(bumpy[0, 0]))


def test_lods_halve_and_stay_on_the_surface(maps: dict[str, np.ndarray]) -> None:
    h = maps["a"]
    meshes = lod_meshes(h, 200.0, 4)
    assert [int(round(len(m.positions) ** 0.5)) for m in meshes] == [129, 65, 33, 17]
    assert np.array_equal(lod_heights(h, 2), h[::4, ::4])
    odd = lod_heights(h[:100, :100], 1)  # 99 / 2 is not whole: sampled, not picked
    assert odd.shape == (50, 50) and odd[0, 0] == h[0, 0] and odd[-1, -1] == h[99, 99]


# -- formats --------------------------------------------------------------------------------------


def test_png16_round_trips_within_a_step(maps: dict[str, np.ndarray]) -> None:
    h = maps["a"]
    data, low, high = png16(h)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode.startswith("I")
        assert image.size == (129, 129)
        q = np.asarray(image).astype(np.float64)
    back = low + q / 65535.0 * (high - low)
    assert np.abs(back - h).max() <= (high - low) / 65535.0
    assert low == float(h.min()) and high == float(h.max())
    flat, low, high = png16(np.full((4, 4), 3.0, np.float32))
    assert low == high == 3.0


def test_f32_is_little_endian_row_major(maps: dict[str, np.ndarray]) -> None:
    h = maps["tiny"]
    assert np.array_equal(np.frombuffer(f32(h), "<f4").reshape(2, 2), h)


def test_terrain_glb_validates_loads_and_repeats(maps: dict[str, np.ndarray]) -> None:
    h = maps["a"]
    glb = terrain_glb(h, 200.0, lods=3)
    assert glb == terrain_glb(h, 200.0, lods=3)
    report = validate(glb)
    assert report["issues"]["numErrors"] == 0, problems(report)
    assert report["issues"]["numWarnings"] == 0, problems(report)
    document = _json(glb)
    terrain = document["nodes"][0]
    assert terrain["name"] == "terrain" and document["scenes"][0]["nodes"] == [0]
    assert terrain["extras"]["size"] == 129 and terrain["extras"]["extent_m"] == 200.0
    assert terrain["extras"]["min_height"] == 0.0 and terrain["extras"]["max_height"] == float(h.max())
    assert [document["nodes"][i]["name"] for i in terrain["extensions"]["MSFT_lod"]["ids"]] == [
        "terrain_lod1",
        "terrain_lod2",
    ]
    assert document["asset"]["generator"].startswith("xrserve ")
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    assert len(scene.graph.nodes_geometry) == 1  # a viewer without MSFT_lod draws the full mesh only
    assert len(terrain_glb(maps["large"], 200.0)) > 10_000_000


# -- the GLB writer ---------------------------------------------------------------------------------


def _tree() -> Mesh:
    trunk = trimesh.creation.cylinder(radius=0.2, height=2.0)
    colours = np.tile([0.3, 0.2, 0.1, 1.0], (len(trunk.vertices), 1))
    return Mesh(trunk.vertices, trunk.faces, colors=colours)


def test_a_shared_mesh_is_stored_once() -> None:
    tree = _tree()
    one = write_glb([Node("tree_0", tree)])
    forest = write_glb([Node(f"tree_{k}", tree, translation=(k * 3.0, 0.0, 0.0)) for k in range(40)])
    document = _json(forest)
    assert len(document["meshes"]) == 1 and len(document["nodes"]) == 40
    assert document["buffers"][0]["byteLength"] == _json(one)["buffers"][0]["byteLength"]
    assert len(forest) - len(one) < 40 * 200  # 39 more nodes of JSON, no more vertices
    report = validate(forest)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, problems(report)


def test_names_and_extras_survive_a_round_trip() -> None:
    tree = _tree()
    nodes = [
        Node("camp", children=[Node("tent", tree, extras={"category": "tent", "tags": [], "n": np.int64(2)})]),
        Node("spawn", translation=(1.0, 2.0, 3.0), rotation=(0.0, 0.7071068, 0.0, 0.7071068), extras={"spawn": True}),
    ]
    glb = write_glb(nodes, extras={"prompt": "a camp", "seed": 4, "empty": {}})
    loaded = pygltflib.GLTF2.load_from_bytes(glb)
    assert [n.name for n in loaded.nodes] == ["camp", "tent", "spawn"]
    assert loaded.nodes[0].children == [1]
    assert loaded.nodes[1].extras == {"category": "tent", "tags": [], "n": 2}
    assert loaded.nodes[2].translation == [1.0, 2.0, 3.0] and loaded.nodes[2].extras == {"spawn": True}
    assert loaded.scenes[0].extras == {"prompt": "a camp", "seed": 4, "empty": {}}
    assert loaded.scenes[0].nodes == [0, 2]
    with pytest.raises(ValueError, match="twice"):
        shared = Node("x", tree)
        write_glb([shared, shared])


def test_a_textured_quad_validates() -> None:
    image = Image.new("RGBA", (128, 32), (255, 255, 255, 0))
    image.paste((20, 20, 20, 255), (8, 8, 120, 24))
    png = io.BytesIO()
    image.save(png, format="PNG")
    quad = Mesh(
        [[-1, 0, 0], [1, 0, 0], [1, 0.5, 0], [-1, 0.5, 0]],
        [[0, 1, 2], [0, 2, 3]],
        uvs=[[0, 1], [1, 1], [1, 0], [0, 0]],
        texture_png=png.getvalue(),
        double_sided=True,
    )
    glb = write_glb([Node("label", quad, extras={"text": "camp"})])
    report = validate(glb)
    assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, problems(report)
    document = _json(glb)
    material = document["materials"][0]
    assert material["alphaMode"] == "BLEND" and material["doubleSided"] is True
    assert material["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0
    assert document["images"][0]["mimeType"] == "image/png" and "bufferView" in document["images"][0]
    assert document["samplers"] and document["textures"][0] == {"sampler": 0, "source": 0}


def test_index_width_follows_the_vertex_count(maps: dict[str, np.ndarray]) -> None:
    small = _json(terrain_glb(maps["a"], 200.0))  # 16641 vertices
    large = _json(write_glb([Node("t", terrain_mesh(lod_heights(maps["large"], 1), 200.0))]))  # 66049
    assert small["accessors"][small["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5123
    assert large["accessors"][large["meshes"][0]["primitives"][0]["indices"]]["componentType"] == 5125
    opaque = small["materials"][0]
    assert opaque["alphaMode"] == "OPAQUE" and opaque["pbrMetallicRoughness"]["metallicFactor"] == 0.0
