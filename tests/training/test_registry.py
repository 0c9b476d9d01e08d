"""Registration into a repository, hot loading by a running server, promote and rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cli, infer_body, start_server
from xrserve.core.config import load_model_toml
from xrserve.training.register import register

MODELS = ["gesture", "gesture-motion", "terrain-vae", "terrain-gan"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("registry")
    repo = tmp / "repo"
    repo.mkdir()
    only = [arg for name in MODELS for arg in ("--only", name)]
    server = start_server(tmp, *only, repo=repo, admin_key=True)
    yield server
    server.stop()


def builtin_version(name: str) -> int:
    from xrserve.models.trained import builtin_configs

    return max([int(c.version) for c in builtin_configs() if c.name == name], default=0)


REQUESTS = {
    "gesture": ("landmarks", np.random.default_rng(0).normal(size=(2, 21, 2)), "FP32", "label"),
    "gesture-motion": ("trajectory", np.random.default_rng(0).normal(scale=0.05, size=(2, 16, 2)), "FP32", "label"),
    "terrain-vae": ("seed", np.array([3, 4]), "INT64", "heightmap"),
    "terrain-gan": ("seed", np.array([3, 4]), "INT64", "heightmap"),
}


@pytest.mark.parametrize("name", MODELS)
def test_registered_version_is_served_without_a_restart(trained, served, name: str) -> None:
    target = register(trained(name).export_dir, served.repo, name)
    version = target.name
    assert int(version) > builtin_version(name)  # numbered after the shipped version, which stays
    config = load_model_toml(target / "model.toml", name=name, version=version)
    assert config.parameters["data_hash"] == trained(name).report["data"]["data_hash"]
    assert (target / "report.json").exists() and (target / "model.pt").exists()
    with served.client() as client:
        loaded = client.post(f"/v2/repository/models/{name}/load")
        assert loaded.status_code == 200, loaded.text
        assert {"version": version, "state": "READY"}.items() <= {e["version"]: e for e in loaded.json()}[
            version
        ].items()
        input_name, array, datatype, output = REQUESTS[name]
        answer = client.post(f"/v2/models/{name}/infer", json=infer_body(input_name, array, datatype))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == version  # the newest version answers by default
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs[output]["shape"][0] == 2
        if builtin_version(name):  # the shipped version stays addressable
            old = client.post(
                f"/v2/models/{name}/versions/{builtin_version(name)}/infer",
                json=infer_body(input_name, array, datatype),
            )
            assert old.status_code == 200 and old.json()["model_version"] == str(builtin_version(name))


def test_train_register_load_promote_rollback_from_the_cli(served, tmp_path: Path) -> None:
    url = ["--url", served.url, "--key", served.admin_key]
    before = (
        sorted(int(p.name) for p in (served.repo / "gesture").iterdir() if p.name.isdigit())
        if (served.repo / "gesture").exists()
        else []
    )
    result = cli(
        "train",
        "gesture",
        "--limit",
        "200",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--register",
        str(served.repo),
        *url,
    )
    newest = str(max([*before, builtin_version("gesture")]) + 1)
    assert f"registered gesture version {newest}" in result.stderr.replace("\n", " ")
    assert f"v{newest} READY" in result.stderr.replace("\n", " ")
    landmarks = infer_body("landmarks", np.zeros((1, 21, 2)))
    with served.client() as client:

        def serving() -> str:
            return client.post("/v2/models/gesture/infer", json=landmarks).json()["model_version"]

        assert serving() == newest
        older = str(int(newest) - 1)
        assert f"default version {older}" in cli("models", "promote", "gesture", older, *url).stdout
        assert serving() == older
        saved = json.loads((served.data_dir / "default_versions.json").read_text())
        assert saved["gesture"] == [older]
        assert f"default version {newest}" in cli("models", "rollback", "gesture", *url).stdout  # back to newest
        assert serving() == newest
        assert f"default version {older}" in cli("models", "rollback", "gesture", *url).stdout  # none promoted: older
        assert serving() == older
        assert (
            client.post(f"/v2/models/gesture/versions/{newest}/infer", json=landmarks).json()["model_version"] == newest
        )
        missing = cli("models", "promote", "gesture", "99", *url, check=False)
        assert missing.returncode == 2 and "has no version '99'" in missing.stderr
    # the choice is a file in the data directory, read again at start-up
    from xrserve.core.promoted import PromotedVersions

    assert PromotedVersions(served.data_dir / "default_versions.json").current == {"gesture": older}
