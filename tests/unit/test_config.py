"""model.toml mistakes name the file, the field and the problem; good files still load."""

from __future__ import annotations

import pytest

from tests.conftest import write_model
from xrserve.core.repository import scan_directory

GOOD = """
runtime = "python"
entrypoint = "xrserve.models.minilm:MiniLM"
inputs = [{ name = "text", datatype = "BYTES", shape = [-1] }]
outputs = [{ name = "embedding", datatype = "FP32", shape = [-1, 384] }]
max_batch_size = 8
"""


@pytest.mark.parametrize(
    "toml, field, words",
    [
        ("runtime = 'tensorflow'", "runtime", "'onnx', 'torchscript', 'python', 'gguf' or 'yolo'"),
        (GOOD + "max_batchsize = 3", "max_batchsize", "not a model.toml field"),
        (GOOD.replace('"FP32"', '"FLOAT32"'), "outputs.0.datatype", "'FLOAT32' is not a datatype"),
        (GOOD.replace("[-1, 384]", "[384]"), "(model)", "first dimension is the batch dimension"),
        (GOOD.replace("[-1, 384]", "[-1, 0]"), "outputs.0.shape", "neither positive nor -1"),
        ("runtime = 'python'", "(model)", "needs entrypoint"),
        ("runtime = 'onnx'", "file", "does not exist"),
        ("runtime = = 'onnx'", "(syntax)", "not valid TOML"),
        (GOOD + "name = 'other'", "name", "directory says 'm'"),
        (GOOD + "max_queue_delay_ms = -1", "max_queue_delay_ms", "greater than or equal to 0"),
    ],
)
def test_mistakes_are_named(tmp_path, toml: str, field: str, words: str) -> None:
    write_model(tmp_path, "m", "1", toml)
    scan = scan_directory(tmp_path)
    assert not scan.configs and len(scan.errors) == 1
    error = scan.errors[0]
    assert error.path.endswith("m/1/model.toml")
    assert error.field == field
    assert words in error.problem, error.problem


def test_one_broken_model_does_not_stop_the_rest(tmp_path) -> None:
    write_model(tmp_path, "good", "1", GOOD)
    write_model(tmp_path, "good", "2", GOOD)
    write_model(tmp_path, "bad", "1", "runtime = 'nope'")
    (tmp_path / "nover" / "1").mkdir(parents=True)
    (tmp_path / "good" / "notes").mkdir()  # non-numeric folders are ignored
    scan = scan_directory(tmp_path)
    assert sorted((c.name, c.version) for c in scan.configs) == [("good", "1"), ("good", "2")]
    assert sorted(e.path.split("/")[-3] for e in scan.errors) == ["bad", "nover"]
