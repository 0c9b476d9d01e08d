"""Models trained by `xrserve train`: the gesture classifiers and the terrain generators.

The same classes serve the built-in versions shipped in this folder (`gesture/`,
`gesture-motion/`, `terrain-vae/`, `terrain-gan/`, each a version folder with
`model.toml`, `model.pt` and the training report) and any version `xrserve train
--register REPO` writes. The weights are TorchScript files; these classes add what
TorchScript cannot: class names as BYTES, seeds, and the terrain model's modes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, StrictBool, StrictInt

from xrserve.core.config import ConfigError, ModelConfig, load_model_toml
from xrserve.core.errors import BadRequest
from xrserve.core.model import Model, ModelParameters
from xrserve.models.parameters import NoParameters
from xrserve.models.trained import explain

BUILTIN_DIR = Path(__file__).parent
BUILTIN_NAMES = ("gesture", "gesture-motion", "terrain-vae", "terrain-gan")


def builtin_configs() -> list[ModelConfig]:
    """Version 1 of each trained model, from the folders shipped with the package (skipped if absent)."""
    configs = []
    for name in BUILTIN_NAMES:
        toml = BUILTIN_DIR / name / "model.toml"
        if toml.is_file():
            try:
                configs.append(load_model_toml(toml, name=name, version="1"))
            except ConfigError:  # pragma: no cover - a broken shipped file is caught by the tests
                continue
    return configs


class _TorchScriptBacked(Model):
    """Loads `parameters.weights` (a TorchScript file) from the version folder."""

    def load(self) -> None:
        import torch

        self.torch = torch
        path = Path(self.config.directory or ".") / self.config.parameters.get("weights", "model.pt")
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, and still works
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(path), map_location="cpu").eval()


class GestureParameters(ModelParameters):
    explain: StrictBool = Field(
        False,
        description=(
            "true: also answer 'attributions' (FP32, the input's shape): integrated gradients of the predicted "
            "class's probability for each landmark coordinate (after the model's normalisation), averaged over "
            "baselines at each class's mean training pose"
        ),
    )


class GestureClassifier(_TorchScriptBacked):
    """Points [N, P, 2] -> `probabilities` [N, K] and `label` [N] (the most probable class name).

    With `parameters.explain`, also `attributions` [N, P, 2] FP32 (see `explain.py`). The
    scheduler batches only requests with equal parameters together, and every row gets its
    own attributions, so explained and plain requests never share a batch or an answer.
    """

    Parameters = GestureParameters

    def load(self) -> None:
        super().load()
        self.labels = np.array([str(n).encode() for n in self.config.parameters["labels"]], dtype=object)
        self.input_name = self.config.inputs[0].name
        self.points = int(self.config.inputs[0].shape[1])
        self.baselines = explain.baselines_array(self.config.parameters, self.points).reshape(-1, self.points * 2)
        self.explainable = hasattr(self.module, "net") and hasattr(self.module.net, "normalise")
        if self.explainable:
            explain.warm_up()
        self.infer({self.input_name: np.zeros((1, *self.config.inputs[0].shape[1:]), np.float32)}, {})  # warm up

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        points = np.ascontiguousarray(inputs[self.input_name], dtype=np.float32)
        with self.torch.inference_mode():
            probabilities = self.module(self.torch.from_numpy(points)).numpy()
        outputs = {"probabilities": probabilities, "label": self.labels[probabilities.argmax(axis=1)]}
        if parameters.get("explain"):
            outputs["attributions"] = self.attributions(points, probabilities.argmax(axis=1))
        return outputs

    def attributions(self, points: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Integrated gradients of each row's predicted class, in the model's own coordinates, [N, P, 2] FP32."""
        if not self.explainable:
            raise BadRequest(f"model '{self.config.name}' version {self.config.version} cannot explain its answers")
        torch = self.torch
        net = self.module.net
        features = net.normalise(torch.from_numpy(points))
        attributions = explain.integrated_gradients(
            lambda z: torch.softmax(net.net(z), dim=1),
            features,
            torch.from_numpy(self.baselines),
            torch.from_numpy(target),
        )
        return attributions.reshape(points.shape).numpy().astype(np.float32)


def _latents_from_seeds(seeds: np.ndarray, size: int) -> np.ndarray:
    """The same as `training.recipes.terrain.seeded_latents`: one seed, one standard-normal latent."""
    return np.stack([np.random.default_rng(int(s)).standard_normal(size) for s in np.ravel(seeds)]).astype(np.float32)


