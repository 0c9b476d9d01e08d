"""The CLI: help everywhere, one-line errors for wrong flags and missing files."""

from __future__ import annotations

import pytest

from tests.conftest import cli

COMMANDS = [
    [],
    ["serve"],
    ["models"],
    ["infer"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "update"],
    ["keys", "revoke"],
    ["audit"],
    ["audit", "tail"],
    ["audit", "verify"],
    ["version"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "xrserve")
def test_help_everywhere(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert "Usage" in result.stdout and result.stderr == ""


def test_wrong_flag_is_one_line(tmp_path) -> None:
    result = cli("serve", "--bogus", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No such option: --bogus" in lines[0] and "--help" in lines[0]


def test_missing_directory_is_one_line(tmp_path) -> None:
    result = cli("serve", "--model-repository", str(tmp_path / "missing"), check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and "missing" in lines[0]


def test_missing_request_file_and_unreachable_server(tmp_path) -> None:
    result = cli("infer", "minilm", "--request", str(tmp_path / "nope.json"), check=False)
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = cli("infer", "minilm", "-i", 'text=["hi"]', "--url", "http://127.0.0.1:9", check=False)
    assert result.returncode == 2 and "cannot reach the server" in result.stderr


def test_keys_round_trip(tmp_path) -> None:
    data = tmp_path / "data"
    token = cli("keys", "create", "-s", "minilm", "-s", "tiny", "--name", "headset", "-q", data_dir=data).stdout.strip()
    assert token.startswith("xrs_")
    listing = cli("keys", "list", data_dir=data).stdout
    assert "headset" in listing and "minilm, tiny" in listing and "active" in listing
    assert cli("keys", "revoke", token.split("_")[1], data_dir=data).returncode == 0
    again = cli("keys", "revoke", token.split("_")[1], data_dir=data, check=False)
    assert again.returncode == 2 and "no active key" in again.stderr
    bad = cli("keys", "create", "-s", "x", "--expires-in", "soon", data_dir=data, check=False)
    assert bad.returncode == 2 and "--expires-in" in bad.stderr


def test_audit_tail_without_trail(tmp_path) -> None:
    result = cli("audit", "tail", data_dir=tmp_path / "empty", check=False)
    assert result.returncode == 2 and "no audit trail" in result.stderr


def test_audit_verify_without_trail(tmp_path) -> None:
    result = cli("audit", "verify", data_dir=tmp_path / "empty", check=False)
    assert result.returncode == 2 and "no audit trail" in result.stderr


def test_infer_command_against_server(server) -> None:
    result = cli("infer", "minilm", "-i", 'text=["a red apple"]', "--url", server.url, "--key", server.admin_key)
    assert "embedding FP32 [1, 384]" in result.stdout and "tokens INT32 [1]: [5]" in result.stdout
