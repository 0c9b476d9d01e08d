"""The pure parts of the voice loop: visemes from phoneme timing, sentence cutting, memory trimming, WER."""

from __future__ import annotations

from xrserve.pipelines.npc import CHARS_PER_TOKEN, HISTORY_TOKEN_BUDGET, Memory, Persona, TurnOptions
from xrserve.voice.sentences import SentenceSplitter, speakable, split_sentences
from xrserve.voice.visemes import VISEMES, visemes_from_alignment
from xrserve.voice.wer import normalise, wer


def test_visemes_cover_the_audio_and_merge_marks() -> None:
    # "hello" as Piper aligns it: ^ h ə l ˈ o ʊ $ with samples per symbol
    phonemes = ["^", "h", "ə", "l", "ˈ", "o", "ʊ", "$"]
    samples = [768, 768, 768, 1536, 1024, 1024, 768, 512]
    spans = visemes_from_alignment(phonemes, samples, 22050, offset_ms=100)
    assert [s["viseme"] for s in spans] == ["sil", "E", "nn", "oh", "ou", "sil"]
    assert spans[0]["start_ms"] == 100 and spans[-1]["end_ms"] == round(100 + sum(samples) / 22.05, 1)
    assert all(a["end_ms"] == b["start_ms"] for a, b in zip(spans, spans[1:]))  # contiguous
    oh = spans[3]  # the stress mark's 1024 samples belong to the vowel after it
    assert round(oh["end_ms"] - oh["start_ms"], 1) == round(2048 / 22.05, 1)
    assert {s["viseme"] for s in spans} <= set(VISEMES)


def test_bilabials_and_rhotics() -> None:
    spans = visemes_from_alignment(list("mbpɹfθ"), [100] * 6, 1000)
    assert [s["viseme"] for s in spans] == ["PP", "RR", "FF", "TH"]


def test_first_piece_may_end_at_a_clause_later_ones_at_sentences() -> None:
    splitter = SentenceSplitter()
    pieces = []
    for token in [
        "Well,",
        "hello",
        "there",
        "young",
        "traveller,",
        "what",
        "brings",
        "you",
        "here?",
        "I",
        "am",
        "Bob.",
        "The",
        "mill",
    ]:
        pieces += splitter.feed(token + " ")
    assert pieces == ["Well, hello there young traveller,", "what brings you here?", "I am Bob."]
    assert splitter.flush() == "The mill"
    splitter = SentenceSplitter()  # no punctuation for a while: the first piece is its first six words
    pieces = [
        p
        for word in "The old mill by the river has stood here for years. It".split()
        for p in splitter.feed(word + " ")
    ]
    assert pieces == ["The old mill by the river", "has stood here for years."]
    assert split_sentences("One, two, three four five. Six!") == ["One, two, three four five.", "Six!"]

    def pieces_of(text: str, first_words: int) -> list[str]:
        splitter = SentenceSplitter(first_words=first_words)
        return [p for word in text.split() for p in splitter.feed(word + " ")] + [splitter.flush()]

    # the npc stream's default since issue 16 (first_piece_words 3): three words, or a clause from two
    text = "Well, hello there young traveller, what brings you here? I am Bob."
    assert pieces_of(text, 3) == ["Well, hello there", "young traveller, what brings you here?", "I am Bob.", ""]
    assert pieces_of("Aye, lad, the mill is old.", 3) == ["Aye, lad,", "the mill is old.", ""]
    assert pieces_of("Hi! The mill is old.", 3) == ["Hi!", "The mill is old.", ""]
    assert pieces_of(text, 6)[0] == "Well, hello there young traveller,"  # fb346b1's rule
    assert TurnOptions().first_piece_words == 3
    assert len(split_sentences("word " * 200)) >= 3  # run-on text is cut


def test_memory_keeps_the_newest_turns_within_the_budget() -> None:
    memory = Memory()
    for i in range(200):
        memory.add(f"question {i} " + "x" * 100, f"answer {i} " + "y" * 100)
    messages = memory.messages(Persona(), "and now?")
    size = sum(len(m["content"]) for m in messages)
    assert size <= HISTORY_TOKEN_BUDGET * CHARS_PER_TOKEN
    assert messages[-1] == {"role": "user", "content": "and now?"}
    assert messages[-2]["content"].startswith("answer 199") and len(memory.turns) < 200


def test_wer_and_speakable() -> None:
    assert normalise("One, two - 3!") == ["one", "two", "three"]
    assert wer(["the cat sat"], ["the cat sat down"]) == 1 / 3
    assert speakable("a\x00b\ud800c") == "a b c"
