"""Lip-sync: Piper's phoneme alignment turned into the 15 OpenXR / Oculus viseme names with times.

The TTS model reports each IPA symbol it spoke and how many samples it lasted (the VITS
duration predictor's own output, so the times match the audio exactly). Each symbol maps to
one viseme; stress marks take the time of the vowel they precede, length marks that of
the vowel they follow; neighbouring symbols with the same viseme merge into one span.
"""

from __future__ import annotations

from typing import Any

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")

_GROUPS = {
    "PP": "pbmɱ",
    "FF": "fv",
    "TH": "θð",
    "DD": "tdɾʈɖ",
    "kk": "kgŋqɢxɣ",
    "CH": "ʃʒʧʤɕʑç",
    "SS": "szʂʐ",
    "nn": "nlɫɲɳʎ",
    "RR": "ɹrɚɝɻʁ",
    "aa": "aɑæʌɐɒ",
    "E": "eɛəɜɘh",
    "ih": "iɪɨjy",
    "oh": "oɔøœ",
    "ou": "uʊwɯʉ",
}
PHONEME_TO_VISEME: dict[str, str] = {symbol: viseme for viseme, symbols in _GROUPS.items() for symbol in symbols}
STRESS = "ˈˌ"  # before the vowel they mark
ATTACHED = "ːˑ̩̯̃͡"  # length, nasalisation, syllabic, tie: part of the symbol before them


def viseme_of(phoneme: str) -> str | None:
    """The viseme of one symbol; None for marks that belong to a neighbour; "sil" for pauses."""
    if not phoneme or phoneme in STRESS or all(c in ATTACHED for c in phoneme):
        return None
    return PHONEME_TO_VISEME.get(phoneme[0], "sil")


def visemes_from_alignment(
    phonemes: list[str], samples: list[int], sample_rate: int, offset_ms: float = 0.0
) -> list[dict[str, Any]]:
    """`[{"viseme", "start_ms", "end_ms"}, ...]`, contiguous, times from `offset_ms` on."""
    spans: list[list[Any]] = []  # [viseme, start_sample, end_sample]
    position = 0
    carried = 0  # samples of stress marks waiting for the vowel they mark
    for phoneme, count in zip(phonemes, samples):
        count = max(0, int(count))
        viseme = viseme_of(phoneme)
        if viseme is None:
            if phoneme in STRESS or not spans:
                carried += count
            else:
                spans[-1][2] += count
            position += count
            continue
        start = position - carried
        carried = 0
        position += count
        if spans and spans[-1][0] == viseme:
            spans[-1][2] = position
        else:
            spans.append([viseme, start, position])
    if carried and spans:
        spans[-1][2] += carried
    scale = 1000.0 / sample_rate
    return [
        {"viseme": v, "start_ms": round(offset_ms + s * scale, 1), "end_ms": round(offset_ms + e * scale, 1)}
        for v, s, e in spans
    ]
