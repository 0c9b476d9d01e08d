"""compose.yaml cannot be started here (no Docker engine): check what can be checked without one.

Every secret and dependency it names exists, the fronts join the head the file defines, and the
xrserve and ray commands it runs take the options it gives them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from xrserve.cli import app

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services, secrets = compose["services"], compose["secrets"]
    for name, service in services.items():
        for secret in service.get("secrets", []):
            assert (secret["source"] if isinstance(secret, dict) else secret) in secrets, (name, secret)
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)
    fronts = [s for s in services.values() if s.get("command", [])[:2] == ["xrserve", "serve"]]
    assert len(fronts) >= 2
    head_port = services["ray-head"]["command"][services["ray-head"]["command"].index("--port") + 1]
    help_text = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    for front in fronts:
        command = front["command"]
        assert command[command.index("--ray-address") + 1] == f"ray-head:{head_port}"
        for option in (part for part in command[2:] if part.startswith("--")):
            assert option in help_text, option
        assert front["environment"]["RAY_AUTH_TOKEN_PATH"].startswith("/run/secrets/")


def test_compose_ray_commands_take_their_options() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray is not None, "the ray extra is installed with the project (make install)"
    commands = [s["command"] for s in compose["services"].values() if s.get("command", [""])[0] == "ray"]
    commands += [s["healthcheck"]["test"][1:] for s in compose["services"].values() if "healthcheck" in s]
    commands = [c for c in commands if c[0] == "ray"]
    assert len(commands) >= 3
    for command in commands:
        help_text = subprocess.run([ray, command[1], "--help"], capture_output=True, text=True, check=True).stdout
        for option in (part for part in command[2:] if part.startswith("--")):
            assert option in help_text, (command[:2], option)
