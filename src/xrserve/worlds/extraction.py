"""Prompt -> the objects of a scene: what, how many, colour, size, where relative to what, and what they say.

Two extractors produce the same `SceneSpec`:

- `parse_prompt`, a deterministic parser: English scene prompts are mostly lists of noun
  phrases ("three tents, a campfire and a signpost saying Welcome") joined by a few
  prepositions, so number words, colours, sizes, relation phrases and text triggers can be
  read off without a model. It costs well under a millisecond, never invents an object,
  and its mistakes can be fixed by editing a word list. Words it does not know as objects
  are still extracted ("a dragon"), so the matcher can report them as unmatched.
- `extract_with_llm`, a small LLM (`smollm2` by default) constrained by a JSON schema
  (`response_format`), for prompts whose phrasing a word list does not cover. With
  `tight=True` the schema enumerates the asset library's words, bounds counts and string
  lengths, so every answer is usable; `tight=False` is a loose schema kept for comparison
  (bench/worlds_extraction.py, docs/worlds-extraction.md).

The parser also reads edits ("add two lamps next to the tent", "remove two of the tents").
Words stay as the user wrote them (singular, lower case); mapping them to assets is
`matching`'s job, so the two can be measured apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xrserve.core.client import InferenceClient
from xrserve.core.errors import BadRequest, XRServeError
from xrserve.core.request import InferenceRequest, Priority

RELATIONS = ("near", "around", "in_a_row", "on", "at_centre")  # what the layout understands
RelationKind = Literal["near", "around", "in_a_row", "on", "at_centre"]
MAX_COUNT = 50  # of one object: a prompt asking for more is a 400 (the layout's and the GLB's budget)
MAX_OBJECTS = 10  # distinct objects the LLM may list (the tight schema's maxItems)
MAX_TEXT = 40  # characters of a sign's text: what fits legibly on a board
VAGUE_COUNT = 3  # "some", "a few", "several", a bare plural: a small group


class Relation(BaseModel):
    """Where an object goes relative to another (`target` is that object's `word`) or to the scene."""

    model_config = ConfigDict(extra="forbid")

    kind: RelationKind
    target: str | None = None


class ObjectSpec(BaseModel):
    """One kind of object as the prompt names it; `count` copies of it."""

    model_config = ConfigDict(extra="forbid")

    word: str = Field(min_length=1, max_length=60, description="head noun, singular, lower case")
    count: int = Field(1, ge=1, le=MAX_COUNT)
    color: str | None = None
    size: Literal["small", "large"] | None = None
    relation: Relation | None = None
    text: str | None = Field(None, max_length=200, description="what a sign or label says")


class SceneSpec(BaseModel):
    """What a prompt asks for; `setting` is the kind of place ("lakeside camp", "village"), if named."""

    model_config = ConfigDict(extra="forbid")

    objects: list[ObjectSpec] = Field(default_factory=list)
    setting: str | None = None


class RemoveSpec(BaseModel):
    """Objects an edit takes away: `count` of them, or all (None) when it says "all" or a plural without a number."""

    model_config = ConfigDict(extra="forbid")

    word: str = Field(min_length=1, max_length=60)
    count: int | None = Field(None, ge=1, le=MAX_COUNT)


class EditSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[ObjectSpec] = Field(default_factory=list)
    remove: list[RemoveSpec] = Field(default_factory=list)


# -- word lists -------------------------------------------------------------------------------

NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "hundred": 100,
    "thousand": 1000,
}
SINGLE = {"a", "an", "the", "another", "single", "lone", "this", "that", "its", "his", "her", "their", "our", "my"}
VAGUE = {
    "some",
    "few",
    "several",
    "many",
    "various",
    "numerous",
    "lots",
    "plenty",
    "more",
    "multiple",
    "these",
    "those",
}
# "a pile of rocks": the group word is not the object, the count is vague unless a number follows
GROUPS = {
    "couple": 2,
    "pair": 2,
    "dozen": 12,
    "pile": VAGUE_COUNT,
    "stack": VAGUE_COUNT,
    "heap": VAGUE_COUNT,
    "bunch": VAGUE_COUNT,
    "group": VAGUE_COUNT,
    "cluster": VAGUE_COUNT,
    "handful": VAGUE_COUNT,
    "number": VAGUE_COUNT,
    "lot": VAGUE_COUNT,
    "set": VAGUE_COUNT,
    "collection": VAGUE_COUNT,
    "grove": VAGUE_COUNT,
    "stand": VAGUE_COUNT,
    "patch": VAGUE_COUNT,
    "bed": VAGUE_COUNT,
    "row": VAGUE_COUNT,
    "line": VAGUE_COUNT,
    "circle": VAGUE_COUNT,
    "ring": VAGUE_COUNT,
}
GROUP_RELATIONS: dict[str, RelationKind] = {"row": "in_a_row", "line": "in_a_row", "circle": "around", "ring": "around"}
SIZES: dict[str, Literal["small", "large"]] = {
    "small": "small",
    "little": "small",
    "tiny": "small",
    "mini": "small",
    "miniature": "small",
    "short": "small",
    "large": "large",
    "big": "large",
    "huge": "large",
    "giant": "large",
    "enormous": "large",
    "massive": "large",
    "tall": "large",
    "great": "large",
    "gigantic": "large",
    "towering": "large",
}
FALLBACK_COLORS = (
    "red orange yellow green blue purple pink white black grey gray brown golden gold silver"
).split()  # until the asset library's COLORS is there
# adjectives and materials that describe an object without naming it: dropped from the word
ADJECTIVES = set(
    """
    old new ancient abandoned rustic quaint cozy cosy quiet lonely spooky creepy dark bright shiny pretty beautiful
    lovely nice cute dead fallen broken wooden wood stone metal iron steel brick marble glass rusty mossy crooked
    empty full young wild tropical colorful colourful colored coloured painted wide narrow long high low round square
    tidy neat messy dirty clean sturdy rickety wobbly leafy twisted gnarled glowing lit burning blazing crackling
    cheerful peaceful sleepy friendly magic magical mysterious haunted enchanted medieval modern simple fancy
    majestic grand several various other
    """.split()
)
SETTINGS = set(
    """
    scene world place landscape area spot location site camp campsite campground encampment village town hamlet city
    park harbour harbor port marina forest woods wood woodland jungle garden gardens clearing lakeside riverside
    seaside beach coast shore meadow field fields island farm farmyard ranch square plaza courtyard yard backyard
    hill hillside mountain mountains valley countryside glade orchard market marketplace green desert swamp grassland
    edge middle centre center heart corner side
    """.split()
)
GENERIC_PLACES = {
    "scene",
    "world",
    "place",
    "landscape",
    "area",
    "spot",
    "location",
    "site",
    "edge",
    "middle",
    "centre",
}
GENERIC_PLACES |= {"center", "heart", "corner", "side"}
# relation phrases, longest first; each maps to the layout's relation
RELATION_PHRASES: list[tuple[tuple[str, ...], RelationKind | None]] = sorted(
    [
        (("in", "the", "middle"), "at_centre"),
        (("in", "the", "centre"), "at_centre"),
        (("in", "the", "center"), "at_centre"),
        (("at", "the", "centre"), "at_centre"),
        (("at", "the", "center"), "at_centre"),
        (("at", "the", "middle"), "at_centre"),
        (("in", "the", "heart"), "at_centre"),
        (("in", "a", "row"), "in_a_row"),
        (("in", "a", "line"), "in_a_row"),
        (("in", "rows"), "in_a_row"),
        (("in", "a", "circle", "around"), "around"),
        (("in", "a", "ring", "around"), "around"),
        (("in", "a", "circle"), "around"),
        (("in", "a", "ring"), "around"),
        (("lined", "up"), "in_a_row"),
        (("along",), "in_a_row"),
        (("alongside",), "in_a_row"),
        (("lining",), "in_a_row"),
        (("around",), "around"),
        (("round",), "around"),
        (("surrounding",), "around"),
        (("encircling",), "around"),
        (("circling",), "around"),
        (("on", "top", "of"), "on"),
        (("on",), "on"),
        (("onto",), "on"),
        (("upon",), "on"),
        (("atop",), "on"),
        (("next", "to"), "near"),
        (("close", "to"), "near"),
        (("in", "front", "of"), "near"),
        (("at", "the", "foot", "of"), "near"),
        (("on", "the", "edge", "of"), "near"),
        (("leading", "to"), "near"),
        (("near",), "near"),
        (("nearby",), "near"),
        (("beside",), "near"),
        (("besides",), "near"),
        (("by",), "near"),
        (("behind",), "near"),
        (("facing",), "near"),
        (("opposite",), "near"),
        (("under",), "near"),
        (("underneath",), "near"),
        (("beneath",), "near"),
        (("below",), "near"),
        (("above",), "near"),
        (("over",), "near"),
        (("across",), "near"),
        (("between",), "near"),
        (("among",), "near"),
        (("amongst",), "near"),
        (("overlooking",), "near"),
        (("against",), "near"),
        (("outside",), "near"),
        (("at",), "near"),
        (("in",), None),  # "in a park": a setting, not a relation
        (("inside",), None),
        (("within",), None),
        (("into",), None),
        (("from",), None),
        (("to",), None),
        (("for",), None),
        (("toward",), None),
        (("towards",), None),
    ],
    key=lambda item: -len(item[0]),
)
SURROUNDED = {("surrounded", "by"), ("ringed", "by"), ("encircled", "by"), ("circled", "by"), ("lined", "with")}
TEXT_TRIGGERS = sorted(
    [
        ("saying",),
        ("that", "says"),
        ("which", "says"),
        ("says",),
        ("reading",),
        ("that", "reads"),
        ("which", "reads"),
        ("reads",),
        ("named",),
        ("called",),
        ("labelled",),
        ("labeled",),
        ("titled",),
        ("marked",),
        ("pointing", "to"),
        ("with", "the", "words"),
        ("with", "the", "word"),
        ("with", "the", "text"),
        ("with", "the", "name"),
    ],
    key=lambda t: -len(t),
)
# words that end a noun phrase (besides punctuation, relation phrases and text triggers)
BREAKS = set(
    """
    and or with without of plus then also but while as where which that who whose it them there here is are was were
    be being stands stand standing sits sit sitting lies lie lying stood sat has have having full each every all
    so very just maybe please
    """.split()
)
FILLER = set(
    """
    i we you me us want would like need make create generate build show give draw render put place add set design
    imagine please let there is are be a scene with containing featuring including includes include has have having
    can could should
    """.split()
)
ADD_VERBS = {"add", "put", "place", "insert", "include", "plant", "build", "create", "make", "give", "bring", "spawn"}
REMOVE_VERBS = {"remove", "delete", "erase", "destroy", "drop", "clear", "eliminate", "demolish", "kill"}
REMOVE_PHRASES = {("take", "away"), ("get", "rid", "of"), ("take", "out"), ("knock", "down"), ("tear", "down")}
NOT_PLURAL = {"grass", "moss", "glass", "bus", "cactus", "canvas", "chess", "compass", "lotus", "iris", "octopus"}
IRREGULAR = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "geese": "goose",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "sheep": "sheep",
    "deer": "deer",
    "fish": "fish",
    "leaves": "leaf",
    "knives": "knife",
    "wolves": "wolf",
    "shelves": "shelf",
    "loaves": "loaf",
    "dwarves": "dwarf",
    "elves": "elf",
    "scarves": "scarf",
    "cacti": "cactus",
    "fungi": "fungus",
    "benches": "bench",
}


