"""`gesture` (static hand poses from 21 landmarks) and `gesture-motion` (fingertip trajectories).

The exported module does its own normalisation, so a client can send landmarks in any
2-D image coordinates: `gesture` makes them wrist-relative and divides by the largest
absolute value (exactly how `keypoint.csv` was made, so its rows pass through unchanged);
`gesture-motion` makes a trajectory relative to its first point (as `point_history.csv`
was made) and keeps the scale, because how far the fingertip moved tells Move from Stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xrserve.models.trained import explain
from xrserve.training.attribution import removal_check
from xrserve.training.data import datasets_dir, read_labeled_csv, stratified_split, subsample
from xrserve.training.evaluate import classification_metrics
from xrserve.training.recipes import Recipe, save_torchscript


class GestureNet(nn.Module):
    """Points [N, P, 2] -> class logits; normalisation inside, so training and serving agree."""

    def __init__(self, points: int, classes: int, hidden: tuple[int, int], scale: bool, dropout: float) -> None:
        super().__init__()
        self.scale = scale
        self.net = nn.Sequential(
            nn.Linear(points * 2, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout / 2),
            nn.Linear(hidden[1], classes),
        )

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        relative = (points - points[:, :1, :]).reshape(points.shape[0], -1)
        if self.scale:
            relative = relative / relative.abs().amax(dim=1, keepdim=True).clamp_min(1e-9)
        return relative

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(points))


class Probabilities(nn.Module):
    """What is exported: points in, class probabilities out."""

    def __init__(self, net: GestureNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(points), dim=1)


HAND_LANDMARKS = (
    "wrist",
    *(f"thumb {j}" for j in ("cmc", "mcp", "ip", "tip")),
    *(f"{finger} {j}" for finger in ("index", "middle", "ring", "pinky") for j in ("mcp", "pip", "dip", "tip")),
)  # MediaPipe's order


class GestureRecipe(Recipe):
    name = "gesture"
    description = "Static hand gesture from 21 hand landmarks (MediaPipe order)"
    default_epochs = 60
    file = "hand_gestures/keypoint.csv"
    points = 21
    input_name = "landmarks"
    hidden = (64, 32)
    scale = True
    dropout = 0.3
    batch_size = 64
    point_names = HAND_LANDMARKS

    def default_data(self) -> Path:
        return datasets_dir() / self.file

    def prepare(self, data: Path | None, seed: int, limit: int | None) -> dict[str, Any]:
        rows = read_labeled_csv(data or self.default_data(), self.points * 2)
        keep = subsample(rows.labels, limit, seed)
        self.x = rows.features[keep].reshape(-1, self.points, 2)
        self.y = rows.labels[keep]
        self.classes = rows.classes
        self.split = stratified_split(self.y, seed)
        for part, idx in self.split.items():
            if len(idx) == 0:
                raise ValueError(f"the {part} split is empty: use more data (or a larger --limit)")
        return {
            "source": str(rows.source),
            "data_hash": rows.data_hash,
            "rows": int(len(self.y)),
            "classes": self.classes,
            "split": {k: int(len(v)) for k, v in self.split.items()},
            "split_rule": "stratified by class, 70/15/15, numpy default_rng(seed)",
        }

    def build(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.net = GestureNet(self.points, len(self.classes), self.hidden, self.scale, self.dropout)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=2e-3, weight_decay=1e-5)
        self.loss = nn.CrossEntropyLoss()

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])

    def steps_per_epoch(self) -> int:
        return max(1, int(np.ceil(len(self.split["train"]) / self.batch_size)))

    def augment(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Small rotations, shear and jitter: a hand seen from a slightly different angle."""
        n = len(points)
        angle = rng.uniform(-0.2, 0.2, size=n)
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)  # [n, 2, 2]
        scale = rng.uniform(0.9, 1.1, size=(n, 1, 2))
        out = np.einsum("npc,ndc->npd", points * scale, rotation)
        spread = np.abs(points).max(axis=(1, 2), keepdims=True)
        return (out + rng.normal(scale=0.01, size=out.shape) * spread).astype(np.float32)

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        self.net.train()
        idx = rng.choice(self.split["train"], size=min(self.batch_size, len(self.split["train"])), replace=False)
        x = torch.from_numpy(self.augment(self.x[idx], rng))
        loss = self.loss(self.net(x), torch.from_numpy(self.y[idx]))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def predict(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        idx = self.split[part]
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(self.x[idx]))
        return logits.numpy(), self.y[idx]

    def validate(self) -> dict[str, float]:
        logits, truth = self.predict("val")
        loss = float(self.loss(torch.from_numpy(logits), torch.from_numpy(truth)))
        return {"val_loss": loss, "val_accuracy": float((logits.argmax(1) == truth).mean())}

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        from xrserve.training.report import attribution_plot, confusion_plot

        logits, truth = self.predict("test")
        metrics = classification_metrics(truth, logits.argmax(1), self.classes)
        metrics["plots"] = {
            "confusion_matrix": confusion_plot(
                run_dir / "confusion_matrix.png",
                np.asarray(metrics["confusion"]),
                self.classes,
                f"{self.name}: test split",
            )
        }
        # attributions of the test rows, as the served model gives them with `explain`, and the removal check
        points = self.normalised(self.x[self.split["test"]])
        attributions = self.attributions(points)
        predicted = logits.argmax(1)
        removed = self.attribution_baselines().mean(axis=0)  # what a removed landmark becomes
        metrics["attributions"] = {
            "method": f"integrated gradients (Captum), {explain.STEPS} steps, of the predicted class's probability",
            "baseline": "each class's mean training pose after the model's normalisation, attributions averaged "
            "over them (attribution_baselines in model.toml); a removed landmark takes their mean",
            "removal_check": removal_check(self.probabilities, points, attributions, removed),
        }
        mean_abs = np.stack(
            [
                np.abs(attributions[predicted == c]).mean(0) if (predicted == c).any() else np.zeros_like(removed)
                for c in range(len(self.classes))
            ]
        )
        metrics["plots"]["attributions"] = attribution_plot(
            run_dir / "attributions.png",
            mean_abs,
            self.classes,
            [int((predicted == c).sum()) for c in range(len(self.classes))],
            list(self.point_names),
            f"{self.name}: mean |attribution| per landmark, test rows by predicted class",
        )
        return metrics

    def normalised(self, points: np.ndarray) -> np.ndarray:
        """Points as the model sees them ([N, P, 2]); the model takes these unchanged."""
        with torch.no_grad():
            return self.net.normalise(torch.from_numpy(points)).reshape(points.shape).numpy()

    def attribution_baselines(self) -> np.ndarray:
        """Each class's mean training row in the model's coordinates [K, P, 2] (why: `models/trained/explain.py`)."""
        train = self.split["train"]
        points = self.normalised(self.x[train])
        return np.stack([points[self.y[train] == c].mean(axis=0) for c in range(len(self.classes))])

    def probabilities(self, points: np.ndarray) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            return torch.softmax(self.net(torch.from_numpy(np.ascontiguousarray(points))), dim=1).numpy()

    def attributions(self, points: np.ndarray, chunk: int = 256) -> np.ndarray:
        """What the served model answers with `explain`: [N, P, 2], in chunks with a progress bar."""
        from rich.progress import Progress

        self.net.eval()
        baselines = torch.from_numpy(self.attribution_baselines().reshape(len(self.classes), -1))
        parts = []
        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task(f"{self.name}: attributions of the test rows", total=len(points))
            for start in range(0, len(points), chunk):
                batch = torch.from_numpy(np.ascontiguousarray(points[start : start + chunk]))
                features = self.net.normalise(batch)
                with torch.no_grad():
                    target = self.net(batch).argmax(1)
                found = explain.integrated_gradients(
                    lambda z: torch.softmax(self.net.net(z), dim=1), features, baselines, target
                )
                parts.append(found.reshape(batch.shape).numpy())
                progress.advance(task, len(batch))
        return np.concatenate(parts).astype(np.float32)

    def headline(self, metrics: dict[str, Any]) -> str:
        return f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}"

    def export(self, directory: Path, report: dict[str, Any]) -> None:
        self.net.eval()
        save_torchscript(Probabilities(self.net), directory / "model.pt")
        baselines = self.attribution_baselines()
        (directory / "model.toml").write_text(
            model_toml(self.name, self.description, self.input_name, self.points, self.classes, report, baselines)
        )


