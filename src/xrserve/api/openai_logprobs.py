"""Log-probabilities in OpenAI's shapes, let out with the text the content filter lets out.

The model's delta chunks carry one entry per generated token (`piece`: its bytes with
special tokens spelled out; `text`: what it added to the answer; `logprob`; `top`: the
likeliest alternatives as `(bytes, logprob)`, most likely first). `Logprobs` keeps them
until the text they belong to has passed the content filter (`StreamMasker` holds back a
tail that could still become a flagged word) and lets text out only up to the end of a
whole token, so every chunk carries exactly the tokens of its own text, and nothing the
filter masks comes out through the log-probabilities:

- a token whose text the filter masked is named by the masked text (`***`, and its bytes),
  among the alternatives too;
- an alternative that would form a flagged word after the text before it is masked too;
- once the filter withholds an answer (`action = "withhold"`), no more tokens are given.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from xrserve.api.openai_protocol import ChatTokenLogprob, CompletionLogprobs, TopLogprob
from xrserve.security.moderation import MASK, StreamMasker

_CONTEXT = 40  # characters before a token that an alternative is checked with


def token_string(piece: bytes) -> str:
    """A token as OpenAI names it: its text, or `bytes:\\xe2\\x80` when it is not whole UTF-8 on its own."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in piece)


class Choice:
    """A token's name, bytes and log-probability: the token generated or an alternative."""

    __slots__ = ("data", "logprob", "name")

    def __init__(self, piece: bytes, logprob: float) -> None:
        self.name, self.data, self.logprob = token_string(piece), piece, logprob

    def mask(self, name: str) -> None:
        """Named by what the content filter let out of it."""
        if name != self.name:
            self.name, self.data = name, name.encode("utf-8")


class Token(Choice):
    """One generated token with its offset in the answer and its alternatives."""

    __slots__ = ("offset", "top")

    def __init__(self, piece: bytes, logprob: float, offset: int, top: list[Choice]) -> None:
        super().__init__(piece, logprob)
        self.offset, self.top = offset, top


class Logprobs:
    """The log-probabilities of one answer, given out as the filter lets its text out."""

    def __init__(self, masker: StreamMasker) -> None:
        self.masker = masker
        self.generated = ""  # the text of every token so far, as the model made it
        self.shown = ""  # what the filter let out: the same length as `generated`'s start in mask mode
        self.sent = 0  # how much of `shown` has gone out
        self.waiting: deque[tuple[int, dict[str, Any]]] = deque()  # (offset in `generated`, entry)

    def step(self, entries: list[dict[str, Any]], shown: str, final: bool = False) -> tuple[str, list[Token]]:
        """A delta's entries and what the masker let out of its text: the text and tokens to send now.

        The text ends where the last whole token given out ends; with `final` (the masker
        flushed), everything left goes.
        """
        for entry in entries:
            self.waiting.append((len(self.generated), entry))
            self.generated += entry["text"]
        self.shown += shown
        if self.masker.moderator.action == "withhold" and self.masker.categories:
            self.waiting.clear()  # the answer was replaced by a notice: its tokens are withheld with it
            return self._text(len(self.shown)), []
        tokens, end = [], self.sent
        while self.waiting:
            start, entry = self.waiting[0]
            if start + len(entry["text"]) > len(self.shown) and not final:
                break
            self.waiting.popleft()
            tokens.append(self._token(start, entry))
            end = start + len(entry["text"])
        return self._text(len(self.shown) if final else end), tokens

    def _text(self, end: int) -> str:
        text = self.shown[self.sent : end]
        self.sent = max(self.sent, end)
        return text

    def _token(self, start: int, entry: dict[str, Any]) -> Token:
        text: str = entry["text"]
        token = Token(entry["piece"], entry["logprob"], start, [Choice(piece, value) for piece, value in entry["top"]])
        if token.top:
            self._mask_alternatives(start, token.top)
        shown = self.shown[start : start + len(text)]
        if shown != text[: len(shown)]:  # the filter masked (some of) it, and so its entry among the alternatives
            token.mask(shown + text[len(shown) :])
            for choice in token.top:
                if choice.data == entry["piece"]:
                    choice.mask(token.name)
        return token

    def _mask_alternatives(self, start: int, top: list[Choice]) -> None:
        """Mask alternatives that, after the text before them, would be flagged (one check for all of them)."""
        context = self.generated[max(0, start - _CONTEXT) : start]
        ranges, parts, at = [], [], 0
        for choice in top:
            begin = at + len(context)
            ranges.append((begin, begin + len(choice.name)))
            parts.append(f"{context}{choice.name}\n")
            at += len(parts[-1])
        verdict = self.masker.moderator.check("".join(parts))
        if not verdict.flagged:
            return
        for choice, (begin, end) in zip(top, ranges):
            chars = list(choice.name)
            for span_start, span_end in verdict.spans:
                for i in range(max(span_start, begin), min(span_end, end)):
                    if not chars[i - begin].isspace():
                        chars[i - begin] = MASK
            choice.mask("".join(chars))


def chat_content(tokens: list[Token]) -> list[ChatTokenLogprob]:
    """`choices[].logprobs.content` of a chat completion or chunk."""
    return [
        ChatTokenLogprob(
            token=t.name,
            logprob=t.logprob,
            bytes=list(t.data),
            top_logprobs=[TopLogprob(token=c.name, logprob=c.logprob, bytes=list(c.data)) for c in t.top],
        )
        for t in tokens
    ]


def completion_logprobs(tokens: list[Token], offset: int = 0) -> CompletionLogprobs:
    """`choices[].logprobs` of a text completion or chunk; `offset`: where the answer starts in `text`."""
    tops = []
    for t in tokens:
        top: dict[str, float] = {}
        for choice in t.top:
            top.setdefault(choice.name, choice.logprob)  # two tokens with one spelling: the likelier one's value
        tops.append(top)
    return CompletionLogprobs(
        tokens=[t.name for t in tokens],
        token_logprobs=[t.logprob for t in tokens],
        top_logprobs=tops,
        text_offset=[offset + t.offset for t in tokens],
    )