def singular(word: str) -> str:
    """A plural noun's singular by English's regular rules and a few irregular words."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 3 or word in NOT_PLURAL or word.endswith(("ss", "us", "is", "ous")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def is_plural(word: str) -> bool:
    return singular(word) != word and word not in ("sheep", "deer", "fish")


NOUNS_IN_ED_ING = {
    "building",
    "shed",
    "bed",
    "sled",
    "painting",
    "ceiling",
    "swing",
    "spring",
    "ring",
    "king",
    "wing",
    "clearing",
    "crossing",
    "landing",
    "railing",
    "seedling",
    "sapling",
    "dumpling",
    "carving",
    "planting",
    "fencing",
    "paving",
}


def is_verb(word: str) -> bool:
    """ "sleeping", "parked": a participle ends a noun phrase ("a dragon sleeping") or describes the next noun."""
    return len(word) > 4 and word.endswith(("ing", "ed")) and word not in NOUNS_IN_ED_ING


def _adjective_like(word: str) -> bool:
    return word.endswith(("y", "ful", "ous", "ish", "less")) and word not in ("lily", "ivy", "fairy", "lorry", "ferry")


def colors() -> set[str]:
    """The colour words the asset library can paint (its COLORS), else a fixed list."""
    try:
        from xrserve.worlds.assets import COLORS
    except ImportError:
        return set(FALLBACK_COLORS)
    return {name.lower() for name in COLORS}


# -- the parser -------------------------------------------------------------------------------

TOKEN = re.compile(
    r"""(?P<quote>"[^"]{1,200}"|“[^”]{1,200}”|‘[^’]{1,200}’|(?<![\w])'[^']{1,200}'(?!\w))"""
    r"|(?P<number>\d+(?:[.,]\d+)?)"
    r"|(?P<word>[^\W\d_]+(?:['’-][^\W\d_]+)*)"
    r"|(?P<punct>[,.;:!?()\[\]])"
)


