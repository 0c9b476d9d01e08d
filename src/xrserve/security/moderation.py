"""Content moderation: a configurable filter on what goes into and comes out of generative models.

Word and pattern lists per category (defaults in `moderation.toml` beside this file). The
`Moderator` interface (`check`, `mask`) is what a classifier model would implement later.
Streaming output is masked with `StreamMasker`, which holds back only a tail that could
still grow into a match (a flagged word split over two tokens is still caught, and
ordinary text is never delayed). Rules use the `regex` package for its partial matching.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import regex

DEFAULT_LISTS = Path(__file__).with_name("moderation.toml")
MASK = "*"
_HOLD_BACK_MAX = 80  # longest tail kept back while streaming; bounds the delay an open-ended pattern can cause


@dataclass(frozen=True)
class Verdict:
    categories: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def flagged(self) -> bool:
        return bool(self.categories)


class Moderator:
    def __init__(self, categories: dict[str, list[str]], action: str = "mask") -> None:
        if action not in ("mask", "withhold"):
            raise ValueError(f"moderation action must be 'mask' or 'withhold', got '{action}'")
        self.action = action
        self._rules = {
            name: regex.compile("|".join(f"(?:{p})" for p in patterns), regex.IGNORECASE)
            for name, patterns in categories.items()
            if patterns
        }

    @classmethod
    def from_file(cls, path: Path = DEFAULT_LISTS) -> Moderator:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"moderation lists {path}: {exc}") from None
        categories: dict[str, list[str]] = {}
        for name, lists in data.get("categories", {}).items():
            words = [rf"\b{re.escape(w)}\b" for w in lists.get("words", [])]
            patterns = list(lists.get("patterns", []))
            for pattern in patterns:
                try:
                    regex.compile(pattern)
                except regex.error as exc:
                    raise ValueError(
                        f"moderation lists {path}: category '{name}': bad pattern {pattern!r}: {exc}"
                    ) from None
            categories[name] = words + patterns
        return cls(categories, data.get("action", "mask"))

    def check(self, text: str) -> Verdict:
        categories, spans = [], []
        for name, rule in self._rules.items():
            found = [m.span() for m in rule.finditer(text) if m.end() > m.start()]
            if found:
                categories.append(name)
                spans.extend(found)
        return Verdict(tuple(categories), tuple(sorted(spans)))

    def open_tail(self, text: str) -> int:
        """Where the part of `text` that could still become (or extend) a match begins; len(text) if none."""
        start = len(text)
        for rule in self._rules.values():
            for match in rule.finditer(text, partial=True):
                if match.end() == len(text) and match.end() > match.start():
                    start = min(start, match.start())
        return start

    def mask(self, text: str, verdict: Verdict | None = None) -> str:
        verdict = verdict or self.check(text)
        if not verdict.flagged:
            return text
        if self.action == "withhold":
            return f"[withheld by the content filter: {', '.join(verdict.categories)}]"
        chars = list(text)
        for start, end in verdict.spans:
            for i in range(start, end):
                if not chars[i].isspace():
                    chars[i] = MASK
        return "".join(chars)


class StreamMasker:
    """Masks a text that arrives in pieces; emits only what can no longer become part of a match."""

    def __init__(self, moderator: Moderator) -> None:
        self.moderator = moderator
        self._pending = ""
        self.categories: set[str] = set()
        self._withheld = False

    def feed(self, delta: str) -> str:
        self._pending += delta
        cut = self._safe_cut(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._emit(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self._emit(ready)

    def _safe_cut(self, text: str) -> int:
        return max(self.moderator.open_tail(text), len(text) - _HOLD_BACK_MAX)

    def _emit(self, text: str) -> str:
        if not text or self._withheld:
            return ""
        verdict = self.moderator.check(text)
        if not verdict.flagged:
            return text
        self.categories.update(verdict.categories)
        if self.moderator.action == "withhold":
            self._withheld = True
        return self.moderator.mask(text, verdict)
