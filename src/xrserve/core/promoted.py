"""Versions promoted to default by an operator (`xrserve models promote` / `rollback`), kept across restarts.

Without a choice a request without a version gets the newest ready version. A promote
pins one; the history of pins makes `rollback` go back to the previous choice. The file
lives in the data directory (`default_versions.json`), so it covers built-in models and
every repository alike. With a shared store (`--database`: a PostgreSQL table) the choices live
there instead, so every replica serves the same default: a promote on one replica is written
through, and each replica reads the store again every second (`refresh`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol


class PromotedStore(Protocol):
    """Promoted versions kept where every replica reads them (security/postgres.py)."""

    def load(self) -> dict[str, list[str]]: ...

    def save(self, name: str, history: list[str]) -> None: ...


class PromotedVersions:
    def __init__(self, path: Path | None, store: PromotedStore | None = None) -> None:
        self.path = path
        self.store = store
        self.history: dict[str, list[str]] = {}
        if store is not None:
            self.history = store.load()
        elif path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text())
                self.history = {str(k): [str(v) for v in vs] for k, vs in raw.items() if isinstance(vs, list)}
            except (ValueError, AttributeError):
                self.history = {}  # an unreadable file means "no choices": newest ready serves
        self.current: dict[str, str] = {}  # read by Scheduler.resolve; updated in place
        self._refresh()

    def _refresh(self) -> None:
        self.current.clear()
        self.current.update({name: versions[-1] for name, versions in self.history.items() if versions})

    def apply(self, history: dict[str, list[str]]) -> None:
        """Take the choices read from the shared store (on the event loop: `current` never looks empty)."""
        self.history = history
        self._refresh()

    def _save(self, name: str) -> None:
        self._refresh()
        if self.store is not None:
            self.store.save(name, list(self.history.get(name, [])))
            return
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.history, indent=1))
        os.replace(partial, self.path)

    def promote(self, name: str, version: str) -> None:
        stack = self.history.setdefault(name, [])
        if not stack or stack[-1] != version:
            stack.append(version)
        self._save(name)

    def pop(self, name: str) -> str | None:
        """Drop the current choice; return the previous one (None: back to newest ready)."""
        stack = self.history.get(name, [])
        if stack:
            stack.pop()
        if not stack:
            self.history.pop(name, None)
        self._save(name)
        return stack[-1] if stack else None
