"""Would an audio end-of-turn model separate unfinished phrases from finished questions here?

Smart Turn v3.2 (Daily, BSD-2-Clause) is the open audio end-of-turn model that ships its weights in a
wheel: `pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx` in `pipecat-ai`. It reads the last
8 s of a turn (Whisper log-mel features) and gives the probability that the turn is complete, from
prosody and words together. Not a dependency (pipecat-ai brings numba and a dozen more): this bench
reads the model file and its feature code from the wheel itself, without installing it:

    .venv/bin/pip download --no-deps pipecat-ai==1.14.0 -d /tmp/wheels
    .venv/bin/python bench/turn_end_smart_turn.py --wheel /tmp/wheels/pipecat_ai-1.14.0-py3-none-any.whl

It scores the first parts of bench/turn_end.py's unfinished phrases and its finished questions, as
espeak-ng speaks them at the bench's three speeds, with `--tail` seconds of silence after the speech
(the silence a turn decision would have heard). With `bench/results/turn_end_held_out.json` from
`bench/turn_end.py --held-out` it also says which of that run's cut-offs the model would have held back,
and which finished questions it would have delayed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from turn_end import (  # noqa: E402 - after the sys.path line above
    FINISHED,
    HELD_OUT_FINISHED,
    HELD_OUT_RESULTS,
    HELD_OUT_UNFINISHED,
    RATE,
    SPEEDS,
    UNFINISHED,
    silence,
    spoken,
)

MODEL = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
FEATURES = "pipecat/audio/turn/smart_turn/_whisper_features.py"
WINDOW_S = 8


class SmartTurn:
    """The model and its own feature code, read out of the wheel (nothing of pipecat is imported)."""

    def __init__(self, wheel: Path, directory: Path) -> None:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(MODEL, directory)
            archive.extract(FEATURES, directory)
        spec = importlib.util.spec_from_file_location("smart_turn_features", directory / FEATURES)
        assert spec is not None and spec.loader is not None
        self.features = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.features)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(directory / MODEL), options)

    def complete(self, speech: np.ndarray, tail_s: float) -> float:
        """P(the turn is complete) after `speech` and `tail_s` of silence, as pipecat computes it."""
        audio = np.concatenate([silence(0.3), speech, silence(tail_s)])[-WINDOW_S * RATE :]
        audio = np.pad(audio, (WINDOW_S * RATE - len(audio), 0))
        log_mel = self.features.compute_whisper_log_mel_features(audio, do_normalize=True)
        return float(self.session.run(None, {"input_features": log_mel[None].astype(np.float32)})[0].ravel()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, required=True, help="pipecat-ai's wheel (pip download --no-deps)")
    parser.add_argument("--tail", type=float, default=0.2, help="seconds of silence after the speech")
    parser.add_argument("--threshold", type=float, default=0.5, help="complete above this probability")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="smart-turn-"))
    model = SmartTurn(args.wheel, directory)

    @functools.cache  # the held-out run's phrases are scored again below, at the speeds already done
    def score(text: str, speed: int) -> float:
        return model.complete(spoken(text, speed, directory), args.tail)

    print(f"smart-turn-v3.2, {args.tail:g} s of silence after the speech, complete above {args.threshold:g}")
    sets = {"in-sample": (UNFINISHED, FINISHED), "held-out": (HELD_OUT_UNFINISHED, HELD_OUT_FINISHED)}
    for name, (unfinished, finished) in sets.items():
        cut = [(first, s) for first, _ in unfinished for s in SPEEDS if score(first, s) > args.threshold]
        held = [(text, s) for text in finished for s in SPEEDS if score(text, s) <= args.threshold]
        print(f"{name}: unfinished judged complete {len(cut)} of {len(unfinished) * len(SPEEDS)}, "
              f"finished judged incomplete {len(held)} of {len(finished) * len(SPEEDS)}")  # fmt: skip

    if not HELD_OUT_RESULTS.exists():
        return
    run = json.loads(HELD_OUT_RESULTS.read_text())
    print(f"beside the text rule's run in {HELD_OUT_RESULTS.relative_to(BENCH.parent)}:")
    cuts = [r for r in run["unfinished meaning"] if r["cut"]]
    saved = [r for r in cuts if score(r["text"].split(" / ")[0], r["wpm"]) <= args.threshold]
    print(f"  of its {len(cuts)} cut-offs the model holds back {len(saved)}: {[r['text'] for r in saved]}")
    quick = [r for r in run["finished meaning"] if r["ended_by"] == ["finished"]]
    delayed = [r for r in quick if score(r["text"], r["wpm"]) <= args.threshold]
    print(f"  of its {len(quick)} finished questions taken at once it delays {len(delayed)}: "
          f"{[r['text'] for r in delayed]}")  # fmt: skip


if __name__ == "__main__":
    main()
