"""Would the LLM's own judgement tell a finished utterance from an unfinished one? (issue 16, a lead not taken)

A turn detector built on an LLM reads the probability of the end-of-turn token right after the
user's text. smollm2 (the built-in SmolLM2-135M-Instruct) would give it for free: `<|im_end|>`
is the next token of the answer's own prompt. This reads that probability, in the NPC's chat
prompt (the benches' Bob persona), for the transcripts whisper-tiny-en wrote in the last
`bench/turn_end.py` run (bench/results/turn_end.json):

  unfinished  the first transcript of every unfinished phrase the server took as a turn of its
              own (the phrase before its pause: what the rule has to judge)
  finished    the transcripts of the finished questions

and prints them sorted, with and without Whisper's final punctuation, and for each threshold
how many of each set it would hold back; and beside it how plausible each transcript reads to
the model (the mean log-probability of its tokens), another signal probed and not used.
docs/voice.md has the 2026-12-01 run.

    .venv/bin/python bench/turn_end.py && .venv/bin/python bench/turn_end_llm.py
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
from turn_end import PERSONA, RESULTS  # the bench whose transcripts are read; it puts src/ on sys.path

from xrserve.models.llm.model import smollm2_path
from xrserve.pipelines.npc import Persona


def transcripts(results: dict) -> dict[str, list[str]]:
    """The texts the end-of-turn rule judged, by what the speaker meant."""
    unfinished = [
        row["transcripts"][0]
        for mode in ("unfinished meaning", "unfinished silence")
        for row in results[mode]
        if len(row["transcripts"]) > 1
    ]
    finished = [
        t for mode in ("finished meaning", "finished silence") for row in results[mode] for t in row["transcripts"]
    ]
    return {"unfinished": sorted(set(unfinished)), "finished": sorted(set(finished))}


def main() -> None:
    import llama_cpp

    if not RESULTS.is_file():
        sys.exit(f"{RESULTS} is missing: run bench/turn_end.py first")
    sets = transcripts(json.loads(RESULTS.read_text()))
    llm = llama_cpp.Llama(str(smollm2_path()), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    (end,) = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    system = Persona(**PERSONA).system_prompt()

    head = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
    n_head = len(llm.tokenize(head.encode(), add_bos=False, special=True))

    def log_softmax(row: int) -> np.ndarray:
        logits = np.asarray(llm.scores[row], dtype=np.float64)
        logits -= logits.max()
        return logits - math.log(np.exp(logits).sum())

    def judged(text: str) -> tuple[float, float]:
        """P(<|im_end|>) after the text, and the mean log-probability of the text's own tokens (how
        plausible it reads: misheard endings read oddly, "Let me think come out.")."""
        tokens = llm.tokenize((head + text).encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        own = [log_softmax(i - 1)[tokens[i]] for i in range(n_head, len(tokens))]
        return math.exp(log_softmax(len(tokens) - 1)[end]), float(np.mean(own))

    scored = sorted(
        (*judged(text), judged(text.rstrip(" .?!…"))[0], kind, text) for kind, texts in sets.items() for text in texts
    )
    print("P(<|im_end|>)  as written / without final punctuation  mean token log-prob  set  transcript")
    for with_punct, plausible, without, kind, text in scored:
        print(f"{with_punct:13.3f} {without:13.3f} {plausible:13.2f}   {kind:10s} {text}")

    def held_back(title: str, column: int, thresholds: tuple[float, ...]) -> None:
        """How many of each set a rule "hold back when `column` of its row is below the threshold" holds."""
        print(f"\n{title}: held back (below it) of unfinished / of finished")
        for threshold in thresholds:
            held = {k: sum(1 for row in scored if row[3] == k and row[column] < threshold) for k in sets}
            print(
                f"  {threshold:.2f}: {held['unfinished']}/{len(sets['unfinished'])} unfinished, "
                f"{held['finished']}/{len(sets['finished'])} finished"
            )

    held_back("P(<|im_end|>)", 0, (0.05, 0.1, 0.2, 0.3, 0.4, 0.5))
    held_back("mean token log-prob", 1, (-5.0, -4.5, -4.0, -3.5, -3.0))


if __name__ == "__main__":
    main()