MAX_MAPS = 256  # heightmaps per request: a world needs tens; thousands would hold the model for seconds


def _one_of(inputs: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    sent = [n for n in names if n in inputs]
    if len(sent) != 1:
        raise BadRequest(f"send exactly one of {', '.join(repr(n) for n in names)}; got {sent or 'none'}")
    rows = inputs[sent[0]].shape[0] if inputs[sent[0]].ndim else 1
    if rows > MAX_MAPS:
        raise BadRequest(f"'{sent[0]}' has {rows} rows; at most {MAX_MAPS} heightmaps per request")


class TerrainGAN(_TorchScriptBacked):
    """`seed` INT64 [N] or `latent` FP32 [N, Z] -> `heightmap` [N, 32, 32] metres (+ the latent used)."""

    Parameters = NoParameters

    @staticmethod
    def check_inputs(inputs: dict[str, np.ndarray]) -> None:
        _one_of(inputs, ("seed", "latent"))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        latent = _latent(inputs, int(self.config.parameters["latent"]), self.config.name)
        with self.torch.inference_mode():
            heights = self.module(self.torch.from_numpy(latent)).numpy()
        return {"heightmap": heights.astype(np.float32), "latent": latent}


def _latent(inputs: dict[str, np.ndarray], size: int, name: str) -> np.ndarray:
    if "latent" in inputs and "seed" in inputs:
        raise BadRequest(f"model '{name}': send either 'seed' or 'latent', not both")
    if "latent" in inputs:
        return np.ascontiguousarray(inputs["latent"], dtype=np.float32)
    if "seed" in inputs:
        return _latents_from_seeds(inputs["seed"], size)
    raise BadRequest(f"model '{name}' needs 'seed' (INT64 [N]) or 'latent' (FP32 [N, {size}])")


class TerrainVAEParameters(ModelParameters):
    mode: Literal["encode", "decode", "sample", "interpolate"] | None = Field(
        None,
        description=(
            "default: encode for 'heightmap', decode for 'latent', sample for 'seed'; interpolate: between 2 rows"
        ),
    )
    steps: StrictInt = Field(8, ge=2, le=MAX_MAPS, description="heightmaps along the line, with mode interpolate")


class TerrainVAE(_TorchScriptBacked):
    """Four operations on one model, chosen by `parameters.mode` or by which input is sent.

    - `encode` (`heightmap` [N, 32, 32] metres): `latent` = the posterior mean, and the
      reconstruction as `heightmap`;
    - `decode` (`latent` [N, D]): `heightmap`;
    - `sample` (`seed` [N]): a heightmap per seed (same seed, same terrain);
    - `interpolate` (any of the three with exactly 2 rows, `parameters.steps`, default 8):
      `steps` heightmaps and latents along the straight line between the two.
    """

    Parameters = TerrainVAEParameters

    @staticmethod
    def check_inputs(inputs: dict[str, np.ndarray]) -> None:
        _one_of(inputs, ("heightmap", "latent", "seed"))

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        size = int(self.config.parameters["latent"])
        sent = [n for n in ("heightmap", "latent", "seed") if n in inputs]
        if len(sent) != 1:
            raise BadRequest(
                f"model '{self.config.name}': send exactly one of 'heightmap', 'latent' or 'seed', got {sent or 'none'}"
            )
        # parameters checked at admission against TerrainVAEParameters
        mode = parameters.get("mode") or {"heightmap": "encode", "latent": "decode", "seed": "sample"}[sent[0]]
        torch = self.torch
        with torch.inference_mode():
            if sent[0] == "heightmap":
                heights = torch.from_numpy(np.ascontiguousarray(inputs["heightmap"], dtype=np.float32))
                latent = self.module.encode(heights)[0].numpy()
            else:
                latent = _latent(inputs, size, self.config.name)
            if mode == "interpolate":
                steps = int(parameters.get("steps", 8))
                if len(latent) != 2:
                    raise BadRequest(f"mode interpolate needs exactly 2 rows (the two ends), got {len(latent)}")
                t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
                latent = (latent[0] * (1 - t) + latent[1] * t).astype(np.float32)
            elif mode in ("decode", "sample") and sent[0] == "heightmap":
                raise BadRequest(f"mode '{mode}' takes 'latent' or 'seed', not 'heightmap'")
            heights = self.module.decode(torch.from_numpy(latent)).numpy()
        return {"heightmap": heights.astype(np.float32), "latent": latent}
