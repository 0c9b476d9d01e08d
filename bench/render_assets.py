"""A contact sheet of the procedural asset library: docs/images/assets.png.

Meshes built in code are easy to get wrong in ways no test sees (a roof upside down,
a flame inside a log); one picture of every asset is the quickest review. Each cell is
a matplotlib 3D view of the flat-shaded triangles, painted with the vertex colours
(converted from linear back to sRGB) and a fixed light, with the name and size.

    .venv/bin/python bench/render_assets.py [--out docs/images/assets.png] [--only pine,oak]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.mplot3d import Axes3D  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from xrserve.worlds import assets  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LIGHT = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])


def to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear 0..1 to sRGB 0..1 (what a screen shows)."""
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def draw(ax: Axes3D, name: str) -> None:
    """One asset in one 3D axis: our Y-up axes drawn as matplotlib's Z-up (x, -z, y).

    Faces turned away from the camera are dropped, as a GPU culls them: matplotlib sorts
    whole polygons by depth, and back faces would otherwise show through (boat interiors).
    """
    mesh = assets.asset_mesh(name)
    flat = assets.ASSETS.get(name, assets.PLACEHOLDER).flat
    elev, azim = math.radians(55 if flat else 22), math.radians(-60)
    tri = mesh.positions[mesh.indices].astype(np.float64)
    plot = np.stack([tri[..., 0], -tri[..., 2], tri[..., 1]], axis=-1)
    normal = np.cross(plot[:, 1] - plot[:, 0], plot[:, 2] - plot[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    camera = np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    front = normal @ camera > -1e-6
    assert mesh.colors is not None
    rgba = mesh.colors[mesh.indices[:, 0]].astype(np.float64)[front]
    plot, normal = plot[front], normal[front]
    normal = np.stack([normal[:, 0], normal[:, 2], -normal[:, 1]], axis=1)  # back to Y-up for the light
    shade = 0.45 + 0.55 * np.clip(normal @ LIGHT, 0.0, 1.0)
    face = to_srgb(rgba[:, :3] * shade[:, None])  # opaque: translucent faces' edges would overlap as dark lines
    ax.add_collection3d(Poly3DCollection(plot, facecolors=face, edgecolors=face, linewidths=0.4))
    lo, hi = plot.reshape(-1, 3).min(axis=0), plot.reshape(-1, 3).max(axis=0)
    center = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-3)
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)
    ax.set_zlim(center[2] - half, center[2] + half)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=math.degrees(elev), azim=math.degrees(azim))
    ax.set_axis_off()
    size = assets.ASSETS.get(name, assets.PLACEHOLDER).size
    ax.set_title(f"{name}\n{size[0]:g} x {size[1]:g} x {size[2]:g} m", fontsize=8, pad=-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "assets.png")
    parser.add_argument("--only", default="", help="comma-separated asset names (default: all and the placeholder)")
    parser.add_argument("--dpi", type=int, default=90)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [*assets.ASSETS, "placeholder"]
    cols = min(8, len(names))
    rows = math.ceil(len(names) / cols)
    fig = plt.figure(figsize=(cols * 2.1, rows * 2.3))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        assert isinstance(ax, Axes3D)
        draw(ax, name)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.97, wspace=0, hspace=0.12)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi, metadata={"Software": None})
    print(f"{args.out}: {len(names)} assets, {args.out.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main()
