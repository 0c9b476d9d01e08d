"""Constraints in a `json_schema` response format that no value can meet, found before generating.

The grammar converter would turn `{"type": "integer", "minimum": 10, "maximum": 5}` into a
grammar for any integer (it drops integer bounds), or an empty `enum` into a grammar that
admits nothing: the model would answer something the schema refuses, or nothing at all.
`impossible_constraint` names the first such constraint so admission answers a 400.

Checked: `minimum`/`maximum` (with `exclusiveMinimum`/`exclusiveMaximum`, numbers or draft-4
booleans) that leave no number, or for an integer no whole number; `minLength` > `maxLength`,
`minItems` > `maxItems`, `minProperties` > `maxProperties`, `minContains` > `maxContains`;
an empty `enum`; `multipleOf` not above 0; a `required` property that `additionalProperties:
false` forbids; bounds that are not numbers. Everywhere a value must match (not under `not`).
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64
COUNT_PAIRS = (
    ("minLength", "maxLength", "characters"),
    ("minItems", "maxItems", "items"),
    ("minProperties", "maxProperties", "properties"),
    ("minContains", "maxContains", "matching items"),
)
_ONE_SCHEMA = ("additionalProperties", "items", "contains", "if", "then", "else", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def impossible_constraint(schema: Any) -> str | None:
    """What in `schema` no value can satisfy, naming where, or None if nothing is found."""
    try:
        _check(schema, [], 0)
    except _Impossible as found:
        return str(found)
    return None


class _Impossible(ValueError):
    pass


def _where(path: list[str]) -> str:
    if not path:
        return "the schema's root"
    return "property '" + "".join(path).lstrip(".") + "'"


def _fail(path: list[str], what: str) -> None:
    raise _Impossible(f"{_where(path)}: {what}")


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:60] + "..."


def _is_number(value: Any) -> bool:
    """A finite JSON number (bool is not one; an int of any size is finite)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_count(value: Any) -> bool:
    """A whole number, 0 or more (JSON Schema allows 2.0 for 2)."""
    return _is_number(value) and value >= 0 and (isinstance(value, int) or value.is_integer())


def _check(schema: Any, path: list[str], depth: int) -> None:
    if not isinstance(schema, dict):
        return  # true / false schemas, or a shape the converter itself refuses
    if depth > MAX_DEPTH:
        _fail(path, f"the schema is nested more than {MAX_DEPTH} levels deep")
    if "enum" in schema:
        enum = schema["enum"]
        if not isinstance(enum, list):
            _fail(path, f"enum is {_show(enum)}; it must be a list of the allowed values")
        if not enum:
            _fail(path, "enum is [], and no value can match an empty enum: list the allowed values, or drop enum")
    _check_numbers(schema, path)
    for low_key, high_key, unit in COUNT_PAIRS:
        low, high = schema.get(low_key), schema.get(high_key)
        for key, value in ((low_key, low), (high_key, high)):
            if value is not None and not _is_count(value):
                _fail(path, f"{key} is {_show(value)}; it must be a whole number of {unit}, 0 or more")
        if low is not None and high is not None and low > high:
            _fail(
                path, f"{low_key} {low} is above {high_key} {high}, so no value can match; make {low_key} ≤ {high_key}"
            )
    if "multipleOf" in schema:
        step = schema["multipleOf"]
        if not (_is_number(step) and step > 0):
            _fail(path, f"multipleOf is {_show(step)}; it must be a number above 0")
    properties = schema.get("properties")
    closed = schema.get("additionalProperties") is False and "patternProperties" not in schema
    if closed and isinstance(schema.get("required"), list):
        declared = properties if isinstance(properties, dict) else {}
        for name in schema["required"]:
            if isinstance(name, str) and name not in declared:
                _fail(
                    path,
                    f"'{name}' is required, but it is not in properties and additionalProperties: false forbids "
                    "it; declare it in properties or drop it from required",
                )
    _recurse(schema, path, depth)


def _check_numbers(schema: dict[str, Any], path: list[str]) -> None:
    bounds: dict[str, float] = {}
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        value = schema.get(key)
        if value is None or (isinstance(value, bool) and key.startswith("exclusive")):
            continue  # draft 4 writes exclusiveMinimum: true beside minimum
        if not _is_number(value):
            _fail(path, f"{key} is {_show(value)}; it must be a finite number")
        bounds[key] = value
    low = _bound(schema, bounds, "minimum", "exclusiveMinimum", max)
    high = _bound(schema, bounds, "maximum", "exclusiveMaximum", min)
    if low is None or high is None:
        return
    (low_value, low_open, low_key), (high_value, high_open, high_key) = low, high
    if low_value > high_value:
        _fail(
            path,
            f"{low_key} {low_value} is above {high_key} {high_value}, so no value can match; "
            f"make {low_key} ≤ {high_key}",
        )
    if low_value == high_value and (low_open or high_open):
        _fail(path, f"{low_key} {low_value} and {high_key} {high_value} leave no value between them")
    kinds = schema.get("type")
    if kinds == "integer" or (isinstance(kinds, list) and kinds and all(k == "integer" for k in kinds)):
        lowest = math.floor(low_value) + 1 if low_open else math.ceil(low_value)
        highest = math.ceil(high_value) - 1 if high_open else math.floor(high_value)
        if lowest > highest:
            _fail(
                path,
                f"{low_key} {low_value} and {high_key} {high_value} leave no whole number between them, "
                "and the type is integer",
            )


def _bound(
    schema: dict[str, Any], bounds: dict[str, float], closed: str, open_: str, tighter: Any
) -> tuple[float, bool, str] | None:
    """The tighter of the closed and the open bound on one side: (value, open?, the keyword that set it)."""
    found: list[tuple[float, bool, str]] = []
    if closed in bounds:
        draft4_open = schema.get(open_) is True  # draft 4: the boolean beside it makes the bound open
        found.append((bounds[closed], draft4_open, f"{closed} (with {open_}: true)" if draft4_open else closed))
    if open_ in bounds:
        found.append((bounds[open_], True, open_))
    if not found:
        return None
    best = tighter(value for value, _, _ in found)
    candidates = [b for b in found if b[0] == best]
    return next((b for b in candidates if b[1]), candidates[0])  # at a tie the open bound is tighter


def _recurse(schema: dict[str, Any], path: list[str], depth: int) -> None:
    for key in _SCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                label = f".{name}" if key == "properties" else f".{key}/{name}"
                _check(child, [*path, label], depth + 1)
    for key in _ONE_SCHEMA:
        child = schema.get(key)
        if isinstance(child, dict):
            label = "[]" if key in ("items", "contains") else f".{key}"
            _check(child, [*path, label], depth + 1)
    for key in _SCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                label = f"[{index}]" if key in ("prefixItems", "items") else f".{key}[{index}]"
                _check(child, [*path, label], depth + 1)