@dataclass
class Token:
    text: str  # as written
    low: str  # lower case, quotes stripped
    kind: str  # quote, number, word, punct

    @property
    def word(self) -> str:
        return self.low if self.kind == "word" else ""


def tokens_of(prompt: str) -> list[Token]:
    found = []
    for m in TOKEN.finditer(prompt):
        kind = m.lastgroup or "word"
        text = m.group(kind)
        if kind == "quote":
            text = text[1:-1].strip()
        found.append(Token(text, text.lower().replace("’", "'"), kind))
    return found


class _Parser:
    """One pass over the tokens: noun phrases become objects, the phrases between them relations and texts."""

    def __init__(self, prompt: str) -> None:
        self.tokens = tokens_of(prompt)
        self.i = 0
        self.colors = colors()
        self.objects: list[ObjectSpec] = []
        self.setting: str | None = None
        self.last: ObjectSpec | None = None  # the object a following relation belongs to
        self.named: ObjectSpec | None = None  # the object named last, a relation's target included: texts go there
        self.referred: list[ObjectSpec] = []  # objects first named as "the X" a relation points at

    # token helpers
    def at(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if 0 <= j < len(self.tokens) else None

    def word_here(self) -> str:
        token = self.at()
        return token.word if token is not None else ""

    def words_at(self, phrase: tuple[str, ...], start: int | None = None) -> bool:
        j = self.i if start is None else start
        if j + len(phrase) > len(self.tokens):
            return False
        return all(self.tokens[j + k].word == w for k, w in enumerate(phrase))

    def relation_at(self, start: int | None = None) -> tuple[int, RelationKind | None] | None:
        for phrase, kind in RELATION_PHRASES:
            if self.words_at(phrase, start):
                return len(phrase), kind
        return None

    def trigger_at(self, start: int | None = None) -> int:
        for phrase in TEXT_TRIGGERS:
            if self.words_at(phrase, start):
                return len(phrase)
        return 0

    def parse(self) -> SceneSpec:
        relation: tuple[RelationKind | None, bool] | None = None  # (kind, reversed) waiting for its target
        while self.i < len(self.tokens):
            token = self.tokens[self.i]
            if token.kind == "quote":  # a sign "Bakery": the text of the last object
                self.attach_text(token.text)
                self.i += 1
                continue
            if token.kind == "punct":
                self.i += 1
                continue
            if length := self.trigger_at():
                self.i += length
                self.read_text()
                continue
            surrounded = next((p for p in SURROUNDED if self.words_at(p)), None)
            if surrounded:
                relation = ("around", True)
                self.i += len(surrounded)
                continue
            if (found := self.relation_at()) is not None:
                length, kind = found
                self.i += length
                if kind == "at_centre":
                    if self.last is not None and self.last.relation is None:
                        self.last.relation = Relation(kind="at_centre")
                    self.skip_of_setting()
                    relation = None
                    continue
                relation = (kind, False) if kind is not None else None
                if kind in ("around", "in_a_row") and self.next_is_end():
                    if self.last is not None and self.last.relation is None:
                        self.last.relation = Relation(kind=kind)
                    relation = None
                continue
            if token.word in ("it", "them") and relation is not None:  # "a table with a lantern on it"
                self.i += 1
                if relation[0] is not None and self.last is not None:
                    target = self.group_before_last()
                    if target is not None and self.last.relation is None:
                        self.last.relation = Relation(kind=relation[0], target=target.word)
                relation = None
                continue
            if is_verb(token.word):  # "parked beside", "standing guard": skip to the next phrase
                self.skip_verb_phrase()
                continue
            start = self.i
            phrase = self.noun_phrase()
            if phrase is None:
                self.i = max(self.i, start + 1)
                continue
            obj, is_setting, definite = phrase
            if is_setting:
                relation = None
                continue
            assert obj is not None
            if relation is not None and relation[0] is not None:
                kind, reverse = relation
                if reverse:  # "a campfire surrounded by logs": the logs go around the campfire
                    anchor = self.last
                    if anchor is not None and obj.relation is None:
                        obj.relation = Relation(kind=kind, target=anchor.word)
                    self.add(obj, definite, keep_last=False)
                    relation = None
                    continue
                subject = self.last
                before = len(self.objects)
                known = self.add(obj, definite, keep_last=True)
                if definite and len(self.objects) > before:
                    self.referred.append(known)
                if subject is not None and subject is not known and subject.relation is None:
                    subject.relation = Relation(kind=kind, target=known.word)
                relation = None
                continue
            relation = None
            self.add(obj, definite, keep_last=False)
        return SceneSpec(objects=self.objects, setting=self.setting)

    def skip_verb_phrase(self) -> None:
        self.i += 1
        while (token := self.at()) is not None and token.kind == "word":
            w = token.word
            if w in BREAKS or w in SINGLE or w in NUMBERS or w in VAGUE or self.relation_at() is not None:
                return
            if self.trigger_at() or any(self.words_at(p) for p in SURROUNDED):
                return
            self.i += 1

    def next_is_end(self) -> bool:
        token = self.at()
        return token is None or token.kind == "punct" or token.word in BREAKS

    def skip_of_setting(self) -> None:
        """ "in the middle of the village": the village is the setting."""
        if self.word_here() == "of":
            self.i += 1
            phrase = self.noun_phrase()
            if phrase is not None and phrase[0] is not None and not phrase[1]:
                self.add(phrase[0], phrase[2], keep_last=True)

    def group_before_last(self) -> ObjectSpec | None:
        index = next((k for k, o in enumerate(self.objects) if o is self.last), None)
        return self.objects[index - 1] if index else None

    def add(self, obj: ObjectSpec, definite: bool, keep_last: bool) -> ObjectSpec:
        """Adds a new object, or returns the one already listed under that word ("around the campfire")."""
        self.named = added = self._add(obj, definite, keep_last)
        return added

    def _add(self, obj: ObjectSpec, definite: bool, keep_last: bool) -> ObjectSpec:
        same = next((o for o in self.objects if o.word == obj.word), None)
        if same is not None and (definite or keep_last):
            if obj.text and not same.text:
                same.text = obj.text
            return same
        if same is not None and same.color == obj.color and same.size == obj.size and same.text == obj.text:
            # "two tents ... and three more tents" is one object; "two yellow tents and one green tent" are two
            same.count = min(MAX_COUNT, same.count + obj.count)
            if not keep_last:
                self.last = same
            return same
        self.objects.append(obj)
        if not keep_last:
            self.last = obj
        return obj

    def attach_text(self, text: str) -> None:
        text = " ".join(text.split())[:MAX_TEXT].strip()
        owner = self.named or self.last  # "flowers around a statue called The Thinker": the statue's name
        if text and owner is not None and owner.text is None:
            owner.text = text

    def read_text(self) -> None:
        """What follows `saying`: a quoted string, or the words up to a punctuation mark or a lower-case break."""
        token = self.at()
        if token is None:
            return
        if token.kind == "quote":
            self.attach_text(token.text)
            self.i += 1
            return
        words: list[str] = []
        while (token := self.at()) is not None and token.kind in ("word", "number"):
            lower_break = token.text == token.low and (
                token.low in BREAKS or self.relation_at() is not None or token.low in ("a", "an", "the")
            )
            if words and lower_break:
                break
            words.append(token.text)
            self.i += 1
        self.attach_text(" ".join(words))

    def noun_phrase(self) -> tuple[ObjectSpec | None, bool, bool] | None:
        """(object, is a setting, definite) read from here, or None when no noun starts here."""
        count: int | None = None
        definite = False
        relation: RelationKind | None = None
        seen_quantity = False
        while (token := self.at()) is not None:  # the quantity: "three", "a couple of", "half a dozen", "12"
            w = token.word
            if token.kind == "number":
                value = max(1, int(float(token.text.replace(",", "."))))
                count = value if count is None or count == 1 else count * value
            elif w in NUMBERS:
                count = NUMBERS[w] if count is None or count == 1 else count * NUMBERS[w]
            elif self.words_at(("half", "a", "dozen")):
                count = 6
                self.i += 2
            elif w == "dozen":
                count = 12 * (count or 1)
            elif w in GROUPS and self.words_at((w, "of")):  # "a pile of", "a row of", "a couple of"
                if w in ("couple", "pair"):
                    count = 2
                else:
                    count = count if count is not None and count > 1 else None  # the noun's number decides
                    relation = GROUP_RELATIONS.get(w, relation)
                self.i += 1  # the "of"
            elif w in VAGUE:
                if w != "more":
                    count = count if count is not None and count > 1 else VAGUE_COUNT
            elif w in SINGLE:
                count = 1 if count is None else count
                definite = definite or w not in ("a", "an", "another", "single", "lone")
            elif w == "of" and seen_quantity:  # "lots of", "two of the tents"
                pass
            elif w in FILLER and not seen_quantity:
                self.i += 1
                continue
            else:
                break
            seen_quantity = True
            self.i += 1
        color: str | None = None
        size: Literal["small", "large"] | None = None
        nouns: list[str] = []
        while (token := self.at()) is not None and token.kind == "word":
            w = token.word
            if w in BREAKS or self.trigger_at() or self.relation_at() is not None:
                break
            if any(self.words_at(p) for p in SURROUNDED) or (nouns and is_verb(w)):
                break  # "a dragon sleeping beside": the verb ends the phrase
            if not nouns and w in SIZES:
                size = SIZES[w]
            elif not nouns and w in self.colors:
                color = "grey" if w == "gray" else w
            elif not nouns and (w in ADJECTIVES or w in SINGLE or w in VAGUE or is_verb(w)):
                pass  # "a fallen log", "an abandoned mine cart"
            elif not nouns and w in NUMBERS:
                count = NUMBERS[w] if count is None or count == 1 else count
            else:
                nouns.append(w)
            self.i += 1
        if not nouns:
            return None
        head = nouns[-1]
        if head in SETTINGS or (head in self.colors and len(nouns) > 1 and nouns[-2] in SETTINGS):
            if head not in GENERIC_PLACES:
                self.setting = self.setting or " ".join(n for n in nouns[-2:] if n not in GENERIC_PLACES)
            self.read_contents()
            return None, True, definite
        modifier = nouns[-2] if len(nouns) > 1 else None
        if modifier is not None and (modifier in ADJECTIVES or modifier in self.colors or _adjective_like(modifier)):
            modifier = None  # "mossy boulder"
        word = f"{modifier} {singular(head)}" if modifier else singular(head)
        if count is None:
            count = VAGUE_COUNT if is_plural(head) else 1
        if count > MAX_COUNT:  # the user asked for it: say so, rather than quietly making fewer
            raise BadRequest(f"the prompt asks for {count} of '{singular(head)}'; at most {MAX_COUNT} of one kind")
        obj = ObjectSpec(
            word=word[:60],
            count=max(1, min(MAX_COUNT, count)),
            color=color,
            size=size,
            relation=Relation(kind=relation) if relation else None,
        )
        return obj, False, definite

    def read_contents(self) -> None:
        """ "a field of flowers", "a forest of pines": what fills a setting is an object."""
        if self.word_here() in ("of", "full"):
            while self.word_here() in ("of", "full"):
                self.i += 1
            phrase = self.noun_phrase()
            if phrase is not None and phrase[0] is not None:
                self.add(phrase[0], phrase[2], keep_last=False)


def parse_prompt(prompt: str) -> SceneSpec:
    """The scene a prompt describes, read by rules: deterministic, instant, and it never invents an object."""
    return _Parser(prompt).parse()


# -- edits ------------------------------------------------------------------------------------


def parse_edit(prompt: str) -> EditSpec:
    """An edit of an existing scene: clauses led by add/put/place... or remove/delete/take away...

    "replace the boat with a bridge" removes the one and adds the other. A clause without a
    verb adds ("and two more lamps"), as does a prompt with none at all.
    """
    tokens = tokens_of(prompt)
    clauses: list[tuple[str, list[Token]]] = []
    mode, current = "add", list[Token]()
    i = 0
    while i < len(tokens):
        w = tokens[i].word
        phrase = next((p for p in REMOVE_PHRASES if [t.word for t in tokens[i : i + len(p)]] == list(p)), None)
        if w in REMOVE_VERBS or phrase or w == "replace":
            clauses.append((mode, current))
            mode, current = ("replace" if w == "replace" else "remove"), []
            i += len(phrase) if phrase else 1
            continue
        if w in ADD_VERBS:
            clauses.append((mode, current))
            mode, current = "add", []
            i += 1
            continue
        if mode == "replace" and w == "with":  # "replace the boat with a bridge": what comes after is added
            clauses.append(("remove", current))
            mode, current = "add", []
            i += 1
            continue
        current.append(tokens[i])
        i += 1
    clauses.append((mode if mode != "replace" else "remove", current))
    edit = EditSpec()
    for mode, clause in clauses:
        if not clause:
            continue
        text = " ".join(f'"{t.text}"' if t.kind == "quote" else t.text for t in clause)
        if mode == "add":  # "next to the tent": the tent is already there, it is not added
            parser = _Parser(text)
            spec = parser.parse()
            edit.add.extend(o for o in spec.objects if not any(o is r for r in parser.referred))
        else:
            edit.remove.extend(_removals(clause))
    return edit


def _removals(clause: list[Token]) -> list[RemoveSpec]:
    """ "the boat" -> 1, "two of the tents" -> 2, "all trees" / "the tents" -> all of them."""
    found: list[RemoveSpec] = []
    part: list[Token] = []
    for token in [*clause, Token(",", ",", "punct")]:
        if token.kind == "punct" or token.word in ("and", "or"):
            if part:
                spec = _removal(part)
                if spec is not None:
                    found.append(spec)
            part = []
        else:
            part.append(token)
    return found


def _removal(part: list[Token]) -> RemoveSpec | None:
    objects = parse_prompt(" ".join(t.text for t in part)).objects
    if not objects:
        return None
    words = [t.word for t in part]
    number = next((NUMBERS[w] for w in words if w in NUMBERS), None)
    digits = next((int(t.text) for t in part if t.kind == "number" and t.text.isdigit()), None)
    count = digits or number
    if any(w in ("all", "every", "each", "any") for w in words):
        count = None
    elif count is None:
        head = next((w for w in reversed(words) if w), "")
        count = None if is_plural(head) else 1  # "the tents": all of them; "the boat": that one
    return RemoveSpec(word=objects[0].word, count=min(count, MAX_COUNT) if count else None)


# -- the LLM ----------------------------------------------------------------------------------

INSTRUCTIONS = (
    "You turn a description of a 3D scene into JSON. List every physical object the description names, once per "
    "kind, as the singular noun in `word`, with `count` (the number it says; 1 for a or an; 3 for some or a few). "
    "Add `color` and `size` (small or large) only when the description says them. `relation` places an object: "
    "near, around, in_a_row or on another object (`target` is that object's word), or at_centre of the scene. "
    "`text` is what a sign or label says. `setting` is the kind of place (camp, village, park, forest...)."
)
TIGHT_NOTE = " Use only words from the list of allowed words; use placeholder for an object that is not in it."
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        "a lakeside camp with three tents around a campfire and a signpost saying Welcome",
        {
            "objects": [
                {"word": "tent", "count": 3, "relation": {"kind": "around", "target": "campfire"}},
                {"word": "campfire", "count": 1},
                {"word": "sign", "count": 1, "text": "Welcome"},
            ],
            "setting": "camp",
        },
    ),
    (
        "a small red house next to two pine trees, with a bench in the middle",
        {
            "objects": [
                {
                    "word": "house",
                    "count": 1,
                    "color": "red",
                    "size": "small",
                    "relation": {"kind": "near", "target": "tree"},
                },
                {"word": "tree", "count": 2},
                {"word": "bench", "count": 1, "relation": {"kind": "at_centre", "target": None}},
            ],
            "setting": None,
        },
    ),
]
_TEXT_ONLY: set[str] = set()  # models without a chat template (base models): prompted with plain few-shot text


