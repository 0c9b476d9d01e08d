"""The one mesh type of the worlds layer: what assets, terrain, labels and the GLB writer share.

Y is up, units are metres (glTF's conventions), so nothing converts axes on the way
out. Vertex colours are linear RGBA floats in 0..1, as glTF's COLOR_0 expects; a mesh
may also carry UVs and a texture (labels do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    positions: np.ndarray  # float32 [V, 3]
    indices: np.ndarray  # uint32 [F, 3], counter-clockwise seen from outside
    normals: np.ndarray | None = None  # float32 [V, 3]; computed from the faces when None
    colors: np.ndarray | None = None  # float32 [V, 4], linear RGBA
    uvs: np.ndarray | None = None  # float32 [V, 2]
    texture_png: bytes | None = None  # an image the UVs index (labels)
    double_sided: bool = False
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32).reshape(-1, 3)
        self.indices = np.ascontiguousarray(self.indices, dtype=np.uint32).reshape(-1, 3)
        if self.normals is None:
            self.normals = vertex_normals(self.positions, self.indices)
        self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(-1, 4)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(-1, 2)

    @property
    def bounds(self) -> np.ndarray:
        """[[min x, y, z], [max x, y, z]]."""
        return np.stack([self.positions.min(axis=0), self.positions.max(axis=0)])

    def transformed(self, matrix: np.ndarray) -> Mesh:
        """A copy moved by a 4x4 matrix (normals by its inverse transpose)."""
        m = np.asarray(matrix, dtype=np.float64)
        positions = self.positions @ m[:3, :3].T + m[:3, 3]
        assert self.normals is not None  # set in __post_init__
        normals = self.normals @ np.linalg.inv(m[:3, :3]).T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        flip = np.linalg.det(m[:3, :3]) < 0
        return Mesh(
            positions,
            self.indices[:, ::-1] if flip else self.indices,
            normals,
            self.colors,
            self.uvs,
            self.texture_png,
            self.double_sided,
            dict(self.extras),
        )


def vertex_normals(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit length; +Y for a vertex no face uses)."""
    p = positions.astype(np.float64)
    tri = p[indices]
    face = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(p)
    for corner in range(3):
        np.add.at(normals, indices[:, corner], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-12, normals / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    return normals.astype(np.float32)


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh from several with vertex colours (untextured parts of one asset become one draw call)."""
    offsets = np.cumsum([0] + [len(m.positions) for m in meshes])
    white = np.ones(4, np.float32)
    return Mesh(
        np.concatenate([m.positions for m in meshes]),
        np.concatenate([m.indices + o for m, o in zip(meshes, offsets)]),
        np.concatenate([m.normals for m in meshes if m.normals is not None]),
        np.concatenate([m.colors if m.colors is not None else np.tile(white, (len(m.positions), 1)) for m in meshes]),
    )
