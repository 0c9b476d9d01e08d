"""Regenerates the YOLO test fixture: a real Ultralytics detector, its ONNX exports, and Ultralytics' own answers.

No pretrained YOLO weights can be had offline, so this trains one: a small YOLOv8 (the
`yolov8.yaml` architecture at a reduced width) learns three shapes (circle, square,
triangle) pasted in random colours onto crops of the repository's real photos. Then:

- `shapes-v8.onnx`: `export(format="onnx")`, output [1, 4 + 3, anchors] (NMS done by xrserve);
- `shapes-e2e.onnx`: `export(format="onnx", nms=True)`, output [1, 300, 6] (the end-to-end
  layout of YOLOv10 / YOLO26 exports: boxes after NMS);
- `shapes-v8-640.onnx`: the same weights exported at 640x640 (for bench/ar.py);
- `images/*.png`: test images of several sizes and aspect ratios (PNG, so that both OpenCV
  builds decode the same pixels);
- `expected.json`: Ultralytics' `predict` on each ONNX file and image (boxes in pixels, class,
  score), the reference tests/vision/test_yolo.py compares xrserve's answers with.

Ultralytics needs torchvision, which does not import beside the CPU torch of the main
environment, so this runs in a virtual environment of its own (`make yolo-fixture` creates it:
`torch==2.14.1 torchvision==0.29.1 ultralytics onnx onnxruntime`, from this machine's disk).
Plots are off (plotting fetches a font), and nothing is downloaded.

    bench/.venvs/yolo/bin/python tests/data/yolo/make_fixture.py [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks, no downloads

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
PHOTOS = sorted((HERE.parent / "images" / "coco").glob("*.jpg")) + sorted((HERE.parent / "hand_images").glob("*/*.jpg"))
CLASSES = ["circle", "square", "triangle"]
IMGSZ = 320
TEST_SIZES = [(480, 360), (300, 500), (640, 480), (320, 320)]
EXPORTS = {  # file: export options
    "shapes-v8.onnx": {"imgsz": IMGSZ},
    "shapes-e2e.onnx": {"imgsz": IMGSZ, "nms": True},
    "shapes-v8-640.onnx": {"imgsz": 640},  # the same weights at 640x640: bench/ar.py's second input size
}


def background(rng: random.Random, width: int, height: int) -> np.ndarray:
    photo = cv2.imread(str(rng.choice(PHOTOS)))
    scale = max(width / photo.shape[1], height / photo.shape[0]) * rng.uniform(1.0, 1.6)
    photo = cv2.resize(photo, (int(photo.shape[1] * scale) + 1, int(photo.shape[0] * scale) + 1))
    x, y = rng.randint(0, photo.shape[1] - width), rng.randint(0, photo.shape[0] - height)
    return photo[y : y + height, x : x + width].copy()


def draw_shapes(rng: random.Random, image: np.ndarray, count: int) -> list[tuple[int, float, float, float, float]]:
    """Paste shapes; returns YOLO labels (class, cx, cy, w, h normalised)."""
    height, width = image.shape[:2]
    labels, placed = [], []
    for _ in range(count * 5):
        if len(labels) == count:
            break
        size = rng.randint(int(min(width, height) * 0.12), int(min(width, height) * 0.35))
        x0, y0 = rng.randint(0, width - size), rng.randint(0, height - size)
        if any(x0 < px + ps and px < x0 + size and y0 < py + ps and py < y0 + size for px, py, ps in placed):
            continue
        placed.append((x0, y0, size))
        cls = rng.randrange(len(CLASSES))
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if CLASSES[cls] == "circle":
            cv2.circle(image, (x0 + size // 2, y0 + size // 2), size // 2, colour, -1, cv2.LINE_AA)
        elif CLASSES[cls] == "square":
            cv2.rectangle(image, (x0, y0), (x0 + size, y0 + size), colour, -1)
        else:
            points = np.array([[x0 + size // 2, y0], [x0, y0 + size], [x0 + size, y0 + size]], np.int32)
            cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
        labels.append((cls, (x0 + size / 2) / width, (y0 + size / 2) / height, size / width, size / height))
    return labels


def make_dataset(root: Path, train: int, val: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            width, height = rng.choice([(320, 320), (400, 300), (300, 400), (480, 360)])
            image = background(rng, width, height)
            labels = draw_shapes(rng, image, rng.randint(1, 4))
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), image)
            lines = [f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in labels]
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    data = root / "shapes.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val", "names": CLASSES}))
    return data


def small_yolov8(root: Path) -> Path:
    """yolov8.yaml at a reduced width: a 'n' scale of depth 0.33, width 0.125 (the file stays ~1 MB)."""
    import ultralytics

    source = Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml"
    config = yaml.safe_load(source.read_text())
    config["scales"] = {"n": [0.33, 0.125, 512]}
    config["nc"] = len(CLASSES)
    path = root / "yolov8n-shapes.yaml"  # the 'n' in the name picks the scale
    path.write_text(yaml.safe_dump(config))
    return path


def make_test_images(seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    folder = HERE / "images"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    paths = []
    for i, (width, height) in enumerate(TEST_SIZES):
        image = background(rng, width, height)
        draw_shapes(rng, image, 3)
        path = folder / f"shapes-{i}-{width}x{height}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def predictions(onnx: Path, images: list[Path]) -> dict[str, list[dict]]:
    from ultralytics import YOLO

    model = YOLO(str(onnx), task="detect")
    found = {}
    for path in images:
        (result,) = model.predict(str(path), imgsz=IMGSZ, conf=0.25, iou=0.7, max_det=300, verbose=False)
        found[path.name] = [
            {"box": [float(v) for v in box], "class": int(cls), "name": CLASSES[int(cls)], "score": float(score)}
            for box, cls, score in zip(result.boxes.xyxy.numpy(), result.boxes.cls.numpy(), result.boxes.conf.numpy())
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--train", type=int, default=400, help="training images")
    args = parser.parse_args()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_dataset(root / "data", args.train, args.train // 8)
        model = YOLO(str(small_yolov8(root)), task="detect")
        model.train(
            data=str(data), epochs=args.epochs, imgsz=IMGSZ, batch=16, workers=0, device="cpu", plots=False,
            amp=False, project=str(root / "runs"), name="shapes", seed=0, deterministic=True, verbose=False,
        )  # fmt: skip
        metrics = model.val(data=str(data), imgsz=IMGSZ, batch=16, device="cpu", plots=False, verbose=False)
        print(f"validation mAP50 {metrics.box.map50:.3f}, mAP50-95 {metrics.box.map:.3f}")
        for name, options in EXPORTS.items():
            shutil.copy(model.export(format="onnx", simplify=False, dynamic=False, **options), HERE / name)
    images = make_test_images()
    expected = {name: predictions(HERE / name, images) for name in ("shapes-v8.onnx", "shapes-e2e.onnx")}
    import ultralytics

    expected["ultralytics"] = ultralytics.__version__
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print({name: sum(len(v) for v in boxes.values()) for name, boxes in expected.items() if name.endswith(".onnx")})


if __name__ == "__main__":
    main()
