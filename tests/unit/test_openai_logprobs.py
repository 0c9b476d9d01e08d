"""Log-probabilities in OpenAI's shapes, behind the content filter (no model: entries as the LLM sends them)."""

from __future__ import annotations

from xrserve.api.openai_logprobs import Logprobs, chat_content, completion_logprobs, token_string
from xrserve.security.moderation import Moderator, StreamMasker


def entry(text: str, logprob: float = -0.5, top: tuple[str, ...] = ()) -> dict:
    return {
        "piece": text.encode(),
        "text": text,
        "logprob": logprob,
        "top": [(t.encode(), logprob - i) for i, t in enumerate(top)],
    }


def stream(moderator: Moderator, deltas: list[tuple[str, list[dict]]]) -> list[tuple[str, list]]:
    """What `_events` sends: (text, tokens) per delta, then the flush."""
    masker = StreamMasker(moderator)
    track = Logprobs(masker)
    sent = [track.step(entries, masker.feed(text)) for text, entries in deltas]
    sent.append(track.step([], masker.flush(), final=True))
    return [(text, tokens) for text, tokens in sent if text or tokens]


def test_partial_utf8_tokens_are_named_as_openai_names_them() -> None:
    assert token_string("お".encode()[:2]) == "bytes:\\xe3\\x81"
    assert token_string(b" moon") == " moon"


def test_each_chunk_carries_the_tokens_of_its_text() -> None:
    moderator = Moderator({"bad": [r"\bdarn\b"]})
    # " da" could still become "darn": the filter holds it back, and its token waits with it
    sent = stream(moderator, [(" over", [entry(" over")]), (" da", [entry(" da")]), ("te", [entry("te")])])
    named = [(text, [t.name for t in tokens]) for text, tokens in sent]
    assert named == [(" over", [" over"]), (" date", [" da", "te"])]
    assert [t.offset for _, tokens in sent for t in tokens] == [0, 5, 8]


def test_masked_text_is_masked_in_the_tokens_and_their_alternatives() -> None:
    moderator = Moderator({"bad": [r"\bdarn\b"]})
    sent = stream(
        moderator,
        [
            (" oh", [entry(" oh", top=(" oh", " ah"))]),
            (" darn", [entry(" da", top=(" da", " darn")), entry("rn", top=("rn", "te"))]),
            ("!", [entry("!", top=("!", " darn"))]),
        ],
    )
    text = "".join(t for t, _ in sent)
    tokens = [t for _, ts in sent for t in ts]
    assert text == " oh ****!"
    assert [t.name for t in tokens] == [" oh", " **", "**", "!"]
    assert b"".join(t.data for t in tokens).decode() == text
    da, rn, bang = tokens[1:]
    assert [c.name for c in da.top] == [" **", " ****"]  # " darn" after " oh" is flagged
    assert [c.name for c in rn.top] == ["**", "te"]  # " da" + "rn" is; " da" + "te" is not
    assert [c.name for c in bang.top] == ["!", " ****"]
    chat = chat_content(tokens)
    assert chat[1].token == " **" and chat[1].bytes == list(b" **")
    assert [a.token for a in chat[1].top_logprobs] == [" **", " ****"]
    assert chat[1].top_logprobs[1].bytes == list(b" ****")


def test_a_withheld_answer_gives_no_tokens_from_then_on() -> None:
    moderator = Moderator({"bad": [r"\bdarn\b"]}, action="withhold")
    sent = stream(moderator, [(" fine.", [entry(" fine.")]), (" darn", [entry(" darn")]), (" it", [entry(" it")])])
    assert sent[0] == (" fine.", sent[0][1]) and [t.name for t in sent[0][1]] == [" fine."]
    assert "withheld" in "".join(text for text, _ in sent[1:])
    assert all(not tokens for _, tokens in sent[1:])


def test_completion_shape() -> None:
    sent = stream(Moderator({}), [(" Paris", [entry(" Paris", -0.1, (" Paris", " Lyon", " Paris"))])])
    shape = completion_logprobs([t for _, ts in sent for t in ts])
    assert shape.tokens == [" Paris"] and shape.token_logprobs == [-0.1] and shape.text_offset == [0]
    assert shape.top_logprobs == [{" Paris": -0.1, " Lyon": -1.1}]  # one spelling twice: the likelier value
