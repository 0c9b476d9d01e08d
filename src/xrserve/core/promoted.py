"""Versions promoted to default by an operator (`xrserve models promote` / `rollback`), kept across restarts.

Without a choice a request without a version gets the newest ready version. A promote
pins one; the history of pins makes `rollback` go back to the previous choice. The file
lives in the data directory (`default_versions.json`), so it covers built-in models and
every repository alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class PromotedVersions:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.history: dict[str, list[str]] = {}
        if path is not None and path.is_file():
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

    def _save(self) -> None:
        self._refresh()
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
        self._save()

    def pop(self, name: str) -> str | None:
        """Drop the current choice; return the previous one (None: back to newest ready)."""
        stack = self.history.get(name, [])
        if stack:
            stack.pop()
        if not stack:
            self.history.pop(name, None)
        self._save()
        return stack[-1] if stack else None
