"""From a prompt to a scene: extraction, embeddings, terrain, layout, export, timed stage by stage.

The stages run in that order because each needs the one before: the words to match,
the assets' footprints to lay out, the terrain to stand on. Model calls (LLM, minilm,
the terrain generator) go through the `InferenceClient` at bulk priority, so a scene
never delays a camera frame or a character's voice; the geometry work runs in a thread
so the event loop keeps serving everyone else while a GLB is assembled.

An edit reuses the previous revision's terrain (levelled pads included) and placements:
what the edit names is removed or added, everything else keeps its exact transform.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from xrserve.core.client import InferenceClient
from xrserve.core.errors import BadRequest
from xrserve.worlds.assets import COLORS, asset_mesh, label_anchor, recolored
from xrserve.worlds.extraction import EditSpec, ObjectSpec, SceneSpec, extract_with_llm, parse_edit, parse_prompt
from xrserve.worlds.glb import Node, write_glb
from xrserve.worlds.labels import label_mesh
from xrserve.worlds.layout import Layout, Placement, Wanted
from xrserve.worlds.matching import AssetMatcher, Match
from xrserve.worlds.mesh import Mesh
from xrserve.worlds.terrain import TerrainSpec, generate_heightmap, height_at, terrain_mesh

SCENE_SIZE = 129  # terrain vertices a side: 0.6 m between vertices over the default extent
SCENE_EXTENT_M = 80.0  # a scene is a place to walk around in VR, not a landscape to fly over
RELIEF_M = 6.0  # the generated shape is rescaled to this height range: hills to walk, not cliffs
MAX_PROMPT_CHARS = 2000
MAX_OBJECTS = 150  # instances in one scene: beyond this the layout and the GLB stop being interactive
SIZES = {"small": 0.6, "large": 1.6}
MAX_WALK_SLOPE = math.tan(math.radians(35))  # steeper ground is left out of the walkable mesh
EXTRACTORS = ("parser", "llm")

Progress = Callable[[str, float], Awaitable[None] | None]


@dataclass
class SceneResult:
    graph: dict[str, Any]
    heights: np.ndarray
    glb: bytes
    timings: dict[str, float] = field(default_factory=dict)


def check_prompt(prompt: str) -> str:
    prompt = prompt.strip()
    if not prompt:
        raise BadRequest("'prompt' is empty: describe the scene, e.g. 'a lakeside camp with three tents'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"'prompt' has {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    return prompt


def check_counts(objects: list[ObjectSpec], already: int = 0) -> None:
    total = already + sum(o.count for o in objects)
    if total > MAX_OBJECTS:
        raise BadRequest(f"the scene would hold {total} objects; at most {MAX_OBJECTS}: ask for fewer")


SETTING_WATER = {"lake", "lakeside", "pond", "river", "riverside", "harbour", "harbor", "beach", "shore", "coast"}
SETTING_WOODS = {"forest", "woods", "woodland", "grove", "jungle"}
WATER_WORDS = {"lake", "pond", "water", "river", "sea", "pool"}
TREE_WORDS = {"tree", "pine", "oak", "birch", "palm", "fir", "spruce", "conifer"}
FOREST_TREES = 14
GENERIC = {"tree": ("pine", "oak", "birch"), "rock": ("boulder", "small_rock", "rock_pile"), "flower": ("flowers",)}
"""Words that name a whole category: each copy is one of these assets, so "twenty trees" is a mixed wood."""


def setting_objects(setting: str | None, objects: list[ObjectSpec]) -> list[ObjectSpec]:
    """What a setting word brings that the prompt's objects do not already include."""
    words = set((setting or "").lower().replace("-", " ").split())
    listed = {o.word for o in objects}
    extra = []
    if words & SETTING_WATER and not listed & WATER_WORDS:
        extra.append(ObjectSpec(word="lake"))
    if words & SETTING_WOODS and not listed & TREE_WORDS:
        extra.append(ObjectSpec(word="tree", count=FOREST_TREES))
    return extra


def check_edit(prompt: str) -> EditSpec:
    """The edit a prompt asks for, or a 400 when it names nothing to add or remove."""
    change = parse_edit(prompt)
    if not change.add and not change.remove:
        raise BadRequest(
            f"the edit {prompt!r} names nothing to add or remove: say e.g. 'add two lamps next to the tent' "
            "or 'remove the boat'"
        )
    return change


