"""Build llama.cpp's own ``llama-server`` from the sources vendored in the llama-cpp-python sdist.

The binary is built once into ``bench/.build/`` (gitignored) and reused while it is there,
so the peer runs the very llama.cpp revision that the ``llama_cpp`` module in our venv wraps.

    python -m bench.llm_support.build      # build (or report the one already built)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
BENCH = Path(__file__).resolve().parents[1]
BUILD_ROOT = BENCH / ".build"
SOURCE = BUILD_ROOT / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"
CMAKE_BUILD = BUILD_ROOT / "llama.cpp-build"
BINARY = CMAKE_BUILD / "bin" / "llama-server"
RECORD = BUILD_ROOT / "llama-server.build.json"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
]


def _find_sdist() -> Path:
    """The sdist from /tmp/dl, bench/.build, or pip (``pip download`` builds nothing)."""
    for candidate in (Path("/tmp/dl") / SDIST, BUILD_ROOT / SDIST):
        if candidate.is_file():
            return candidate
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"llama-cpp-python=={VERSION}",
            "-d",
            str(BUILD_ROOT),
        ],
        check=True,
    )
    return BUILD_ROOT / SDIST


def build_record() -> dict:
    """What the last build recorded (seconds it took, flags), or {} if it was built elsewhere."""
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {}


def ensure_llama_server(log=print) -> tuple[Path, dict]:
    """Return (path to llama-server, build record); build it first if it is missing."""
    if BINARY.is_file() and os.access(BINARY, os.X_OK):
        record = build_record()
        record["reused"] = True
        return BINARY, record
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake is needed to build llama-server: apt-get install -y cmake")
    if not (SOURCE / "CMakeLists.txt").is_file():
        sdist = _find_sdist()
        log(f"extracting {sdist} into {BUILD_ROOT}")
        with tarfile.open(sdist) as tar:
            tar.extractall(BUILD_ROOT, filter="tar")
    jobs = str(os.cpu_count() or 1)
    log_path = BUILD_ROOT / "llama-server.build.log"
    started = time.perf_counter()
    with open(log_path, "w") as out:
        for cmd in (
            ["cmake", "-S", str(SOURCE), "-B", str(CMAKE_BUILD), *CMAKE_FLAGS],
            ["cmake", "--build", str(CMAKE_BUILD), "--config", "Release", "-j", jobs, "--target", "llama-server"],
        ):
            log("$ " + " ".join(cmd))
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise RuntimeError(f"llama-server build failed ({rc}); see {log_path}")
    seconds = time.perf_counter() - started
    record = {
        "seconds": round(seconds, 1),
        "jobs": int(jobs),
        "flags": CMAKE_FLAGS,
        "source": str(SOURCE),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    RECORD.write_text(json.dumps(record, indent=2))
    record["reused"] = False
    return BINARY, record


if __name__ == "__main__":
    path, rec = ensure_llama_server()
    print(path, json.dumps(rec))
