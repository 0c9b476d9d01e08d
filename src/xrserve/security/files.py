"""The data directory and its files are the server user's alone: 0700 directories, 0600 files.

It holds key digests, the audit trail and generated worlds. The server also runs with
umask 077 (`server.serve`), so whatever it creates later (worlds/, SQLite's -wal and -shm
files, default_versions.json) is private too; these helpers cover the files the CLI makes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Make `path` (and missing parents) a directory only its owner can enter; tighten it if it is ours and open."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` (and SQLite's companions, when present) readable and writable by its owner only."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = each.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            each.chmod(FILE_MODE)
    return path