def vocabulary() -> list[str]:
    """The words the asset library knows (asset names, then categories): the tight schema's enum."""
    try:
        from xrserve.worlds.assets import ASSETS, CATEGORIES
    except ImportError:  # the library is not there yet: its fixed category list
        return list(FALLBACK_CATEGORIES)
    return list(dict.fromkeys([*ASSETS, *CATEGORIES]))


FALLBACK_CATEGORIES = (
    "tree bush flower rock log tent house tower well fence path bridge water campfire sign lamp bench table chair "
    "boat crate barrel cart statue windmill mushroom placeholder"
).split()


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def scene_schema(tight: bool = True) -> dict[str, Any]:
    """The JSON schema the LLM's answer is constrained to (a GBNF grammar is built from it).

    Tight: words from the asset library only, counts 1..MAX_COUNT, at most MAX_OBJECTS
    objects, texts of at most MAX_TEXT characters, colours from the library's list: every
    answer maps to assets and fits the layout. Loose: free strings and integers, as a
    general JSON extractor would ask, kept to measure what the tight one buys.
    """
    if tight:
        words = vocabulary()
        word: dict[str, Any] = {"enum": words}
        target: dict[str, Any] = _nullable({"enum": words})
        count: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}
        color = _nullable({"enum": sorted(colors())})
        size = _nullable({"enum": ["small", "large"]})
        kind: dict[str, Any] = {"enum": list(RELATIONS)}
        text = _nullable({"type": "string", "minLength": 1, "maxLength": MAX_TEXT})
        setting = _nullable({"type": "string", "maxLength": 24})
    else:
        word = target = text = setting = color = size = kind = {"type": "string"}
        target, text, setting, color, size = map(_nullable, (target, text, setting, color, size))
        count = {"type": "integer"}
    relation = _nullable(
        {
            "type": "object",
            "properties": {"kind": kind, "target": target},
            "required": ["kind", "target"],
            "additionalProperties": False,
        }
    )
    item = {
        "type": "object",
        "properties": {"word": word, "count": count, "color": color, "size": size, "relation": relation, "text": text},
        "required": ["word", "count"],
        "additionalProperties": False,
    }
    objects: dict[str, Any] = {"type": "array", "items": item}
    if tight:
        objects.update(minItems=1, maxItems=MAX_OBJECTS)
    return {
        "type": "object",
        "properties": {"objects": objects, "setting": setting},
        "required": ["objects", "setting"],
        "additionalProperties": False,
    }


