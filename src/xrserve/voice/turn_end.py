"""Is a partial transcript a finished utterance? A rule on Whisper's text, for the end of a turn.

The `npc` stream transcribes the utterance speculatively after 100 ms of silence; this rule
reads that transcript and says how long the silence must last before the turn is taken:

- `unfinished`: the text ends with "..." (Whisper's own mark for speech that trails off), or
  its last word is one an English sentence cannot end with: an article, a preposition, a
  conjunction, "if", a possessive ("my", "your"), "to", or a filler ("um", "uh", "erm").
  Whisper's final "." or "?" is ignored then: it puts one on unfinished speech too ("Could
  you help me with" came back "Can you help me with?").  -> wait longer (1200 ms).
  No final punctuation counts as unfinished too: Whisper leaves it off mostly on speech that
  stopped mid-sentence ("I was wondering if" -> "I was one very good", "The reason I ask is
  that" -> "The reason I ask is not"; 4 of 48 unfinished phrases measured) and rarely on a
  finished one ("Tell me a story", 1 of 20): that one waits the longer silence.
  Also unfinished (issue 16, from the cut-offs bench/turn_end.py measured): a last "that",
  "some" or "any" (whisper-tiny-en writes a trailing "the" as "that": "Where is the" ->
  "Where is that?", "Tell me more about the" -> "Tell me more about that."; "Can I get some"
  -> "Can I get some?"), and a last sentence that opens with a subordinating conjunction and
  has no comma ("If you could.": the main clause is still to come). Real questions that end
  so ("What is that?") wait the longer silence: slower, never cut. And a lone greeting or
  interjection ("Hello?", "Well.", "So."): what a comma's pause after "Hello, who are you?"
  gives the speculative transcript; a user who only says "hello" waits the longer silence. So
  does a lone question word ("What?": a pause after the first word of "What happened to ...").
- `finished`: it ends with ".", "?" or "!" and its last word can end a sentence.
  -> take the turn at once (the transcript exists only ~0.3 s into the silence: speculation + ASR).
- `unclear`: no text at all (a cough).  -> the plain silence rule (500 ms).

Limits, measured on espeak-ng speech with whisper-tiny-en (docs/voice.md): about half the
unfinished phrases come back as a plausible finished sentence, with the last, unfinished
word misheard as one that can end a sentence: "Where is the" -> "Where is that?", "I would
like to buy a" -> "I would like to my aid.", "If you could" -> "If you could." A rule on the
words alone cannot tell those from real questions; a pause after them is cut off as before.
"""

from __future__ import annotations

import re
from typing import Literal

Verdict = Literal["finished", "unfinished", "unclear"]

# words that cannot end an English sentence (a phrase ending in one goes on)
ARTICLES = {"a", "an", "the"}
PREPOSITIONS = {
    "about", "above", "across", "after", "against", "along", "among", "around", "at", "before", "behind",
    "below", "beneath", "beside", "besides", "between", "beyond", "by", "despite", "during", "except", "for",
    "from", "into", "near", "of", "onto", "towards", "toward", "under", "until", "upon", "via", "with",
    "within", "without", "to",
}  # fmt: skip
CONJUNCTIONS = {
    "and", "or", "but", "nor", "because", "if", "unless", "although", "though", "whereas", "whether", "than",
    "as",
}  # fmt: skip
POSSESSIVES = {"my", "your", "his", "our", "their", "its", "whose"}
FILLERS = {"um", "uh", "erm", "er", "uhm", "hmm", "mm", "ah"}
# Not on the list, because sentences end with them often: "in", "on", "out", "up", "off", "down", "over",
# "through", "like", "since", "once", "so", "when", "where", "while", "her" ("Come in.", "I think so.",
# "Since when?"). Those on it that a question can still end with ("Where are you from?", "What is it
# for?") make such a question wait the longer silence: a slower answer, never a cut-off.
# determiners that end a sentence rarely and a misheard trailing "the" often (see above)
MISHEARD = {"that", "some", "any"}
NON_FINAL = ARTICLES | PREPOSITIONS | CONJUNCTIONS | POSSESSIVES | FILLERS | MISHEARD
# a sentence opening with one of these is a subordinate clause until a comma brings the main one
SUBORDINATORS = {"if", "because", "although", "though", "unless", "whereas"}
# alone, these open an utterance more often than they are one
OPENERS = {"hello", "hi", "hey", "well", "so", "okay", "ok", "oh", "now", "listen", "excuse", "sorry", "greetings"}
# and so do question words: bench/voice.py (2026-12-01) heard a pause after the "What" of "What happened to the
# castle?" at 150 wpm, and the speculative "What?" was taken as the whole question
QUESTION_WORDS = {"what", "where", "who", "why", "how", "when", "which", "whose"}

_WORD = re.compile(r"[a-z']+")
_SENTENCE = re.compile(r"[^.?!…]+[.?!…]*")


def verdict(transcript: str) -> Verdict:
    """`finished`, `unfinished` or `unclear` for a transcript of speech followed by a short silence."""
    text = transcript.strip()
    if not text:
        return "unclear"
    if text.endswith(("...", "…", "-", "—", ",")):
        return "unfinished"
    words = _WORD.findall(text.lower())
    if words and words[-1] in NON_FINAL:
        return "unfinished"
    if 0 < len(words) <= 2 and all(w in OPENERS or w == "me" for w in words):  # "Hello?", "Excuse me."
        return "unfinished"
    if len(words) == 1 and words[0] in QUESTION_WORDS:  # "What?" of "What happened to the castle?"
        return "unfinished"
    sentences = [m.group().strip() for m in _SENTENCE.finditer(text) if m.group().strip(" .?!…")]
    last = sentences[-1] if sentences else text
    opening = _WORD.findall(last.lower())[:1]
    if opening and opening[0] in SUBORDINATORS and "," not in last:
        return "unfinished"
    if text.endswith((".", "?", "!")):
        return "finished"
    return "unfinished"