class ScenePipeline:
    """Builds scenes with the models it is given; one per server, shared by all jobs."""

    def __init__(
        self,
        client: InferenceClient,
        *,
        embeddings: str = "minilm",
        llm: str = "smollm2",
        terrain_model: Literal["terrain-gan", "terrain-vae"] = "terrain-gan",
    ) -> None:
        self.client = client
        self.llm = llm
        self.terrain_model = terrain_model
        self.matcher = AssetMatcher(client, embeddings)
        # LLM extractions per (prompt, model, version): batched decoding can change a token, a repeat must not
        self._extractions: dict[tuple[str, str, str], SceneSpec] = {}

    # -- the two entry points ------------------------------------------------------------

    async def create(
        self,
        scene_id: str,
        prompt: str,
        seed: int,
        extractor: str = "parser",
        progress: Progress | None = None,
        session: str | None = None,
    ) -> SceneResult:
        stage = _Stages(progress)
        async with stage("extraction"):
            spec = await self.extract(prompt, extractor, session)
        check_counts(spec.objects)
        async with stage("embeddings"):
            wanted, unmatched = await self.wanted(spec.objects, session, spec.setting)
        async with stage("terrain"):
            heights = await self.terrain(seed, session)
        async with stage("layout"):
            layout = Layout(heights, SCENE_EXTENT_M, seed)
            await asyncio.to_thread(layout.place, wanted)
        graph = {
            "id": scene_id,
            "revision": 1,
            "prompts": [prompt],
            "seed": seed,
            "extractor": extractor,
            "unmatched": unmatched,
        }
        return await self._finish(graph, layout, stage)

    async def edit(
        self,
        previous: dict[str, Any],
        heights: np.ndarray,
        prompt: str,
        progress: Progress | None = None,
        session: str | None = None,
    ) -> SceneResult:
        stage = _Stages(progress)
        async with stage("extraction"):
            change = check_edit(prompt)
        placed = [Placement.from_json(o) for o in previous["objects"]]
        check_counts(change.add, len(placed))
        async with stage("embeddings"):
            wanted, unmatched = await self.wanted(change.add, session, present=placed)
            removed = await self._removals(change, placed, session)
        async with stage("layout"):
            layout = Layout(heights, SCENE_EXTENT_M, int(previous["seed"]) + int(previous["revision"]), placed)
            layout.remove(removed)
            await asyncio.to_thread(layout.place, wanted)
        graph = {
            "id": previous["id"],
            "revision": int(previous["revision"]) + 1,
            "prompts": [*previous["prompts"], prompt],
            "seed": previous["seed"],
            "extractor": previous.get("extractor", "parser"),
            "unmatched": sorted(set(previous.get("unmatched", [])) | set(unmatched)),
            "removed": sorted(removed),
        }
        return await self._finish(graph, layout, stage)

    async def _finish(self, graph: dict[str, Any], layout: Layout, stage: _Stages) -> SceneResult:
        async with stage("export"):
            glb, graph = await asyncio.to_thread(self.export, graph, layout)
        graph["timings_ms"] = stage.timings
        return SceneResult(graph, layout.heights, glb, stage.timings)

    # -- stages ---------------------------------------------------------------------------

    async def extract(self, prompt: str, extractor: str, session: str | None) -> SceneSpec:
        if extractor == "parser":
            return parse_prompt(prompt)
        if extractor != "llm":
            raise BadRequest(f"'extractor' must be one of {', '.join(EXTRACTORS)}, not {extractor!r}")
        version = self.client.resolve(self.llm).version
        key = (prompt, self.llm, version)
        if key not in self._extractions:
            self._extractions[key] = await extract_with_llm(self.client, self.llm, prompt, session=session)
        return self._extractions[key].model_copy(deep=True)

    async def wanted(
        self,
        objects: list[ObjectSpec],
        session: str | None,
        setting: str | None = None,
        present: list[Placement] = (),  # type: ignore[assignment]
    ) -> tuple[list[Wanted], list[str]]:
        """Each object (and each relation's target the prompt did not list) matched to an asset.

        The setting adds what it implies and the prompt did not list: a lakeside camp gets
        its lake, a forest its trees.
        """
        objects = [*setting_objects(setting, objects), *objects]
        words = [o.word for o in objects]
        for o in objects:
            target = o.relation.target if o.relation else None
            if target and target not in words:
                words.append(target)
        matches = {m.word: m for m in await self.matcher.match(words, session=session)} if words else {}
        listed = {o.word for o in objects}
        there = {p.word for p in present} | {p.category for p in present}
        extra = [
            ObjectSpec(word=w)
            for w in words  # "along the road": the road comes too, unless the scene has one
            if w not in listed and matches[w].asset is not None and not {w, matches[w].category} & there
        ]
        wanted: list[Wanted] = []
        unmatched: list[str] = []
        for o in [*extra, *objects]:
            match: Match = matches[o.word]
            if match.asset is None and o.word not in unmatched:
                unmatched.append(o.word)
            relation = o.relation.kind if o.relation else None
            target = o.relation.target if o.relation else None
            wanted.append(
                Wanted(
                    o.word,
                    match.category,
                    match.asset,
                    o.count,
                    SIZES.get(o.size or "", 1.0),
                    relation,
                    target,
                    o.text,
                    o.color if o.color in COLORS else None,
                    variants=GENERIC.get(o.word, ()) if match.asset is not None and not o.color else (),
                )
            )
        return wanted, unmatched

    async def _removals(self, change: EditSpec, placed: list[Placement], session: str | None) -> set[str]:
        """Ids of the objects an edit names: by the word used, else by the category it matches."""
        words = [r.word for r in change.remove]
        matches = {m.word: m for m in await self.matcher.match(words, session=session)} if words else {}
        removed: set[str] = set()
        for r in change.remove:
            hits = [p for p in placed if p.word == r.word and p.id not in removed]
            if not hits and matches[r.word].asset is not None:
                hits = [p for p in placed if p.category == matches[r.word].category and p.id not in removed]
            if not hits:
                present = sorted({p.word for p in placed})
                raise BadRequest(f"the scene has no {r.word!r} to remove; it has: {', '.join(present)}")
            # the most recently added go first ("remove two of the tents" keeps the first tent)
            removed.update(p.id for p in hits[::-1][: r.count or len(hits)])
        # what stood on a removed object goes with it
        removed.update(p.id for p in placed if p.on in removed)
        return removed

    async def terrain(self, seed: int, session: str | None) -> np.ndarray:
        """The generated shape at scene scale: centred on 0 and rescaled to a walkable relief."""
        spec = TerrainSpec(seed=seed, size=SCENE_SIZE, extent_m=SCENE_EXTENT_M, model=self.terrain_model)
        heights = await generate_heightmap(self.client, spec, session=session)
        low, high = np.percentile(heights, [2, 98])
        scaled = (heights - np.median(heights)) * (RELIEF_M / max(float(high - low), 1e-3))
        return scaled.astype(np.float32)

    # -- export ---------------------------------------------------------------------------

    def export(self, graph: dict[str, Any], layout: Layout) -> tuple[bytes, dict[str, Any]]:
        """The GLB and the scene graph JSON, both from the same placements."""
        heights, extent = layout.heights, layout.extent_m
        ground = terrain_mesh(heights, extent, alpine=False)
        walkable = walkable_mesh(ground, layout.placed)
        spawn = spawn_point(ground, walkable, layout)
        nodes = [
            Node("terrain", ground, extras={"terrain": True}),
            Node("navmesh", walkable, extras={"walkable": True}),
            Node(
                "spawn",
                translation=spawn["position"],
                rotation=_yaw_quaternion(spawn["yaw"]),
                extras={"spawn": True},
            ),
        ]
        labels: list[dict[str, Any]] = []
        objects: list[dict[str, Any]] = []
        for p in layout.placed:
            node = Node(
                p.id,
                _mesh_of(p),
                translation=(p.x, p.y, p.z),
                rotation=_yaw_quaternion(p.yaw),
                scale=(p.scale * p.stretch, p.scale, p.scale),
                extras={"category": p.category, "asset": p.asset or "placeholder", "word": p.word},
            )
            text = p.text or (p.word if p.asset is None else None)
            if text:
                label, where = _label_node(p, text)
                node.children.append(label)
                labels.append({"name": label.name, "text": text, "object": p.id, "position": where})
            nodes.append(node)
            objects.append({"name": p.id, **p.as_json()})
        graph = {
            **graph,
            "terrain": {
                "model": self.terrain_model,
                "size": int(heights.shape[0]),
                "extent_m": extent,
                "min_height": round(float(heights.min()), 4),
                "max_height": round(float(heights.max()), 4),
            },
            "objects": objects,
            "labels": labels,
            "unplaced": list(layout.unplaced),
            "spawn": spawn,
            "walkable": {"node": "navmesh", "triangles": int(len(walkable.indices))},
        }
        # no scene id in the file: the same prompt and seed give the same bytes, whoever asks
        glb = write_glb(nodes, extras={"prompts": graph["prompts"], "seed": graph["seed"], "spawn": spawn})
        return glb, graph


