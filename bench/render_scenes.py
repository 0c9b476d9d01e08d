"""Pictures of generated scenes for the docs: prompt -> GLB through the real server -> PNG.

Each scene is made the way a user makes it (`POST /v1/scenes`, poll the job, fetch the
GLB), then the GLB itself is drawn: trimesh reads it, every triangle is painted with its
vertex colour under a fixed light (matplotlib, back faces culled, as a headset would),
the labels' texts are written at their 3D positions, and the spawn point is marked.
What the picture shows is what the file holds.

    .venv/bin/python bench/render_scenes.py                   # docs/images/scenes.png
    .venv/bin/python bench/render_scenes.py --prompt "three windmills in a row" --out /tmp/w.png
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from llm_support import procs  # noqa: E402
from render_assets import LIGHT, to_srgb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VIEW_M = 40.0  # the middle of the scene, where the objects gather: half the side of the square drawn
PROMPTS = [
    "a lakeside camp with three tents, a campfire and a signpost saying Welcome",
    "a small village with four cabins, a well at the centre and a windmill",
    "five lamps along a road, a bench and a red boat on a pond",
    "a forest clearing with a stone tower, yellow flowers and a sign saying Keep Out",
]


def make_scene(client: httpx.Client, prompt: str, seed: int) -> tuple[bytes, dict]:
    job = client.post("/v1/scenes", json={"prompt": prompt, "seed": seed}).raise_for_status().json()
    while (state := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(0.05)
    if state["status"] != "succeeded":
        raise RuntimeError(f"{prompt!r}: {state}")
    glb = client.get(state["result_url"]).raise_for_status().content
    return glb, client.get(f"/v1/scenes/{state['scene_id']}").json()


def draw_scene(ax: plt.Axes, glb: bytes, graph: dict, title: str) -> None:
    """The GLB's visible triangles from a camera behind the spawn point, looking over the scene."""
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    elev, azim = math.radians(32), math.radians(-90 + 25)
    camera = np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    polys, faces = [], []
    for node in scene.graph.nodes_geometry:
        if node.startswith(("navmesh", "label")):
            continue  # the collider is invisible; labels are drawn as text below
        transform, name = scene.graph[node]
        mesh = scene.geometry[name]
        tri = trimesh.transform_points(mesh.vertices, transform)[mesh.faces]
        plot = np.stack([tri[..., 0], -tri[..., 2], tri[..., 1]], axis=-1)  # Y-up to matplotlib's Z-up
        normal = np.cross(plot[:, 1] - plot[:, 0], plot[:, 2] - plot[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        front = (normal @ camera > -1e-6) & (np.abs(plot[..., :2]).max(axis=(1, 2)) <= VIEW_M)
        colors = np.asarray(mesh.visual.vertex_attributes["color"], dtype=np.float64)[mesh.faces[:, 0]]  # COLOR_0
        shade = 0.45 + 0.55 * np.clip(np.stack([normal[:, 0], normal[:, 2], -normal[:, 1]], 1) @ LIGHT, 0, 1)
        rgb = to_srgb(colors[:, :3] * shade[:, None])
        polys.append(plot[front])
        faces.append(np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)[front])
    all_polys, all_faces = np.concatenate(polys), np.concatenate(faces)
    ax.add_collection3d(Poly3DCollection(all_polys, facecolors=all_faces, edgecolors=all_faces, linewidths=0.05))
    for label in graph["labels"]:
        x, y, z = label["position"]
        ax.text(x, -z, y + 0.8, label["text"], fontsize=7, color="black", ha="center", zorder=10)
    sx, sy, sz = graph["spawn"]["position"]
    ax.scatter([sx], [-sz], [sy + 0.2], marker="v", s=40, color="magenta", zorder=11)
    # centred on what was placed: the objects, not the empty land around them
    cx = float(np.median([o["position"][0] for o in graph["objects"]]))
    cz = float(np.median([o["position"][2] for o in graph["objects"]]))
    half = 14.0
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(-cz - half, -cz + half)
    ax.set_zlim(-half / 2, half / 2)
    ax.set_box_aspect((1, 1, 0.5), zoom=1.5)
    ax.view_init(elev=math.degrees(elev), azim=math.degrees(azim))
    ax.set_axis_off()
    ax.set_title(title, fontsize=8, wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "scenes.png")
    parser.add_argument("--prompt", action="append", help="prompts to draw (default: four examples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args()
    prompts = args.prompt or PROMPTS
    tmp = Path(tempfile.mkdtemp(prefix="xrserve-render-"))
    only = ["--only", "minilm", "--only", "terrain-gan"]
    process, url = procs.start_xrserve(["--dev", "--data-dir", str(tmp / "data"), *only], tmp / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            scenes = [make_scene(client, prompt, args.seed) for prompt in prompts]
    finally:
        procs.end(process)
    cols = min(2, len(prompts))
    rows = math.ceil(len(prompts) / cols)
    fig = plt.figure(figsize=(6 * cols, 5 * rows))
    for index, (prompt, (glb, graph)) in enumerate(zip(prompts, scenes)):
        ax = fig.add_subplot(rows, cols, index + 1, projection="3d")
        draw_scene(ax, glb, graph, prompt)
        print(f"{prompt!r}: {len(graph['objects'])} objects, unmatched {graph['unmatched']}")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
