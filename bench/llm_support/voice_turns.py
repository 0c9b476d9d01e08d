"""When the turns one spoken utterance caused are over: bench/voice.py and bench/turn_end.py."""

from __future__ import annotations


def turns_over(events: list[tuple[float, dict | None]], speech_end: float) -> bool:
    """Whether the question's turns are over: one taken after `speech_end`, and all taken have ended.

    By turn number, not by count or time: the previous turn's `interrupted` (its answer was still
    playing when this question began) arrives among this question's events, and a short answer
    can end before the audio's trailing silence has all been sent (it did: the bench waited for
    a second `turn_end` that never came).
    """
    taken = {e["turn"]: t for t, e in events if e is not None and e["type"] == "transcript"}
    over = {e["turn"] for _, e in events if e is not None and e["type"] in ("turn_end", "interrupted")}
    return any(t > speech_end for t in taken.values()) and set(taken) <= over
