"""The Khronos glTF validator (npm `gltf-validator`, pinned in package.json) from the tests.

Node runs `tests/tools/validate_gltf.mjs` on a temporary file; `make install` puts the
package in `node_modules/` (`npm ci`). Without it the test fails with the fix: `make test`
installs it, and a GLB nobody validated must not pass as a valid one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "tools" / "validate_gltf.mjs"
PACKAGE = ROOT / "node_modules" / "gltf-validator"


def validate(glb: bytes) -> dict:
    """The validator's report on a GLB (`report["issues"]["numErrors"]`, `["messages"]`, `["info"]`)."""
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        raise AssertionError("the glTF validator needs node and `npm ci` (run `make install`)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.glb"
        path.write_bytes(glb)
        done = subprocess.run([node, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    if done.returncode not in (0, 1):  # 1: a report with errors, which the caller asserts on
        raise AssertionError(f"the glTF validator could not read the file: {done.stderr.strip()}")
    return json.loads(done.stdout)


def problems(report: dict) -> list[str]:
    """Errors and warnings as `CODE at POINTER: message` lines, for an assertion message."""
    return [
        f"{m['code']} at {m.get('pointer', '')}: {m['message']}"
        for m in report["issues"]["messages"]
        if m["severity"] <= 1
    ]
