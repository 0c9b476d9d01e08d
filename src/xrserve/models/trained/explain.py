"""Which landmarks drove a gesture classifier's decision: integrated gradients (Captum).

The attributions are taken on the points as the model sees them, after its own
normalisation (`gesture`: wrist-relative, divided by the largest absolute value;
`gesture-motion`: relative to the first point), not on the raw coordinates a client sends:
`gesture` is scale-invariant, so on the straight path from zero to a raw input every point
looks the same to it, and the attributions would sum to nothing. Normalised points have
the input's shape ([N, P, 2], one pair per landmark), so they still say which landmarks
mattered; the wrist (or the first point) is the origin and always gets 0.

The baselines are the mean pose of each class in those coordinates (from the training
rows; written into `model.toml` as `attribution_baselines` by `xrserve train`), and a row's
attributions are the average of its integrated gradients from each of them. Integrated
gradients explain f(input) - f(baseline), so a single baseline makes one class the
reference: the mean of all training rows is a Pointer to `gesture` (p = 0.93), and every
Pointer came out with near-zero attributions; all landmarks on the wrist (zeros after
normalisation) is a hand no camera sees, and `gesture` calls it a Pointer too. Averaged over
the classes' mean poses, every class is explained against the same mixture. For
`gesture-motion` each class's mean trajectory is a still fingertip (circles started at
every phase average out), so a Stop is explained against stillness and gets little: the
absence of movement is what makes it a Stop.

Captum is imported on first use, or early in a background thread by `warm_up()`: with
matplotlib, which it imports, it takes seconds on a busy machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

STEPS = 32  # integration steps (Gauss-Legendre): the completeness gap is ~1% of a probability on average


def warm_up() -> threading.Thread:
    """Import Captum in a background thread, so the first `explain` request does not pay for it."""
    thread = threading.Thread(target=_integrated_gradients_class, name="captum-import", daemon=True)
    thread.start()
    return thread


def _integrated_gradients_class() -> Any:
    from captum.attr import IntegratedGradients

    return IntegratedGradients


def integrated_gradients(
    probabilities: Callable[[Any], Any], features: Any, baselines: Any, target: Any, steps: int = STEPS
) -> Any:
    """Integrated gradients of `probabilities(features)[i, target[i]]` w.r.t. `features` [N, F] (torch tensors).

    `baselines` [B, F]: each row's attributions are the mean of its integrated gradients from
    each baseline (one Captum call over the B x N pairs). Every row gets its own attributions,
    so rows of different requests batched together do not mix.

    Captum is handed the sum of the rows' target probabilities, not one output per row: the
    rows do not interact (an MLP in eval mode), so the gradient of the sum is each row's own
    gradient, and one backward pass replaces Captum's one per row and step (64 rows: 30 ms
    instead of 290 ms on the 2-core machine; the attributions are the same to the bit).
    """
    import torch

    features = features.detach()
    baselines = baselines.reshape(-1, features.shape[1]).to(features.dtype)
    count, rows = len(baselines), len(features)

    def summed(points: Any, chosen: Any) -> Any:
        return probabilities(points).gather(1, chosen[:, None]).sum().reshape(1)

    ig = _integrated_gradients_class()(summed)
    with torch.enable_grad():
        attributions = ig.attribute(
            features.repeat(count, 1),
            baselines=baselines.repeat_interleave(rows, dim=0),
            additional_forward_args=(target.repeat(count),),  # Captum repeats it along with the steps
            n_steps=steps,
        )
    return attributions.detach().reshape(count, rows, -1).mean(dim=0)


def baselines_array(parameters: dict[str, Any], points: int) -> np.ndarray:
    """The version's `attribution_baselines` [B, P, 2]; one of zeros (every point on the origin) without any."""
    value = parameters.get("attribution_baselines")
    if value is None:
        return np.zeros((1, points, 2), np.float32)
    return np.asarray(value, dtype=np.float32).reshape(-1, points, 2)
