"""JSON schemas no answer can match are found before generating, naming where (models/llm/schema_check.py)."""

from __future__ import annotations

import pytest

from xrserve.models.llm.model import enforceable
from xrserve.models.llm.schema_check import impossible_constraint

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 0, "maxItems": 2},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "schema",
    [
        PERSON,
        {"type": "integer", "minimum": 5, "maximum": 5},  # one value
        {"type": "number", "minimum": 1.2, "maximum": 1.8},  # numbers between, if no integers
        {"type": "integer", "minimum": 4, "exclusiveMinimum": False, "maximum": 4},  # draft 4, closed
        {"not": {"type": "integer", "minimum": 3, "maximum": 1}},  # under `not` it is no constraint
        {"type": "object", "required": ["x-1"], "additionalProperties": False, "patternProperties": {"^x-": {}}},
        {"minimum": 10**30, "maximum": 10**31},
        True,
    ],
)
def test_schemas_that_can_be_met_pass(schema) -> None:
    assert impossible_constraint(schema) is None


@pytest.mark.parametrize(
    "schema, words",
    [
        ({"type": "integer", "minimum": 10, "maximum": 5}, "the schema's root: minimum 10 is above maximum 5"),
        ({"type": "integer", "minimum": 1.2, "maximum": 1.8}, "leave no whole number between them"),
        ({"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 2}, "leave no value between them"),
        (
            {"type": "integer", "minimum": 4, "exclusiveMinimum": True, "maximum": 4},
            "minimum (with exclusiveMinimum: true) 4 and maximum 4",
        ),
        ({"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 5}, "no whole number"),
        ({"properties": {"a": {"properties": {"b": {"minLength": 3, "maxLength": 2}}}}}, "property 'a.b': minLength"),
        ({"properties": {"list": {"items": {"enum": []}}}}, "property 'list[]': enum is []"),
        ({"prefixItems": [{}, {"minItems": 2, "maxItems": 1}]}, "property '[1]': minItems 2 is above maxItems 1"),
        ({"anyOf": [{"minProperties": 3, "maxProperties": 0}]}, "property 'anyOf[0]': minProperties 3"),
        ({"$defs": {"P": {"minimum": "1"}}}, "property '$defs/P': minimum is '1'; it must be a finite number"),
        ({"minimum": float("nan")}, "minimum is nan; it must be a finite number"),
        ({"maxLength": -1}, "maxLength is -1; it must be a whole number of characters"),
        ({"minItems": 1.5}, "minItems is 1.5"),
        ({"multipleOf": 0}, "multipleOf is 0; it must be a number above 0"),
        ({"enum": "a"}, "enum is 'a'; it must be a list"),
        (
            {"required": ["id"], "properties": {"name": {}}, "additionalProperties": False},
            "'id' is required, but it is not in properties",
        ),
    ],
)
def test_impossible_constraints_are_named(schema, words: str) -> None:
    found = impossible_constraint(schema)
    assert found is not None and words in found, found


def test_a_schema_nested_without_end_is_refused_not_a_recursion_error() -> None:
    schema: dict = {}
    inner = schema
    for _ in range(200):
        inner["items"] = {}
        inner = inner["items"]
    found = impossible_constraint(schema)
    assert found is not None and "nested more than 64 levels" in found


@pytest.mark.parametrize(
    "bounds, members",
    [
        ({"minimum": 5, "maximum": 8}, [5, 6, 7, 8]),
        ({"minimum": 5, "exclusiveMinimum": True, "maximum": 8, "exclusiveMaximum": True}, [6, 7]),  # draft 4
        ({"exclusiveMinimum": 5.5, "exclusiveMaximum": 8.5}, [6, 7, 8]),
        ({"minimum": 10, "exclusiveMinimum": 3, "maximum": 12}, [10, 11, 12]),  # the tighter bound wins
    ],
)
def test_integer_ranges_become_the_enum_the_grammar_enforces(bounds: dict, members: list[int]) -> None:
    """exclusiveMinimum: true (draft 4) was read as the number 1: the grammar allowed 2, 3, 4 below a minimum of 5."""
    assert enforceable({"type": "integer", **bounds}) == {"enum": members}
