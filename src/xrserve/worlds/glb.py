"""The scene as one deterministic GLB: nodes with names and `extras`, meshes written once, PBR materials.

Why written by hand on top of pygltflib's types rather than with its `save_to_bytes`:

- **deterministic bytes**: the same nodes give the same file (cached, diffed, compared in
  tests), so the JSON is written with sorted keys and no timestamps, and every buffer
  view starts on a 4-byte boundary in a fixed order;
- **extras survive**: pygltflib drops every empty list and `None` inside `extras` on its
  way out; here `extras` are written as given;
- **shared meshes once**: a forest of 40 trees that share one `Mesh` object holds its
  vertices once (deduplicated by identity), each tree a node pointing at it.

What the Khronos validator checks is respected by construction: POSITION has its min and
max, normals are unit length, colours lie in 0..1, indices are UNSIGNED_SHORT only while
the largest index stays below 65535 (the primitive-restart value), vertex buffer views
have a `byteStride` and their `target`, index views a target and no stride.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pygltflib as gl

from xrserve.worlds.mesh import Mesh

ROUGHNESS = 0.9  # matte: terrain, wood, canvas; nothing the procedural assets make is shiny
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942


@dataclass
class Node:
    """One glTF node: a name, an optional mesh, a transform (glTF's: T * R * S), extras and children.

    `lods` are coarser stand-ins for this node (first the finest): they are written as
    MSFT_lod, as nodes outside the scene's tree, so a viewer without the extension draws
    only this node and never the levels on top of each other. Put the screen coverages in
    `extras["MSFT_screencoverage"]` (one per level, this node's first) if a viewer should use them.
    """

    name: str
    mesh: Mesh | None = None
    translation: tuple[float, float, float] = (0, 0, 0)
    rotation: tuple[float, float, float, float] = (0, 0, 0, 1)  # quaternion x, y, z, w
    scale: tuple[float, float, float] = (1, 1, 1)
    extras: dict | None = None
    children: list[Node] = field(default_factory=list)
    lods: list[Node] = field(default_factory=list)


def default_generator() -> str:
    """`xrserve <version>` from the installed package's metadata (the worlds layer imports only core)."""
    try:
        return f"xrserve {metadata.version('xrserve')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "xrserve"


def write_glb(nodes: list[Node], extras: dict | None = None, generator: str | None = None) -> bytes:
    """The nodes (the scene's roots) as a binary glTF 2.0 file; the same input always gives the same bytes."""
    return _Writer(generator or default_generator()).write(nodes, extras)


class _Writer:
    def __init__(self, generator: str) -> None:
        self.generator = generator
        self.blob = bytearray()
        self.accessors: list[gl.Accessor] = []
        self.views: list[gl.BufferView] = []
        self.meshes: list[gl.Mesh] = []
        self.mesh_index: dict[int, int] = {}  # id(Mesh) -> glTF mesh
        self.keep: list[Mesh] = []  # holds the meshes so their ids stay unique while writing
        self.materials: list[gl.Material] = []
        self.material_index: dict[tuple[Any, ...], int] = {}
        self.images: list[gl.Image] = []
        self.image_index: dict[bytes, int] = {}  # sha-256 of the PNG -> texture (= image) index
        self.nodes: list[gl.Node] = []
        self.seen_nodes: set[int] = set()
        self.lod_used = False

    # -- the scene graph -------------------------------------------------------------------

    def write(self, roots: list[Node], extras: dict | None) -> bytes:
        scene_nodes = [self.node(n) for n in roots]
        lod_parents = [(i, n) for i, n in enumerate(self._all(roots)) if n.lods]
        for index, node in lod_parents:  # levels after the tree, so the tree's numbering is that of a plain scene
            ids = [self.node(level) for level in node.lods]
            self.nodes[index].extensions = {"MSFT_lod": {"ids": ids}}
            self.lod_used = True
        document = gl.GLTF2(
            asset=gl.Asset(generator=self.generator, version="2.0"),
            scene=0,
            scenes=[gl.Scene(nodes=scene_nodes, extras=_plain(extras) if extras else {})],
            nodes=self.nodes,
            meshes=self.meshes,
            materials=self.materials,
            accessors=self.accessors,
            bufferViews=self.views,
            buffers=[gl.Buffer(byteLength=len(self.blob))] if self.blob else [],
            images=self.images,
            textures=[gl.Texture(sampler=0, source=i) for i in range(len(self.images))],
            samplers=[_label_sampler()] if self.images else [],
            extensionsUsed=["MSFT_lod"] if self.lod_used else [],
        )
        return _glb(_document_json(document), bytes(self.blob))

    def _all(self, roots: list[Node]) -> list[Node]:
        """The tree's nodes in the order `node` numbered them (depth first, parents before children)."""
        out: list[Node] = []
        for n in roots:
            out.append(n)
            out.extend(self._all(n.children))
        return out

    def node(self, node: Node) -> int:
        if id(node) in self.seen_nodes:
            raise ValueError(f"node '{node.name}' appears twice in the scene; a glTF node has one parent")
        self.seen_nodes.add(id(node))
        index = len(self.nodes)
        out = gl.Node(name=node.name, extras=_plain(node.extras) if node.extras else {})
        self.nodes.append(out)
        translation = _finite(node.translation, 3, f"node '{node.name}' translation")
        rotation = _finite(node.rotation, 4, f"node '{node.name}' rotation")
        scale = _finite(node.scale, 3, f"node '{node.name}' scale")
        norm = float(np.linalg.norm(rotation))
        if norm < 1e-6:
            raise ValueError(f"node '{node.name}': rotation {node.rotation} is not a quaternion (length 0)")
        rotation = [v / norm for v in rotation]
        if translation != [0.0, 0.0, 0.0]:
            out.translation = translation
        if rotation != [0.0, 0.0, 0.0, 1.0]:
            out.rotation = rotation
        if scale != [1.0, 1.0, 1.0]:
            out.scale = scale
        if node.mesh is not None:
            out.mesh = self.mesh(node.mesh, node.name)
        out.children = [self.node(child) for child in node.children]
        return index

    # -- meshes, materials, textures ---------------------------------------------------------

    def mesh(self, mesh: Mesh, name: str) -> int:
        if id(mesh) in self.mesh_index:
            return self.mesh_index[id(mesh)]
        positions = mesh.positions
        count = len(positions)
        if count == 0 or len(mesh.indices) == 0:
            raise ValueError(f"mesh of node '{name}' has no triangles")
        if not np.isfinite(positions).all():
            raise ValueError(f"mesh of node '{name}' has a position that is NaN or infinite")
        if int(mesh.indices.max()) >= count:
            raise ValueError(f"mesh of node '{name}' indexes vertex {int(mesh.indices.max())} of {count}")
        attributes = gl.Attributes(
            POSITION=self.accessor(positions, gl.VEC3, with_bounds=True),
            NORMAL=self.accessor(_unit(mesh.normals, count), gl.VEC3),
        )
        if mesh.colors is not None:
            attributes.COLOR_0 = self.accessor(np.clip(mesh.colors, 0.0, 1.0), gl.VEC4)
        if mesh.uvs is not None:
            attributes.TEXCOORD_0 = self.accessor(mesh.uvs, gl.VEC2)
        elif mesh.texture_png is not None:
            raise ValueError(f"mesh of node '{name}' has a texture but no UVs to map it")
        index_type = np.uint16 if count < 65536 else np.uint32  # 65535 is the restart value in 16 bits
        indices = self.accessor(mesh.indices.reshape(-1).astype(index_type), gl.SCALAR, indices=True)
        primitive = gl.Primitive(
            attributes=attributes, indices=indices, material=self.material(mesh), mode=gl.TRIANGLES
        )
        out = gl.Mesh(name=str(mesh.extras.get("name", name)), primitives=[primitive], extras=_plain(mesh.extras))
        self.mesh_index[id(mesh)] = len(self.meshes)
        self.keep.append(mesh)
        self.meshes.append(out)
        return self.mesh_index[id(mesh)]

    def material(self, mesh: Mesh) -> int:
        """Vertex colours times a white, matte, non-metal base; a texture on top for textured meshes."""
        texture = self.texture(mesh.texture_png) if mesh.texture_png is not None else None
        translucent = mesh.colors is not None and bool((mesh.colors[:, 3] < 1.0).any())
        if mesh.texture_png is not None:
            translucent = translucent or _has_transparency(mesh.texture_png)
        key = (texture, translucent, mesh.double_sided)
        if key not in self.material_index:
            name = ("textured" if texture is not None else "vertex-colour") + ("-blend" if translucent else "")
            pbr = gl.PbrMetallicRoughness(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                metallicFactor=0.0,
                roughnessFactor=ROUGHNESS,
                baseColorTexture=gl.TextureInfo(index=texture) if texture is not None else None,
            )
            self.material_index[key] = len(self.materials)
            self.materials.append(
                gl.Material(
                    name=name + ("-double-sided" if mesh.double_sided else ""),
                    pbrMetallicRoughness=pbr,
                    alphaMode=gl.BLEND if translucent else gl.OPAQUE,
                    alphaCutoff=None,
                    doubleSided=mesh.double_sided,
                    emissiveFactor=None,
                )
            )
        return self.material_index[key]

    def texture(self, png: bytes) -> int:
        """The image in the buffer (once per distinct PNG); textures and images share their numbering."""
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("a mesh texture must be PNG bytes")
        digest = hashlib.sha256(png).digest()
        if digest not in self.image_index:
            view = self.view(png, target=None)
            self.image_index[digest] = len(self.images)
            self.images.append(gl.Image(bufferView=view, mimeType=gl.IMAGEPNG))
        return self.image_index[digest]

    # -- the binary buffer ---------------------------------------------------------------------

    def view(self, data: bytes, target: int | None, stride: int | None = None) -> int:
        """A buffer view on `data`, appended at the next 4-byte boundary."""
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.views.append(
            gl.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), byteStride=stride, target=target)
        )
        self.blob.extend(data)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, *, with_bounds: bool = False, indices: bool = False) -> int:
        if indices:
            component = gl.UNSIGNED_SHORT if array.dtype == np.uint16 else gl.UNSIGNED_INT
            view = self.view(
                np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes(), gl.ELEMENT_ARRAY_BUFFER
            )
            count = len(array)
        else:
            data = np.ascontiguousarray(array, dtype="<f4")
            view = self.view(data.tobytes(), gl.ARRAY_BUFFER, stride=data.shape[1] * 4)
            component, count = gl.FLOAT, len(data)
        accessor = gl.Accessor(bufferView=view, byteOffset=0, componentType=component, count=count, type=kind)
        if with_bounds:
            values = np.asarray(array, dtype=np.float32)
            accessor.min = [float(v) for v in values.min(axis=0)]
            accessor.max = [float(v) for v in values.max(axis=0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


# -- pieces -------------------------------------------------------------------------------------


def _label_sampler() -> gl.Sampler:
    """Smooth and mip-mapped (text read from afar), clamped: a label's edge must not wrap to its other side."""
    return gl.Sampler(
        magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR, wrapS=gl.CLAMP_TO_EDGE, wrapT=gl.CLAMP_TO_EDGE
    )


def _has_transparency(png: bytes) -> bool:
    """Whether any pixel of the image is less than opaque (then the material blends)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            return False
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        return bool(alpha.min() < 255)


def _unit(normals: np.ndarray | None, count: int) -> np.ndarray:
    """Unit normals, as glTF requires (+Y where a normal is missing or zero)."""
    if normals is None:
        return np.tile(np.array([0.0, 1.0, 0.0], np.float32), (count, 1))
    n = normals.astype(np.float64)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    return n.astype(np.float32)


def _finite(values: tuple[float, ...], size: int, what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != size or not all(np.isfinite(out)):
        raise ValueError(f"{what} must be {size} finite numbers, got {values}")
    return out


def _plain(value: Any) -> Any:
    """Extras as JSON types (numpy scalars and arrays included); NaN and infinity are refused by the encoder."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _prune(value: Any) -> Any:
    """pygltflib's dict without the unset (None) and empty parts; `extras` kept exactly as given."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "extras":
                if item:
                    out[key] = item
                continue
            item = _prune(item)
            if item is None or (isinstance(item, dict | list) and not item):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _document_json(document: gl.GLTF2) -> bytes:
    data = _prune(gl.gltf_asdict(document))
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError as exc:
        raise ValueError(f"the scene's extras must be finite JSON numbers ({exc})") from None
    return text.encode("utf-8")


def _glb(document: bytes, blob: bytes) -> bytes:
    """GLB container: the JSON chunk padded with spaces, the BIN chunk with zeros, both to 4 bytes."""
    document += b" " * (-len(document) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(document), _JSON_CHUNK) + document
    if blob:
        chunks += struct.pack("<II", len(blob), _BIN_CHUNK) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
