"""The model repository: broken model.toml reported and skipped, new versions loaded live."""

from __future__ import annotations

import numpy as np

from tests.conftest import Server, cli, export_tiny_onnx, infer_body, write_model


def test_broken_model_toml_is_reported_and_skipped(server: Server, admin) -> None:
    index = admin.post("/v2/repository/index").json()
    broken = [e for e in index if e["name"] == "broken"]
    assert broken and broken[0]["state"] == "UNAVAILABLE"
    reason = broken[0]["reason"]
    assert "broken/1/model.toml" in reason and "max_batch_size" in reason and "greater than or equal to 0" in reason
    assert {e["name"] for e in index if e["state"] == "READY"} >= {"minilm", "tiny", "crashy", "batched", "serial"}
    assert "broken/1/model.toml" in server.log.read_text()
    missing = admin.post("/v2/models/broken/infer", json=infer_body("x", np.zeros((1, 4))))
    assert missing.status_code == 404
    table = cli("models", "--url", server.url, "--key", server.admin_key).stdout
    assert "broken" in table and "UNAVAILABLE" in table


def test_new_model_and_version_served_without_restart(server: Server, admin) -> None:
    toml = (server.repo / "tiny" / "1" / "model.toml").read_text()
    export_tiny_onnx(write_model(server.repo, "fresh", "1", toml) / "model.onnx", seed=3)
    assert admin.post("/v2/repository/models/fresh/load").status_code == 200
    x = infer_body("x", np.ones((1, 64), np.float32))
    first = admin.post("/v2/models/fresh/infer", json=x).json()
    assert first["model_version"] == "1"

    export_tiny_onnx(write_model(server.repo, "fresh", "2", toml) / "model.onnx", seed=7)
    loaded = admin.post("/v2/repository/models/fresh/load")
    assert loaded.status_code == 200, loaded.text
    assert {e["version"] for e in loaded.json()} == {"1", "2"}
    newest = admin.post("/v2/models/fresh/infer", json=x).json()
    pinned = admin.post("/v2/models/fresh/versions/1/infer", json=x).json()
    assert newest["model_version"] == "2" and pinned["model_version"] == "1"
    assert newest["outputs"][0]["data"] != pinned["outputs"][0]["data"]
    assert pinned["outputs"][0]["data"] == first["outputs"][0]["data"]
    assert admin.get("/v2/models/fresh").json()["versions"] == ["1", "2"]
    assert admin.post("/v2/repository/models/nothing-here/load").status_code == 404
