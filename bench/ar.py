"""AR perception at camera frame rate: `hands` over the XR session, deadline policy vs FIFO.

A video is made with ffmpeg from the hand photos in tests/data (each photo held one second,
640x480, 30 fps) and decoded back to JPEG frames; client sessions (websockets, asyncio)
stream them at 30 fps over `/v1/session` (stream kind `camera`, `models: ["hands"]`) and
time every answer on their own clock (capture timestamp -> result received).

  raw engine   the `hands` model in this process: ms per frame when the palm detector
               runs (detection) and when only the landmark model runs (tracking)
  1 session    one session offering 30 fps: delivered fps, latency p50/p99
  4 sessions   four sessions at 30 fps each (more than 2 cores can serve): per-session
               delivered fps (min, max), p99 latency of answered frames, share skipped

The server is started twice with `--only hands`: the default frame policy (deadline:
latest-frame-wins, frames past their deadline never computed, round-robin between
sessions), then `--frame-policy fifo`; the table puts them side by side.

    nice .venv/bin/python bench/ar.py                  # ~3 minutes
    nice .venv/bin/python bench/ar.py --seconds 10 --complexity 0

Results: bench/results/ar.json. The machine is shared: numbers carry that noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_support.procs import end, start_xrserve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data" / "hand_images"  # sources and licences: tests/data/README.md
HEADER = struct.Struct("<BBHId")
console = Console()


def make_video(tmp: Path) -> list[bytes]:
    """ffmpeg: photos -> 30 fps H.264 video (1 s per photo) -> JPEG frames (quality 4)."""
    listing = tmp / "photos.txt"
    photos = sorted(p for g in ("call", "four", "rock", "none") for p in (PHOTOS / g).glob("*.jpg"))
    listing.write_text("".join(f"file '{p}'\nduration 1\n" for p in photos) + f"file '{photos[-1]}'\n")
    video = tmp / "hands.mp4"
    scale = "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,fps=30,format=yuv420p"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-vf",
            scale,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            str(video),
        ],
        check=True,
    )
    frames = tmp / "frames"
    frames.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(video), "-q:v", "4", str(frames / "%05d.jpg")], check=True
    )
    return [f.read_bytes() for f in sorted(frames.glob("*.jpg"))]


def raw_engine(frames: list[bytes], complexity: int) -> dict[str, float]:
    """Per-frame model time in this process, detection vs tracking, as the camera stream calls it."""
    from xrserve.models.vision.hands import Hands

    model = Hands(Hands.default_config())
    model.load()
    detect, track = [], []
    regions = np.zeros((1, 2, 4), np.float32)
    for jpeg in frames[::3][:120]:
        for kind, times in (("detect", detect), ("track", track)):
            inputs = {
                "image": np.array([jpeg], dtype=object),
                "regions": regions,
                "detect": np.array([kind == "detect"]),
            }
            started = time.perf_counter()
            out = model.infer(inputs, {"max_hands": 1, "tiles": False, "complexity": complexity})
            times.append((time.perf_counter() - started) * 1000)
            if kind == "detect":
                regions = out["regions"][:1]
    # the alternative runtime: mediapipe's own Hands graph (tracking mode, one hand), same frames
    import cv2
    import mediapipe as mp

    graph = mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=1, model_complexity=complexity)
    graph_ms = []
    for jpeg in frames[:240]:
        started = time.perf_counter()
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        graph.process(rgb)
        graph_ms.append((time.perf_counter() - started) * 1000)
    ours_ms = []
    regions = np.zeros((1, 2, 4), np.float32)
    for jpeg in frames[:240]:  # the camera stream's policy: detect when nothing is tracked
        inputs = {
            "image": np.array([jpeg], dtype=object),
            "regions": regions,
            "detect": np.array([not (regions[0, :, 2] > 0).any()]),
        }
        started = time.perf_counter()
        out = model.infer(inputs, {"max_hands": 1, "tiles": False, "complexity": complexity})
        ours_ms.append((time.perf_counter() - started) * 1000)
        regions = out["regions"][:1]
    return {
        "detect_ms_p50": float(np.median(detect)),
        "track_ms_p50": float(np.median(track)),
        "ours_video_ms_p50": float(np.median(ours_ms)),
        "ours_video_ms_p99": float(np.percentile(ours_ms, 99)),
        "mediapipe_video_ms_p50": float(np.median(graph_ms)),
        "mediapipe_video_ms_p99": float(np.percentile(graph_ms, 99)),
    }


class Server:
    def __init__(self, tmp: Path, policy: str) -> None:
        args = ["--dev", "--only", "hands", "--data-dir", str(tmp / f"data-{policy}"), "--frame-policy", policy]
        self.process, self.url = start_xrserve(args, tmp / f"server-{policy}.log")

    def stop(self) -> None:
        end(self.process)


async def session(
    url: str, frames: list[bytes], seconds: float, options: dict[str, Any], phase: float
) -> dict[str, Any]:
    """One client: frames at 30 fps for `seconds`, latency of every answer on the client's clock."""
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    reasons: dict[str, int] = {}
    skipped = 0
    sent = 0
    last_answer = 0.0
    async with connect(url.replace("http://", "ws://") + "/v1/session", max_size=2**24) as ws:
        json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "open", "stream": "cam", "kind": "camera", "models": ["hands"], **options}))
        channel = json.loads(await ws.recv())["channel"]
        total = int(seconds * 30)
        accounted = 0

        async def receive() -> None:
            nonlocal skipped, accounted, last_answer
            while accounted < total:
                message = json.loads(await ws.recv())
                if message["type"] == "result":
                    latencies.append(time.time() * 1000 - message["capture_ms"])
                    last_answer = time.monotonic()
                    accounted += 1
                elif message["type"] == "skipped":
                    skipped += 1
                    accounted += 1
                    reason = message["reason"].split(":")[0]
                    reasons[reason] = reasons.get(reason, 0) + 1
                elif message["type"] == "error":
                    skipped += 1
                    accounted += 1

        reader = asyncio.create_task(receive())
        await asyncio.sleep(phase)
        start_at = time.monotonic()
        for i in range(total):
            await asyncio.sleep(max(0.0, start_at + i / 30 - time.monotonic()))
            jpeg = frames[int(phase * 30 + i) % len(frames)]
            await ws.send(HEADER.pack(1, 0, channel, i, time.time() * 1000) + jpeg)
            sent += 1
        try:
            await asyncio.wait_for(reader, timeout=10)  # fifo: the backlog drains after sending stops
        except TimeoutError:
            pass
        # delivered fps over the time answers took to come (a FIFO backlog drains after sending stops)
        duration = max(total / 30, last_answer - start_at)
    return {
        "sent": sent,
        "answered": len(latencies),
        "skipped": skipped,
        "unanswered": sent - len(latencies) - skipped,
        "fps": len(latencies) / duration,
        "latencies": latencies,
        "duration_s": duration,
        "skip_reasons": reasons,
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = (
        np.array([x for r in results for x in r["latencies"]])
        if any(r["latencies"] for r in results)
        else np.array([np.nan])
    )
    sent = sum(r["sent"] for r in results)
    return {
        "fps_min": min(r["fps"] for r in results),
        "fps_max": max(r["fps"] for r in results),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "skipped_share": 1 - sum(r["answered"] for r in results) / sent,
        "sent": sent,
        "skip_reasons": {
            k: sum(r["skip_reasons"].get(k, 0) for r in results)
            for k in {k for r in results for k in r["skip_reasons"]}
        },
    }


async def scenario(
    url: str, frames: list[bytes], sessions: int, seconds: float, options: dict[str, Any]
) -> dict[str, Any]:
    runs = await asyncio.gather(
        *(session(url, frames, seconds, options, phase=i / (30 * sessions)) for i in range(sessions))
    )
    return summarise(list(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="how long each scenario streams")
    parser.add_argument("--complexity", type=int, default=1, choices=(0, 1), help="hand landmark model: 1 full, 0 lite")
    parser.add_argument("--max-hands", type=int, default=1, choices=(1, 2))
    parser.add_argument("--budget-ms", type=float, default=33.0)
    args = parser.parse_args()
    options = {"max_hands": args.max_hands, "complexity": args.complexity, "budget_ms": args.budget_ms}
    results: dict[str, Any] = {
        "options": options,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with console.status("making the video with ffmpeg"):
            frames = make_video(tmp)
        console.print(f"{len(frames)} frames of 640x480 JPEG ({np.mean([len(f) for f in frames]) / 1024:.0f} kB mean)")
        with console.status("raw engine"):
            results["raw"] = raw_engine(frames, args.complexity)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("sessions", total=4)
            for policy in ("deadline", "fifo"):
                server = Server(tmp, policy)
                try:
                    progress.update(task, description=f"{policy}: 1 session")
                    one = asyncio.run(scenario(server.url, frames, 1, args.seconds, options))
                    progress.advance(task)
                    progress.update(task, description=f"{policy}: 4 sessions")
                    four = asyncio.run(scenario(server.url, frames, 4, args.seconds, options))
                    progress.advance(task)
                finally:
                    server.stop()
                results[policy] = {"one": one, "four": four}
    results["load_after"] = os.getloadavg()
    report(results)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ar.json").write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    raw = results["raw"]
    console.print(
        f"raw engine (hands, complexity {results['options']['complexity']}, in-process): "
        f"detection frame {raw['detect_ms_p50']:.1f} ms, tracking frame {raw['track_ms_p50']:.1f} ms (p50); "
        f"the video's first 240 frames: ours (litert) p50 {raw['ours_video_ms_p50']:.1f} / p99 "
        f"{raw['ours_video_ms_p99']:.1f} ms, mediapipe Hands graph p50 {raw['mediapipe_video_ms_p50']:.1f} "
        f"/ p99 {raw['mediapipe_video_ms_p99']:.1f} ms"
    )
    table = Table(
        title=f"hands over /v1/session, 30 fps per session, {results['seconds']:.0f} s, "
        f"budget {results['options']['budget_ms']:.0f} ms"
    )
    table.add_column("measure")
    for policy in ("deadline", "fifo"):
        table.add_column(policy, justify="right")
    table.add_column("fifo / deadline", justify="right")
    rows = [
        ("1 session: delivered fps", "one", "fps_max", "{:.1f}"),
        ("1 session: latency p50 ms", "one", "p50_ms", "{:.1f}"),
        ("1 session: latency p99 ms", "one", "p99_ms", "{:.1f}"),
        ("4 sessions: fps min", "four", "fps_min", "{:.1f}"),
        ("4 sessions: fps max", "four", "fps_max", "{:.1f}"),
        ("4 sessions: p99 ms (answered)", "four", "p99_ms", "{:.1f}"),
        ("4 sessions: skipped share", "four", "skipped_share", "{:.0%}"),
    ]
    for label, scenario_name, key, fmt in rows:
        a, b = results["deadline"][scenario_name][key], results["fifo"][scenario_name][key]
        ratio = f"{b / a:.2f}x" if a else "-"
        table.add_row(label, fmt.format(a), fmt.format(b), ratio)
    console.print(table)
    d1, d4 = results["deadline"]["one"], results["deadline"]["four"]
    goals = [
        ("1 session sustains 30 fps", d1["fps_max"] >= 29),
        ("1 session p99 < 33 ms", d1["p99_ms"] < 33),
        ("4 sessions p99 < 66 ms (deadline)", d4["p99_ms"] < 66),
        ("slowest session >= 2/3 of fastest", d4["fps_min"] >= 2 / 3 * d4["fps_max"]),
    ]
    for goal, met in goals:
        console.print(f"  {goal}: {'[green]met' if met else '[red]not met'}")
    console.print(
        f"load average before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f} "
        f"on {results['cpus']} cores"
    )


if __name__ == "__main__":
    main()