def model_toml(
    name: str,
    description: str,
    input_name: str,
    points: int,
    classes: list[str],
    report: dict[str, Any],
    baselines: np.ndarray,
) -> str:
    labels = ", ".join(f'"{c}"' for c in classes)
    poses = ",\n".join(
        "  [" + ", ".join(f"[{x:.6g}, {y:.6g}]" for x, y in pose) + "]"
        for pose in np.asarray(baselines, dtype=np.float64).reshape(len(classes), points, 2)
    )
    return f"""# {name}: trained by `xrserve train {name}` ({report["finished"]})
runtime = "python"
entrypoint = "xrserve.models.trained:GestureClassifier"
description = "{description}; {report["headline"]}"
max_batch_size = 64
isolation = "inline"  # ~50 us a batch: any hop would cost more than the model
inputs = [{{ name = "{input_name}", datatype = "FP32", shape = [-1, {points}, 2] }}]
outputs = [
  {{ name = "probabilities", datatype = "FP32", shape = [-1, {len(classes)}] }},
  {{ name = "label", datatype = "BYTES", shape = [-1] }},
  # only with parameters.explain = true: integrated gradients per landmark coordinate
  {{ name = "attributions", datatype = "FP32", shape = [-1, {points}, 2] }},
]

[parameters]
weights = "model.pt"
labels = [{labels}]
recipe = "{name}"
data_hash = "{report["data"]["data_hash"]}"
# integrated-gradients baselines (`explain`): each class's mean training pose in the model's coordinates
attribution_baselines = [
{poses},
]
"""


class GestureMotionRecipe(GestureRecipe):
    name = "gesture-motion"
    description = "Dynamic gesture from the last 16 index-fingertip positions (normalised image coordinates)"
    default_epochs = 150
    file = "hand_gestures/point_history.csv"
    points = 16
    input_name = "trajectory"
    hidden = (128, 64)
    scale = False
    dropout = 0.2
    point_names = ("t-15 (oldest)", *(f"t-{15 - i}" for i in range(1, 15)), "t0 (newest)")

    def augment(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Scale (a larger or smaller circle), a mirror-free small rotation, and jitter."""
        n = len(points)
        angle = rng.uniform(-0.15, 0.15, size=n)
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
        out = np.einsum("npc,ndc->npd", points * rng.uniform(0.85, 1.15, size=(n, 1, 1)), rotation)
        return (out + rng.normal(scale=0.001, size=out.shape)).astype(np.float32)
