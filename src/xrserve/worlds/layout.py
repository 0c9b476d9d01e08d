"""The layout solver: where each object of a scene stands on the terrain.

Objects are oriented rectangles on the ground plane (the x/z bounds of their mesh,
scaled and turned); no two may overlap, except a thing placed `on` another. Each
rests on the terrain: its base centre is at the exact height of the terrain mesh
there (`terrain.height_at`, the same triangles the GLB holds). Big and flat things
(lakes, paths, houses) get a pad: the terrain under them is levelled and blended back
into its surroundings, so a cabin does not hang over a slope and a lake fills a basin
on the lowest flat ground. The rest is placed by relation, then freely, from a seeded
generator, so the same scene comes out the same.

Relations understood: `at_centre`, `near` (also "next to", "beside"), `around`
(evenly on a ring, facing the centre), `in_a_row` (along the target when there is one,
a road or a fence, else a straight line), `on` (on top of the target's surface when it
has one, else near it). What does not fit is reported, never forced to overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from xrserve.worlds.assets import ASSETS, asset_mesh
from xrserve.worlds.terrain import height_at

BORDER_M = 4.0  # objects keep this far from the terrain's edge: no tent hangs over the end of the world
GAP_M = 0.4  # the least free space between two objects' rectangles
PAD_RADIUS_M = 2.5  # objects at least this large get a levelled pad
MAX_SLOPE = 0.45  # rise over run under a small object's base (about 24 degrees)
LAKE_DEPTH_M = 0.6  # how deep a lake's bed is dug below its shore
TRIES = 400  # candidate positions per object before it is reported as not fitting

NATURE = {"tree", "bush", "flower", "rock", "log", "mushroom"}
"""Categories that scatter over the land; everything else people made gathers into one settlement (a camp)."""
UNGATHERED = NATURE | {"water", "path", "bridge", "placeholder"}


@dataclass
class Wanted:
    """One line of the scene's order: `count` copies of an asset, perhaps related to another object."""

    word: str
    category: str
    asset: str | None  # None: a labelled placeholder
    count: int = 1
    scale: float = 1.0
    relation: str | None = None
    target: str | None = None  # the word of the related object
    text: str | None = None
    color: str | None = None
    stretch: float = 1.0  # extra length along the asset's own x (a road as long as the row of lamps beside it)
    variants: tuple[str, ...] = ()  # "trees": each copy one of these assets, for a forest of several kinds


STRETCHY = {"path", "fence", "hedge"}
"""Categories built as one straight piece along x that a row can ask to be longer."""


