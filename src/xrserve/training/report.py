"""The run report: `report.json` (everything), `report.md` (for people) and PNG pictures.

Matplotlib's Agg backend draws without a display, so reports work on servers and in CI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def confusion_plot(path: Path, confusion: np.ndarray, classes: list[str], title: str) -> str:
    figure, ax = plt.subplots(figsize=(1.4 + 0.9 * len(classes), 1.0 + 0.8 * len(classes)))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    high = confusion.max() / 2 if confusion.size else 0
    for (i, j), value in np.ndenumerate(confusion):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > high else "black")
    return _save(figure, path)


def attribution_plot(
    path: Path, mean_abs: np.ndarray, classes: list[str], counts: list[int], points: list[str], title: str
) -> str:
    """Per class, the mean |attribution| of each landmark's x and y ([K, P, 2]) as an image; one colour scale."""
    figure, axes = plt.subplots(
        1, len(classes), figsize=(1.6 + 1.45 * len(classes), 1.4 + 0.2 * len(points)), sharey=True, squeeze=False
    )
    top = float(mean_abs.max()) or 1.0
    images = []
    for c, ax in enumerate(axes[0]):
        images.append(ax.imshow(mean_abs[c], cmap="magma", vmin=0.0, vmax=top, aspect="auto"))
        ax.set_xticks([0, 1], ["x", "y"])
        ax.set_title(f"{classes[c]}\n({counts[c]} rows)", fontsize=9)
    axes[0][0].set_yticks(range(len(points)), points, fontsize=7)
    figure.colorbar(images[0], ax=axes[0].tolist(), shrink=0.8, label="mean |attribution|")
    figure.suptitle(title, fontsize=9, y=1.04)  # above the class titles
    figure.savefig(path, dpi=110, bbox_inches="tight")  # tight_layout does not know the shared colour bar
    plt.close(figure)
    return path.name


def curves_plot(path: Path, history: list[dict[str, float]], title: str) -> str:
    """Every numeric series in the history against the epoch, losses and scores on separate axes."""
    keys = sorted({k for row in history for k in row if k != "epoch"})
    losses = [k for k in keys if "loss" in k or k in ("kl", "reconstruction")]
    others = [k for k in keys if k not in losses]
    figure, axes = plt.subplots(1, 2 if others else 1, figsize=(10 if others else 5.5, 3.6), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for key in losses:
        axes[0][0].plot(epochs, [row.get(key, np.nan) for row in history], label=key)
    axes[0][0].set_xlabel("epoch")
    axes[0][0].set_title(f"{title}: losses")
    axes[0][0].legend(fontsize=8)
    if others:
        for key in others:
            axes[0][1].plot(epochs, [row.get(key, np.nan) for row in history], label=key)
        axes[0][1].set_xlabel("epoch")
        axes[0][1].set_title(f"{title}: validation")
        axes[0][1].legend(fontsize=8)
    return _save(figure, path)


def heightmap_grid(path: Path, maps: np.ndarray, title: str, columns: int = 8, labels: list[str] | None = None) -> str:
    """Heightmaps as hill-shaded terrain with an elevation colour map (metres)."""
    from matplotlib.colors import LightSource

    rows = int(np.ceil(len(maps) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.5 * rows + 0.4), squeeze=False)
    light = LightSource(azdeg=315, altdeg=45)
    for ax in axes.ravel():
        ax.axis("off")
    for i, heights in enumerate(maps):
        ax = axes[i // columns][i % columns]
        span = float(heights.max() - heights.min()) or 1.0
        shaded = light.shade(
            heights, cmap=plt.get_cmap("gist_earth"), blend_mode="overlay", vert_exag=30.0 / span * heights.shape[0] / 4
        )
        ax.imshow(shaded)
        if labels:
            ax.set_title(labels[i], fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def histogram_plot(path: Path, series: dict[str, dict[str, np.ndarray]], title: str) -> str:
    """One panel per statistic, one histogram per source (real, generated, baseline)."""
    stats = list(next(iter(series.values())))
    figure, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 3.2), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        values = np.concatenate([s[stat] for s in series.values()])
        bins = np.linspace(np.quantile(values, 0.005), np.quantile(values, 0.995), 40)
        for source, data in series.items():
            ax.hist(data[stat], bins=bins, density=True, histtype="step", label=source, linewidth=1.5)
        ax.set_title(stat)
        ax.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def write_report(run_dir: Path, report: dict[str, Any]) -> None:
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=_plain) + "\n")
    (run_dir / "report.md").write_text(markdown(report))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    metrics = report["metrics"]
    lines = [
        f"# {report['recipe']}: {report['headline']}",
        "",
        f"- finished {report['finished']}, {report['epochs']} epochs, seed {report['seed']}, "
        f"training time {report['train_seconds']:.1f} s",
        f"- data: `{report['data']['source']}` ({report['data']['data_hash']})",
        f"- split: {report['data']['split']} ({report['data']['split_rule']})",
        "",
    ]
    if "per_class" in metrics:
        lines += ["| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        for name, row in metrics["per_class"].items():
            lines.append(
                f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
            )
        lines.append(
            f"| **macro** | {metrics['macro_precision']:.4f} | {metrics['macro_recall']:.4f} | "
            f"{metrics['macro_f1']:.4f} | |"
        )
        lines.append("")
        check = metrics.get("attributions", {}).get("removal_check")
        if check:
            lines += [
                f"Attributions: {metrics['attributions']['method']}; baseline: {metrics['attributions']['baseline']}. "
                f"Removal check over {check['rows']} test rows: the mean fall of the predicted class's probability "
                "when the k most attributed landmarks, or k at random (not the origin point), are removed:",
                "",
                "| landmarks removed | top-attributed | random |",
                "| --- | --- | --- |",
                *(f"| {k} | {row['top_k']:.4f} | {row['random_k']:.4f} |" for k, row in check["by_k"].items()),
                "",
            ]
    else:
        lines += ["| metric | value |", "| --- | --- |"]
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                lines.append(f"| {key} | {value:.4g} |")
            elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
                lines.append(f"| {key} | " + ", ".join(f"{k} {v:.4g}" for k, v in value.items()) + " |")
        lines.append("")
    for name, file in {**metrics.get("plots", {}), **report.get("plots", {})}.items():
        lines.append(f"![{name}]({file})")
    return "\n".join(lines) + "\n"