# -- pieces of the export ------------------------------------------------------------------


def _mesh_of(p: Placement) -> Mesh:
    if p.asset is None:
        return asset_mesh("placeholder")
    if p.color:
        return recolored(p.asset, COLORS[p.color])
    return asset_mesh(p.asset)


def _yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))


LABEL_HEIGHT_M = 0.3


def _label_node(p: Placement, text: str) -> tuple[Node, list[float]]:
    """A label on the object's front (+z, the side turned to the viewer), in the object's own frame.

    On a sign (or the placeholder box) it is painted on the board the asset says is there;
    on anything else (a house with a name) it hangs over the front at two thirds of the
    height. Long texts shrink to fit the board's width.
    """
    name = p.asset or "placeholder"
    mesh = asset_mesh(name)
    lo, hi = mesh.bounds
    label = label_mesh(text, height_m=LABEL_HEIGHT_M)
    width = float(label.bounds[1][0] - label.bounds[0][0])
    anchor = label_anchor(name)
    if anchor is not None:
        (ax, ay, az), room = anchor
        local = (ax, ay, az + 0.01)
    else:
        room = float(hi[0] - lo[0]) * 0.9
        local = (float(hi[0] + lo[0]) / 2, float(hi[1]) * 0.66, float(hi[2]) + 0.05)
    shrink = min(1.0, 0.95 * room / width) if width > 0 else 1.0
    node = Node(f"label_{p.id}", label, translation=local, scale=(shrink, shrink, shrink), extras={"text": text})
    c, s = math.cos(p.yaw), math.sin(p.yaw)
    lx, ly, lz = local[0] * p.scale * p.stretch, local[1] * p.scale, local[2] * p.scale
    world = [round(p.x + lx * c + lz * s, 4), round(p.y + ly, 4), round(p.z - lx * s + lz * c, 4)]
    return node, world