@dataclass
class Placement:
    """One placed object: what it is, where it stands, how it is turned, and what it occupies."""

    id: str
    word: str
    category: str
    asset: str | None
    x: float
    y: float
    z: float
    yaw: float  # radians about +Y; the object's +Z axis then points to (sin yaw, 0, cos yaw)
    scale: float
    half: tuple[float, float]  # half extents of the footprint along the object's own x and z, scaled
    centre: tuple[float, float]  # the footprint's centre in the object's frame (meshes are not always centred)
    relation: str | None = None
    target: str | None = None  # id of the related placement
    text: str | None = None
    color: str | None = None
    on: str | None = None  # id of the placement it stands on
    pad: float | None = None  # margin of levelled ground around its footprint, metres
    stretch: float = 1.0  # the node's x scale is scale * stretch

    def corners(self, grow: float = 0.0) -> np.ndarray:
        """The footprint rectangle's four corners in world x/z."""
        hx, hz = self.half[0] + grow, self.half[1] + grow
        local = np.array([[-hx, -hz], [hx, -hz], [hx, hz], [-hx, hz]]) + self.centre
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        # rotating (x, z) about +Y by yaw: x' = x cos + z sin, z' = -x sin + z cos
        rot = np.array([[c, -s], [s, c]])
        return local @ rot + (self.x, self.z)

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "word": self.word,
            "category": self.category,
            "asset": self.asset,
            "position": [round(self.x, 4), round(self.y, 4), round(self.z, 4)],
            "yaw": round(self.yaw, 6),
            "scale": round(self.scale, 4),
            "footprint": {"half": [round(v, 4) for v in self.half], "centre": [round(v, 4) for v in self.centre]},
            "relation": self.relation,
            "target": self.target,
            "text": self.text,
            "color": self.color,
            "on": self.on,
            "pad": self.pad,
            "stretch": round(self.stretch, 4),
        }

    @classmethod
    def from_json(cls, data: dict) -> Placement:
        x, y, z = data["position"]
        return cls(
            data["id"],
            data["word"],
            data["category"],
            data["asset"],
            x,
            y,
            z,
            data["yaw"],
            data["scale"],
            tuple(data["footprint"]["half"]),
            tuple(data["footprint"]["centre"]),
            data.get("relation"),
            data.get("target"),
            data.get("text"),
            data.get("color"),
            data.get("on"),
            data.get("pad"),
            data.get("stretch", 1.0),
        )


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals (corner arrays [4, 2])."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ez in edges:
            axis = np.array([-ez, ex])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def footprint(asset: str | None, scale: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Half extents and centre of a mesh's x/z bounds (the placeholder's when `asset` is None)."""
    mesh = asset_mesh(asset or "placeholder")
    lo, hi = mesh.bounds[0], mesh.bounds[1]
    half = (float(hi[0] - lo[0]) / 2 * scale, float(hi[2] - lo[2]) / 2 * scale)
    centre = (float(hi[0] + lo[0]) / 2 * scale, float(hi[2] + lo[2]) / 2 * scale)
    return half, centre


@dataclass
class Layout:
    """The terrain (levelled in place as pads are made) and everything placed on it so far."""

    heights: np.ndarray
    extent_m: float
    seed: int
    placed: list[Placement] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)  # words of objects that found no room

    def __post_init__(self) -> None:
        self.heights = np.array(self.heights, dtype=np.float32)  # a copy: pads edit it
        n = self.heights.shape[0]
        axis = np.linspace(-self.extent_m / 2, self.extent_m / 2, n)
        self._gx, self._gz = np.meshgrid(axis, axis)  # vertex x, z (rows run along z)
        self._protected = np.zeros_like(self.heights, dtype=bool)
        for p in self.placed:
            self._protect(p)
        self._counts: dict[str, int] = {}
        for p in self.placed:
            prefix, _, number = p.id.rpartition("_")
            self._counts[prefix] = max(self._counts.get(prefix, 0), int(number) if number.isdigit() else 0)

    # -- the public step ------------------------------------------------------------------

    def place(self, wanted: list[Wanted]) -> list[Placement]:
        """Place every copy of every wanted object; returns the new placements in order.

        Order matters: flat and big things first (their pads reshape the ground), then
        targets of relations before what relates to them, then the rest.
        """
        targets = {w.target for w in wanted if w.target}
        for w in wanted:  # a row along a road: the road is made as long as the row
            if w.relation == "in_a_row" and w.target:
                for t in wanted:
                    if t.word == w.target and t.category in STRETCHY:
                        (member_x, _), _ = footprint(w.asset, w.scale)
                        (road_x, _), _ = footprint(t.asset, t.scale)
                        row = w.count * (2 * member_x + 2.0)
                        t.stretch = max(t.stretch, min(8.0, row / (2 * road_x)))

        def rank(item: tuple[int, Wanted]) -> tuple[int, int]:
            index, w = item
            size = footprint(w.asset, w.scale)[0]
            big = max(size) >= PAD_RADIUS_M or (w.asset is not None and ASSETS[w.asset].flat)
            return (0 if big else 1 if w.word in targets or w.category in targets else 2, index)

        new: list[Placement] = []
        for index, w in sorted(enumerate(wanted), key=rank):
            rng = np.random.default_rng([self.seed, index, len(self.placed)])
            for k in range(w.count):
                placement = self._place_one(w, k, rng)
                if placement is None:
                    self.unplaced.append(w.word)
                    continue
                self.placed.append(placement)
                self._protect(placement)
                new.append(placement)
        return new

    def remove(self, ids: set[str]) -> None:
        """Take objects away (their pads stay: the ground does not spring back)."""
        self.placed = [p for p in self.placed if p.id not in ids]

    # -- one object ---------------------------------------------------------------------

    def _new_id(self, w: Wanted) -> str:
        self._counts[w.category] = self._counts.get(w.category, 0) + 1
        return f"{w.category}_{self._counts[w.category]}"

    def _place_one(self, w: Wanted, k: int, rng: np.random.Generator) -> Placement | None:
        if w.variants:
            w = replace(w, asset=w.variants[int(rng.integers(len(w.variants)))])
        (hx, hz), (cx, cz) = footprint(w.asset, w.scale)
        half, centre = (hx * w.stretch, hz), (cx * w.stretch, cz)
        target = self._target(w)
        flat = w.asset is not None and ASSETS[w.asset].flat
        big = flat or max(half) >= PAD_RADIUS_M
        candidate = Placement(
            "", w.word, w.category, w.asset, 0.0, 0.0, 0.0, 0.0, w.scale, half, centre, w.relation, text=w.text
        )
        candidate.color, candidate.stretch = w.color, w.stretch
        if target is not None:
            candidate.target = target.id
        water = target if target is not None and target.category == "water" else None
        if water is None and w.category == "boat" and w.relation is None:
            water = next((p for p in self.placed if p.category == "water"), None)
        if water is not None and (w.category == "boat" or w.relation == "on"):
            return self._float(candidate, water, w, rng)
        if w.relation == "on" and target is not None and target.asset and ASSETS[target.asset].surface_height:
            return self._stack(candidate, target, w)
        siblings = [
            p for p in self.placed if p.word == w.word and p.relation == w.relation and p.target == candidate.target
        ]
        is_lake = w.category == "water" and target is None
        low = self.lowest_flat_spot(max(half) + GAP_M) if is_lake else None
        for attempt in range(TRIES):
            x, z, yaw = self._propose(w, k, target, siblings, rng, attempt, candidate)
            if low is not None and attempt < TRIES // 4:  # water seeks the lowest flat ground
                x, z = low[0] + rng.normal(0, 0.5 * attempt), low[1] + rng.normal(0, 0.5 * attempt)
            candidate.x, candidate.z, candidate.yaw = x, z, yaw
            if not self._fits(candidate, ignore=None, check_slope=not big):
                continue
            candidate.id = self._new_id(w)
            candidate.y = height_at(self.heights, self.extent_m, candidate.x, candidate.z)
            if big:  # the surface a lake's water lies at is its shore's level, above its dug bed
                candidate.y = self._pad(candidate, lowest=w.category == "water")
            return candidate
        return None

    def _stack(self, candidate: Placement, target: Placement, w: Wanted) -> Placement | None:
        top = ASSETS[target.asset].surface_height or 0.0  # type: ignore[index]
        if any(p.on == target.id for p in self.placed):  # one thing on a table; the next goes beside it
            return None
        candidate.x, candidate.z, candidate.yaw = target.x, target.z, target.yaw
        candidate.y = target.y + top * target.scale
        candidate.on = target.id
        candidate.id = self._new_id(w)
        return candidate

    def _float(self, candidate: Placement, water: Placement, w: Wanted, rng: np.random.Generator) -> Placement | None:
        """A boat (or anything asked to be on the water) on the lake's surface, inside its shore."""
        c, s = math.cos(water.yaw), math.sin(water.yaw)
        for _ in range(TRIES // 4):
            u, v = rng.uniform(-0.6, 0.6, size=2)
            lx, lz = u * water.half[0] + water.centre[0], v * water.half[1] + water.centre[1]
            candidate.x, candidate.z = float(water.x + lx * c + lz * s), float(water.z - lx * s + lz * c)
            candidate.yaw = float(rng.uniform(0, 2 * math.pi))
            # inside the ellipse the water fills, and clear of every other thing on or by it
            corners = candidate.corners()
            dx, dz = corners[:, 0] - water.x, corners[:, 1] - water.z
            ex, ez = dx * c - dz * s - water.centre[0], dx * s + dz * c - water.centre[1]
            if (((ex / water.half[0]) ** 2 + (ez / water.half[1]) ** 2) > 0.9).any():
                continue
            grown = candidate.corners(GAP_M / 2)
            if any(_overlap(grown, p.corners(GAP_M / 2)) for p in self.placed if p.id != water.id):
                continue
            candidate.y, candidate.on, candidate.target = water.y, water.id, water.id
            candidate.id = self._new_id(w)
            return candidate
        return None

    def _target(self, w: Wanted) -> Placement | None:
        if not w.target:
            return None
        for p in self.placed:
            if p.word == w.target:
                return p
        for p in self.placed:
            if p.category == w.target:
                return p
        return None

    def _propose(
        self,
        w: Wanted,
        k: int,
        target: Placement | None,
        siblings: list[Placement],
        rng: np.random.Generator,
        attempt: int,
        me: Placement,
    ) -> tuple[float, float, float]:
        """A candidate position and heading; later attempts wander further from the ideal."""
        reach = max(me.half) + GAP_M
        loosen = 1.0 + attempt / 40
        if w.relation == "at_centre" and attempt < TRIES // 2:
            r = rng.uniform(0, 1.5 * loosen * attempt / 10)
            a = rng.uniform(0, 2 * math.pi)
            return r * math.sin(a), r * math.cos(a), self._facing_viewer(r * math.sin(a), r * math.cos(a))
        if target is not None and w.relation == "around":
            ring = max(target.half) + reach + 1.0 + 0.3 * attempt
            a = 2 * math.pi * k / max(1, w.count) + 0.05 * attempt * (1 if attempt % 2 else -1)
            x, z = target.x + ring * math.sin(a), target.z + ring * math.cos(a)
            return x, z, math.atan2(target.x - x, target.z - z)  # facing the centre of the ring
        if w.relation == "in_a_row" and attempt < TRIES // 2:
            row = self._row_slot(w, k, target, siblings, me, rng, attempt)
            if row is not None:
                return row
        if target is not None:  # near / next to / on without a surface / a row that failed
            ring = max(target.half) + reach + rng.uniform(0.3, 2.5) * loosen
            a = rng.uniform(0, 2 * math.pi)
            x, z = target.x + ring * math.sin(a), target.z + ring * math.cos(a)
            return x, z, math.atan2(target.x - x, target.z - z)
        made = [p for p in self.placed if p.category not in UNGATHERED and p.on is None]
        if w.category not in UNGATHERED and attempt < TRIES // 2:
            if made:  # the settlement grows: next to the last of the same kind, else next to anything in it
                anchor = siblings[-1] if siblings else made[int(rng.integers(len(made)))]
                ring = max(anchor.half) + reach + rng.uniform(0.8, 4.0) * loosen
                a = rng.uniform(0, 2 * math.pi)
                x, z = anchor.x + ring * math.sin(a), anchor.z + ring * math.cos(a)
                return x, z, self._facing_viewer(x, z)
            water = [p for p in self.placed if p.category == "water"]
            if water:  # the first one by the water: a camp by a lake is a lakeside camp
                lake = water[0]
                ring = max(lake.half) + reach + rng.uniform(1.0, 4.0) * loosen
                a = rng.uniform(0, 2 * math.pi)
                x, z = lake.x + ring * math.sin(a), lake.z + ring * math.cos(a)
                return x, z, self._facing_viewer(x, z)
            r, a = rng.uniform(0, 3.0 * loosen), rng.uniform(0, 2 * math.pi)  # else near the middle
            x, z = r * math.sin(a), r * math.cos(a)
            return x, z, self._facing_viewer(x, z)
        span = self.extent_m / 2 - BORDER_M - reach
        x, z = (float(v) for v in rng.uniform(-span, span, size=2))
        return x, z, rng.uniform(0, 2 * math.pi)

    def _row_slot(
        self,
        w: Wanted,
        k: int,
        target: Placement | None,
        siblings: list[Placement],
        me: Placement,
        rng: np.random.Generator,
        attempt: int,
    ) -> tuple[float, float, float] | None:
        """Row members follow the first one at even spacing: along the target's long axis, beside it."""
        spacing = 2 * me.half[0] + 2.0
        if target is not None:
            axis = (math.cos(target.yaw), -math.sin(target.yaw))  # the target's own +x in world x/z
            normal = (math.sin(target.yaw), math.cos(target.yaw))
            length = 2 * target.half[0]
            count = max(1, w.count)
            spacing = max(spacing, length / count) if length > spacing else spacing
            side = target.half[1] + me.half[1] + GAP_M + 0.3 + 0.2 * attempt
            offset = (k - (count - 1) / 2) * spacing
            x = target.x + axis[0] * offset + normal[0] * side
            z = target.z + axis[1] * offset + normal[1] * side
            return x, z, target.yaw
        if not siblings:
            return None  # the first of a free row is placed like any object; the rest follow it
        first = siblings[0]
        yaw = first.yaw
        axis = (math.cos(yaw), -math.sin(yaw))
        step = spacing * (len(siblings)) * (1 + 0.02 * attempt)
        return first.x + axis[0] * step, first.z + axis[1] * step, yaw

    def _facing_viewer(self, x: float, z: float) -> float:
        """Turn toward the spawn side of the world (+z), where the viewer starts."""
        return math.atan2(0.0 - x, self.extent_m / 2 - z) if abs(x) + abs(z) > 1e-6 else 0.0

    # -- checks and ground work ------------------------------------------------------------

    def _fits(self, me: Placement, ignore: str | None, check_slope: bool) -> bool:
        limit = self.extent_m / 2 - BORDER_M
        corners = me.corners()
        if np.abs(corners).max() > limit:
            return False
        grown = me.corners(GAP_M / 2)
        for other in self.placed:
            if other.id == ignore or other.on is not None:
                continue
            if _overlap(grown, other.corners(GAP_M / 2)):
                return False
        if check_slope:
            ys = [height_at(self.heights, self.extent_m, float(cx), float(cz)) for cx, cz in corners]
            if (max(ys) - min(ys)) > MAX_SLOPE * 2 * max(me.half) + 0.05:
                return False
        return True

    def _local(self, p: Placement) -> tuple[np.ndarray, np.ndarray]:
        """Every terrain vertex in the object's own frame, relative to its footprint's centre."""
        c, s = math.cos(p.yaw), math.sin(p.yaw)
        dx, dz = self._gx - p.x, self._gz - p.z
        return dx * c - dz * s - p.centre[0], dx * s + dz * c - p.centre[1]

    def _distance(self, p: Placement) -> np.ndarray:
        """Every terrain vertex's distance to the object's footprint rectangle (0 inside), metres."""
        lx, lz = self._local(p)
        return np.hypot(np.maximum(np.abs(lx) - p.half[0], 0.0), np.maximum(np.abs(lz) - p.half[1], 0.0))

    def _protect(self, p: Placement) -> None:
        """Ground under a placed object never moves again (a later pad's blend stops at its edge)."""
        self._protected |= self._distance(p) <= (p.pad or 0.0) + 0.5

    def _pad(self, p: Placement, lowest: bool) -> float:
        """Level the ground under a big object and blend it back into the land around it; returns the level.

        A lake's level is the low end of the ground it covers, so it lies in a hollow
        rather than on a hillside, and its bed is dug below that level (deepest in the
        middle): water a few centimetres over flat ground would flicker against it in a
        headset's depth buffer. A house's level is the ground at its centre.
        """
        margin = 0.5
        blend = max(3.0, 0.5 * max(p.half))
        distance = self._distance(p)
        under = distance <= margin
        if lowest:
            level = float(np.percentile(self.heights[under], 15))
        else:
            level = height_at(self.heights, self.extent_m, p.x, p.z)
        inner = under & ~self._protected
        ring = (distance > margin) & (distance < margin + blend) & ~self._protected
        t = (distance[ring] - margin) / blend
        weight = t * t * (3 - 2 * t)  # smoothstep: 0 at the pad's edge, 1 where the land is untouched
        self.heights[inner] = level
        self.heights[ring] = level + (self.heights[ring] - level) * weight
        if lowest:
            lx, lz = self._local(p)
            e = (lx / p.half[0]) ** 2 + (lz / p.half[1]) ** 2  # < 1 inside the ellipse the water fills
            bed = inner & (e < 0.85)
            depth = np.clip((0.85 - e[bed]) / 0.5, 0.0, 1.0)
            self.heights[bed] = level - LAKE_DEPTH_M * depth * depth * (3 - 2 * depth)
        p.pad = margin
        return level

    def lowest_flat_spot(self, radius: float) -> tuple[float, float]:
        """The centre of the lowest, flattest disc of this radius inside the border (for water)."""
        limit = self.extent_m / 2 - BORDER_M - radius
        best, spot = math.inf, (0.0, 0.0)
        for x in np.linspace(-limit, limit, 9):
            for z in np.linspace(-limit, limit, 9):
                mask = (self._gx - x) ** 2 + (self._gz - z) ** 2 <= radius**2
                if not mask.any() or (mask & self._protected).any():
                    continue
                values = self.heights[mask]
                score = float(values.mean() + 2.0 * values.std())
                if score < best:
                    best, spot = score, (float(x), float(z))
        return spot
