"""How `face-emotion` does on the labelled faces this repository has (tests/data/images/expressions/labels.json).

A tiny set (7 faces: 5 labelled by their source, 2 smiling faces labelled by us), so this is a
sanity check, not an accuracy figure: the published one is about 66% on FER2013's test set.
Each labelled photo has one face; the largest face found is scored. The mirrored photo is also
classified, to show how stable the answer is (not counted as more samples).

    .venv/bin/python bench/face_emotion_eval.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from xrserve.models.vision.face_emotion import LABELS, FaceEmotion  # noqa: E402

FOLDER = ROOT / "tests" / "data" / "images" / "expressions"


def classify(model: FaceEmotion, data: bytes) -> tuple[int, np.ndarray | None, float]:
    started = time.perf_counter()
    out = model.infer({"image": np.array([data], dtype=object)}, {})
    ms = (time.perf_counter() - started) * 1000
    count = int(out["count"][0])
    return count, (out["probabilities"][0, 0] if count else None), ms


def main() -> None:
    model = FaceEmotion(FaceEmotion.default_config())
    model.load()
    labels = json.loads((FOLDER / "labels.json").read_text())
    top1 = top2 = total = mirror_same = 0
    print(f"{'photo':22} {'label':9} {'faces':>5} {'answer':9} {'p':>5} {'rank':>4} {'mirrored':9} {'ms':>6}")
    for name, entry in labels.items():
        data = (FOLDER / name).read_bytes()
        count, probabilities, ms = classify(model, data)
        expected = entry["expression"]
        if expected is None or probabilities is None:
            print(f"{Path(name).name:22} {expected or '-':9} {count:5} {'-':9} {'':>5} {'':>4} {'':9} {ms:6.1f}")
            total += expected is not None
            continue
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        _, mirrored, _ = classify(model, cv2.imencode(".png", image[:, ::-1])[1].tobytes())
        order = list(np.argsort(-probabilities))
        rank = order.index(LABELS.index(expected)) + 1
        answer = LABELS[order[0]]
        flipped = LABELS[int(np.argmax(mirrored))] if mirrored is not None else "-"
        total += 1
        top1 += rank == 1
        top2 += rank <= 2
        mirror_same += flipped == answer
        print(
            f"{Path(name).name:22} {expected:9} {count:5} {answer:9} {probabilities.max():5.2f} {rank:4} "
            f"{flipped:9} {ms:6.1f}"
        )
    print(f"\n{total} labelled faces: top-1 {top1}/{total}, top-2 {top2}/{total}; same answer mirrored: {mirror_same}")


if __name__ == "__main__":
    main()