def _inside(points: np.ndarray, p: Placement, grow: float) -> np.ndarray:
    """Which x/z points lie in the object's footprint rectangle grown by `grow` metres."""
    c, s = math.cos(p.yaw), math.sin(p.yaw)
    dx, dz = points[:, 0] - p.x, points[:, 1] - p.z
    # into the object's frame: the inverse of the yaw rotation
    lx, lz = dx * c - dz * s - p.centre[0], dx * s + dz * c - p.centre[1]
    return (np.abs(lx) <= p.half[0] + grow) & (np.abs(lz) <= p.half[1] + grow)


def walkable_mesh(ground: Mesh, placed: list[Placement]) -> Mesh:
    """The terrain's triangles a person can stand on: not too steep, not under an object or water."""
    tri = ground.positions[ground.indices]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    keep = normal[:, 1] >= 1 / math.sqrt(1 + MAX_WALK_SLOPE**2)
    centroids = tri.mean(axis=1)[:, [0, 2]]
    for p in placed:
        keep &= ~_inside(centroids, p, 0.3)
    faces = ground.indices[keep]
    used, inverse = np.unique(faces, return_inverse=True)
    colors = np.zeros((len(used), 4), np.float32)  # invisible: a collider, not something to see
    return Mesh(ground.positions[used], inverse.reshape(-1, 3), ground.normals[used], colors)  # type: ignore[index]


def spawn_point(ground: Mesh, walkable: Mesh, layout: Layout) -> dict[str, Any]:
    """Where the viewer starts: walkable ground toward the +z side, clear of objects, facing the centre."""
    tri = walkable.positions[walkable.indices]
    centroids = tri.mean(axis=1)
    preferred = np.array([0.0, layout.extent_m * 0.3])
    order = np.argsort(np.hypot(centroids[:, 0] - preferred[0], centroids[:, 2] - preferred[1]), kind="stable")
    for index in order[:5000]:
        x, _, z = (float(v) for v in centroids[index])
        point = np.array([[x, z]])
        if any(_inside(point, p, 1.5)[0] for p in layout.placed):
            continue
        y = height_at(layout.heights, layout.extent_m, x, z)
        yaw = math.atan2(-x, -z)  # +z of the spawn node points at the centre
        return {"position": [round(x, 4), round(y, 4), round(z, 4)], "yaw": round(yaw, 6)}
    raise BadRequest("the scene has no free walkable ground for the viewer to stand on: ask for fewer objects")


# -- small helpers ---------------------------------------------------------------------------


class _Stages:
    """Each stage reported to the job with its share of the progress, then timed: one step, not two."""

    SHARE = {"extraction": 0.05, "embeddings": 0.2, "terrain": 0.35, "layout": 0.55, "export": 0.75}

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @asynccontextmanager
    async def __call__(self, stage: str) -> AsyncIterator[None]:
        if self.progress is not None:
            result = self.progress(stage, self.SHARE[stage])
            if result is not None:
                await result
        started = time.perf_counter()
        yield
        self.timings[stage] = round((time.perf_counter() - started) * 1000, 2)
