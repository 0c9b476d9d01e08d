"""Do the attributions point at what the model uses? A removal check over held-out rows.

For each row, replace its k most attributed landmarks by the baseline's (the attribution
score of a landmark: |x| + |y| of its attributions) and measure how much the probability of
the class the model predicted falls; do the same with k landmarks drawn at random. If the
attributions mean anything, removing the top k costs much more than removing k at random.
The origin point (the wrist; a trajectory's first point) is never drawn at random: the
model sees every point relative to it, so "removing" it changes nothing, and its
attribution is always 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

KS = (1, 3, 5)


def landmark_scores(attributions: np.ndarray) -> np.ndarray:
    """[N, P, 2] -> [N, P]: how much each landmark drove the decision."""
    return np.abs(attributions).sum(axis=2)


def removal_check(
    predict: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    attributions: np.ndarray,
    baseline: np.ndarray,
    ks: tuple[int, ...] = KS,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean fall of the predicted class's probability, top-k vs random k landmarks replaced by the baseline.

    `predict` maps points [N, P, 2] (in the model's own coordinates, which it takes unchanged)
    to probabilities [N, K]; `baseline` is [P, 2]. Random draws: `repeats` per row, seeded.
    """
    n, count = points.shape[:2]
    before = predict(points)
    target = before.argmax(axis=1)
    rows = np.arange(n)
    order = np.argsort(-landmark_scores(attributions), axis=1, kind="stable")
    rng = np.random.default_rng(seed)

    def fall(chosen: np.ndarray) -> float:
        removed = points.copy()
        mask = np.zeros((n, count), bool)
        mask[rows[:, None], chosen] = True
        removed[mask] = np.broadcast_to(baseline, points.shape)[mask]
        return float((before[rows, target] - predict(removed)[rows, target]).mean())

    result: dict[str, Any] = {"rows": int(n), "repeats": repeats, "by_k": {}}
    for k in ks:
        random_falls = [
            fall(np.stack([1 + rng.choice(count - 1, size=k, replace=False) for _ in range(n)])) for _ in range(repeats)
        ]
        result["by_k"][str(k)] = {"top_k": fall(order[:, :k]), "random_k": float(np.mean(random_falls))}
    return result
