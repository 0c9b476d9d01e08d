"""Cutting a streamed answer into pieces to speak, as early as a piece is complete.

Text to speech waits for whole sentences (prosody needs the sentence), but the first piece
decides when the character starts talking: it may end at a clause (comma, colon,
semicolon, dash) once it has a few words, or after `first_words` words when no punctuation
has come yet, so the first audio is short and comes soon. Piper's time grows with the text
(on 2 cores ~75 ms for two words, ~320 ms for eight), the LLM's with the words it must write
before the piece is complete, and the rest of the answer is synthesised while the first
piece plays, so only the first piece is cut early. The `npc` stream's `first_piece_words`
option (default 3) sets `first_words`; a clause may end the first piece from
`max(2, first_words - 2)` words (at most 4).
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")
FIRST_CLAUSE_MIN_WORDS = 4
FIRST_PIECE_MAX_WORDS = 6
_WORD_END = re.compile(r"\S\s+")
MAX_PIECE_CHARS = 300  # a run-on "sentence" is spoken in pieces rather than waited for


class SentenceSplitter:
    """Feed text deltas; get back the pieces that are complete. `flush()` returns the rest."""

    def __init__(self, *, first_clause: bool = True, first_words: int = FIRST_PIECE_MAX_WORDS) -> None:
        self._buffer = ""
        self._first = first_clause
        self._first_words = max(1, first_words)
        self._first_clause_words = min(FIRST_CLAUSE_MIN_WORDS, max(2, first_words - 2))

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces: list[str] = []
        while True:
            piece = self._next()
            if piece is None:
                return pieces
            if piece.strip():
                pieces.append(piece.strip())
            self._first = False

    def _next(self) -> str | None:
        match = _SENTENCE_END.search(self._buffer)
        cut = match.end() if match else None
        if self._first:
            for clause in _CLAUSE_END.finditer(self._buffer):
                if cut is not None and clause.end() >= cut:
                    break
                if len(self._buffer[: clause.start()].split()) >= self._first_clause_words:
                    cut = clause.end()
                    break
            word_ends = [m.end() for m in _WORD_END.finditer(self._buffer)]
            n = self._first_words
            if len(word_ends) >= n and (cut is None or word_ends[n - 1] < cut):
                cut = word_ends[n - 1]  # still no punctuation: speak the first words
        if cut is None and len(self._buffer) > MAX_PIECE_CHARS:
            space = self._buffer.rfind(" ", 0, MAX_PIECE_CHARS)
            cut = space + 1 if space > 0 else MAX_PIECE_CHARS
        if cut is None:
            return None
        piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return piece

    def flush(self) -> str:
        rest, self._buffer = self._buffer.strip(), ""
        return rest


def split_sentences(text: str) -> list[str]:
    """A whole text in sentences (the speech route), without the short first clause."""
    splitter = SentenceSplitter(first_clause=False)
    pieces = splitter.feed(text)
    rest = splitter.flush()
    return pieces + ([rest] if rest else [])


def speakable(text: str) -> str:
    """The text without control characters, lone surrogates or unassigned code points.

    espeak-ng takes a C string (a NUL ends it with an error) and UTF-8 cannot carry a lone
    surrogate, which JSON can: they would fail the synthesis of an otherwise fine sentence.
    """
    import unicodedata

    return "".join(c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs", "Co", "Cn") else " " for c in text)