def llm_messages(prompt: str, tight: bool) -> list[dict[str, str]]:
    """System instructions, two worked examples, then the prompt: the same for every prompt, so the
    LLM's prefix cache reads only the new description."""
    system = INSTRUCTIONS
    if tight:
        system += TIGHT_NOTE + " Allowed words: " + ", ".join(vocabulary()) + "."
    messages = [{"role": "system", "content": system}]
    for example, answer in EXAMPLES:
        messages.append({"role": "user", "content": example})
        messages.append({"role": "assistant", "content": json.dumps(answer)})
    messages.append({"role": "user", "content": prompt})
    return messages


def llm_text_prompt(prompt: str, tight: bool) -> str:
    """The same examples as plain few-shot text, for a model without a chat template (a base model)."""
    lines = [llm_messages("", tight)[0]["content"], ""]
    for example, answer in EXAMPLES:
        lines += [f"Description: {example}", f"JSON: {json.dumps(answer)}", ""]
    lines += [f"Description: {prompt}", "JSON:"]
    return "\n".join(lines)


LLM_MAX_TOKENS = 360  # MAX_OBJECTS objects of ~30 tokens each, and the wrapping


async def extract_with_llm(
    client: InferenceClient, model: str, prompt: str, *, tight: bool = True, session: str | None = None
) -> SceneSpec:
    """The scene an LLM reads from a prompt, its answer constrained by `scene_schema(tight)`.

    Temperature 0, so a prompt gives the same scene every time; BULK priority, since a scene
    is generation work that must not delay a character's speech or a camera frame. A model
    without a chat template is prompted with plain few-shot text instead.
    """
    schema = scene_schema(tight)
    parameters: dict[str, Any] = {
        "max_tokens": LLM_MAX_TOKENS,
        "temperature": 0.0,
        "response_format": {"type": "json_schema", "schema": schema},
    }
    if model not in _TEXT_ONLY:
        messages = llm_messages(prompt, tight)
        try:
            answer = await _generate(
                client, model, json.dumps(messages), {**parameters, "input_format": "chat"}, session
            )
        except XRServeError as exc:
            if "chat_template" not in str(exc):
                raise
            _TEXT_ONLY.add(model)
        else:
            return spec_from_answer(answer)
    return spec_from_answer(await _generate(client, model, llm_text_prompt(prompt, tight), parameters, session))


