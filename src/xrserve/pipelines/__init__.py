"""Compositions of models (NPC voice loop, AR perception, ...), each also a session stream kind.

Importing this package imports every module in it, so each one's `@stream_kind`
registration runs without a list here to keep in sync.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_stream_kinds() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
