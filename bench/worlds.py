"""Generated worlds, end to end: prompt -> GLB through the real server, and terrain at three sizes.

One server (`--only minilm,terrain-gan,terrain-vae`), idle but for this client. For
each of the 24 prompts below: `POST /v1/scenes`, poll `GET /v1/jobs/{id}` every 20 ms
until it has succeeded, `GET` the GLB; the wall time of all of that is the prompt ->
GLB time a headset app would see. The scene graph's per-stage times (extraction,
embeddings, terrain, layout, export) say where it went; "overhead" is what is left
(HTTP, the job queue, polling, writing the files).

Terrain: `POST /v1/terrain` (format glb) at 129, 257 and 513 vertices a side, next to
the raw model call (`POST /v2/models/terrain-gan/infer`, one 32x32 map) so the ratio
shows what building the large heightmap and its mesh costs over the network itself.

    nice .venv/bin/python bench/worlds.py            # ~1 minute
    nice .venv/bin/python bench/worlds.py --repeats 3

Results: bench/results/worlds.json. The machine is shared: numbers carry that noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from llm_support import procs  # noqa: E402

PROMPTS = [
    "a lakeside camp with three tents, a campfire and a signpost saying Welcome",
    "five lamps along a road",
    "a small village with four cabins, a well at the centre and a windmill",
    "a pine forest with twenty pines and some boulders",
    "a harbour with two boats, a wooden bridge and a lighthouse tower",
    "a picnic area with three tables and six benches near a lake",
    "a garden with red flowers, two bushes and a statue in the middle",
    "a market with five carts, ten crates and eight barrels",
    "a campsite with two blue tents around a campfire",
    "a cottage with a fence, an oak and a sign that says Home",
    "three windmills in a row",
    "a quiet park with benches, lamps and a pond",
    "a mushroom circle around an old oak",
    "a farm with a barn, a cart and a fence",
    "a rocky hill with many rocks and a dead tree",
    "a palm beach with four palms and a boat",
    "a stone house named Bakery and two chairs",
    "a birch grove with seven birches and a log",
    "a lake with a boat on it and a bridge",
    "a watchtower next to a campfire and two crates",
    "a signpost saying North next to a path",
    "twelve lamps around a statue",
    "a camp with a dragon next to the tents",
    "a forest clearing with a well, a bench and yellow flowers",
]
STAGES = ("extraction", "embeddings", "terrain", "layout", "export")


def scene_once(client: httpx.Client, prompt: str, seed: int) -> dict:
    started = time.perf_counter()
    job = client.post("/v1/scenes", json={"prompt": prompt, "seed": seed}).raise_for_status().json()
    while True:
        state = client.get(f"/v1/jobs/{job['id']}").raise_for_status().json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02)
    if state["status"] != "succeeded":
        raise RuntimeError(f"{prompt!r}: {state}")
    glb = client.get(state["result_url"]).raise_for_status().content
    total = (time.perf_counter() - started) * 1000
    graph = client.get(f"/v1/scenes/{state['scene_id']}").raise_for_status().json()
    stages = {s: graph["timings_ms"].get(s, 0.0) for s in STAGES}
    return {
        "prompt": prompt,
        "total_ms": total,
        "glb_bytes": len(glb),
        "objects": len(graph["objects"]),
        **stages,
        "overhead": total - sum(stages.values()),
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs of the prompt list (different seeds)")
    parser.add_argument("--terrain-runs", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="xrserve-bench-worlds-"))
    only = ["--only", "minilm", "--only", "terrain-gan", "--only", "terrain-vae"]
    process, url = procs.start_xrserve(["--dev", "--data-dir", str(tmp / "data"), *only], tmp / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            scene_once(client, "a tent", 0)  # warm: embeddings of the asset library, first model calls
            rows = []
            with Progress(console=console) as progress:
                task = progress.add_task("prompt -> GLB", total=len(PROMPTS) * args.repeats)
                for repeat in range(args.repeats):
                    for prompt in PROMPTS:
                        rows.append(scene_once(client, prompt, seed=repeat))
                        progress.advance(task)
                terrain = {}
                task = progress.add_task("terrain", total=4 * args.terrain_runs)
                raw_body = {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}
                for size in (0, 129, 257, 513):
                    times = []
                    for i in range(args.terrain_runs):
                        started = time.perf_counter()
                        if size == 0:
                            client.post("/v2/models/terrain-gan/infer", json=raw_body).raise_for_status()
                        else:
                            body = {"seed": i, "size": size, "extent_m": 500.0, "format": "glb"}
                            client.post("/v1/terrain", json=body).raise_for_status()
                        times.append((time.perf_counter() - started) * 1000)
                        progress.advance(task)
                    terrain[size] = times
    finally:
        procs.end(process)

    table = Table(title=f"prompt -> GLB, {len(rows)} scenes (ms; job polling included)")
    for column in ("", "p50", "p90", "max"):
        table.add_column(column, justify="right")
    for key in ("total_ms", *STAGES, "overhead"):
        values = [r[key] for r in rows]
        table.add_row(
            key.removesuffix("_ms"),
            f"{percentile(values, 50):.0f}",
            f"{percentile(values, 90):.0f}",
            f"{max(values):.0f}",
        )
    console.print(table)
    console.print(
        f"objects per scene: median {statistics.median(r['objects'] for r in rows):.0f}, "
        f"GLB size median {statistics.median(r['glb_bytes'] for r in rows) / 1024:.0f} KiB"
    )
    raw = statistics.median(terrain[0])
    table = Table(title="terrain (ms, median and p90 over runs; ratio to one raw 32x32 model call over HTTP)")
    for column in ("vertices a side", "median", "p90", "x raw"):
        table.add_column(column, justify="right")
    table.add_row("raw terrain-gan call", f"{raw:.1f}", f"{percentile(terrain[0], 90):.1f}", "1.0")
    for size in (129, 257, 513):
        median = statistics.median(terrain[size])
        table.add_row(str(size), f"{median:.1f}", f"{percentile(terrain[size], 90):.1f}", f"{median / raw:.1f}")
    console.print(table)
    out = Path(__file__).parent / "results" / "worlds.json"
    out.write_text(json.dumps({"scenes": rows, "terrain_ms": {str(k): v for k, v in terrain.items()}}, indent=1))
    console.print(f"results: {out}")


if __name__ == "__main__":
    main()