async def _generate(
    client: InferenceClient, model: str, text: str, parameters: dict[str, Any], session: str | None
) -> str:
    request = InferenceRequest(
        model,
        {"text_input": np.array([text.encode()], dtype=object)},
        parameters=parameters,
        session=session,
        priority=Priority.BULK,
    )
    response = await client.submit(request)
    raw = response.outputs["text_output"].reshape(-1)[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def spec_from_answer(answer: str) -> SceneSpec:
    """A SceneSpec from the LLM's JSON, keeping every object that makes sense and dropping what does not.

    The tight schema's answers always validate; a loose answer may carry a plural word, a
    count of 0 or 500, a size like "medium" or an unknown relation: those fields are
    normalised or dropped one by one rather than losing the whole scene. An answer cut off
    at max_tokens keeps its complete objects.
    """
    data = _loads_salvaged(answer)
    if not isinstance(data, dict):
        return SceneSpec()
    objects: list[ObjectSpec] = []
    for item in data.get("objects") or []:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str) or not item["word"].strip():
            continue
        words = item["word"].strip().lower().split()
        word = " ".join([*words[-2:-1], singular(words[-1])])[:60]
        if any(o.word == word for o in objects):
            continue  # a small model that repeats itself until maxItems: the first mention counts
        count = item.get("count")
        count = max(1, min(MAX_COUNT, count)) if isinstance(count, int) and not isinstance(count, bool) else 1
        color = item.get("color") if isinstance(item.get("color"), str) else None
        size_word = item.get("size") if isinstance(item.get("size"), str) else None
        relation = None
        raw = item.get("relation")
        if isinstance(raw, dict) and raw.get("kind") in RELATIONS:
            target = raw.get("target") if isinstance(raw.get("target"), str) else None
            relation = Relation(kind=raw["kind"], target=singular(target.strip().lower()) if target else None)
        text = item.get("text") if isinstance(item.get("text"), str) and item["text"].strip() else None
        try:
            objects.append(
                ObjectSpec(
                    word=word,
                    count=count,
                    color=color.strip().lower() if color else None,
                    size=SIZES.get(size_word.strip().lower()) if size_word else None,
                    relation=relation,
                    text=text.strip()[:MAX_TEXT] if text else None,
                )
            )
        except ValidationError:
            continue
    setting = data.get("setting")
    return SceneSpec(objects=objects, setting=setting.strip()[:60] or None if isinstance(setting, str) else None)


def _loads_salvaged(answer: str) -> Any:
    try:
        return json.loads(answer)
    except ValueError:
        pass
    end = answer.rfind("}")  # cut off: keep the objects that closed
    while end > 0:
        for suffix in ("]}", "}]}", ""):
            try:
                return json.loads(answer[: end + 1] + suffix)
            except ValueError:
                continue
        end = answer.rfind("}", 0, end)
    return None
