"""The content filter on streamed text: flagged words are masked even when split across
deltas, and ordinary text is passed on at once, never held back."""

from __future__ import annotations

from xrserve.security.moderation import Moderator, StreamMasker


def stream(deltas: list[str]) -> tuple[list[str], StreamMasker]:
    masker = StreamMasker(Moderator.from_file())
    out = [masker.feed(d) for d in deltas]
    out.append(masker.flush())
    return out, masker


def test_ordinary_text_is_not_delayed() -> None:
    deltas = ["Hello", " wor", "ld, the", " dragon sle", "eps."]
    out, masker = stream(deltas)
    assert out[:-1] == deltas and out[-1] == ""
    assert not masker.categories


def test_a_word_split_over_deltas_is_masked() -> None:
    out, masker = stream(["what the ", "fu", "ck is this"])
    assert "".join(out) == "what the **** is this"
    assert out[1] == ""  # "fu" could still become the word: held back
    assert masker.categories == {"profanity"}


def test_a_pattern_spanning_words_is_masked() -> None:
    out, masker = stream(["You should kill", " your", "self now."])
    assert "".join(out) == "You should **** ******** now."
    assert masker.categories == {"violence"}


def test_a_prefix_that_does_not_become_a_match_is_released() -> None:
    out, _ = stream(["the fu", "ture is near"])
    assert "".join(out) == "the future is near"
    assert out == ["the ", "future is near", ""]
