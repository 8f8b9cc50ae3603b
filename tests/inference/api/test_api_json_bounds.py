"""JSON bodies: depth measured before parsing, and what RFC 8259 forbids refused with precise codes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.api._errors import InvalidCharacters, MalformedRequest
from inference.api._json import MAX_JSON_DEPTH, json_depth, parse_json


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"name": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),  # brackets inside a string
        ('{"name": "a\\"[[[[", "x": [[]]}', 3),  # an escaped quote does not end the string
        ('["\\\\", [[]]]', 3),  # an escaped backslash does not escape the closing quote
    ],
)
def test_depth_ignores_brackets_in_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=20,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(value=json_values)
@settings(max_examples=200, deadline=None)
def test_depth_matches_the_structure_of_any_document(value: object) -> None:
    assert json_depth(json.dumps(value), limit=1000) == _depth(value)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 30000 + b"]" * 30000, "json_too_deep"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, "json_too_deep"),
        (b"[" * 30000, "json_too_deep"),  # unterminated: refused for its depth before the parser sees it
        (b'{"heart_rate": NaN}', "invalid_json_number"),
        (b'{"heart_rate": -Infinity}', "invalid_json_number"),
        (b'{"heart_rate": 1e400}', "invalid_json_number"),
        (b'{"heart_rate": 60, "heart_rate": 200}', "duplicate_json_key"),
        ('{"a": "\u00e9"}'.encode("utf-16"), "malformed"),
        (b'{"a": 1', "malformed"),
        (b'{"n": ' + b"9" * 5000 + b"}", "malformed"),  # beyond Python's integer-string limit
    ],
)
def test_hostile_bodies_are_refused_with_a_precise_code(raw: bytes, code: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        parse_json(raw)
    assert (caught.value.status_code, caught.value.code) == (400, code)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"patient": {"identifier": "IPP\\u0000X"}}', "patient.identifier"),
        (b'{"a\\u001b": 1}', "(unprintable name)"),  # in a key too, never quoted
        (b'[["\\u007f"]]', "0.0"),
        (b'"\\u0001"', "body"),
        # C1 controls, line and paragraph separators, bidirectional overrides and isolates: every string
        (b'{"sex": "male\\u0085"}', "sex"),
        (b'{"verdicts": [{"verdict": "agree\\u202e"}]}', "verdicts.0.verdict"),
        (b'{"a": "\\u2067x\\u2069"}', "a"),
        (b'{"a": "x\\u2028y"}', "a"),
        (b'{"a": "\\u009b31m"}', "a"),
        (b'{"a\\u202e": 1}', "(unprintable name)"),
        (b'{"a\\n": 1}', "(unprintable name)"),  # a key is one line
    ],
)
def test_control_characters_are_refused_422_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidCharacters) as caught:
        parse_json(raw)
    assert (caught.value.status_code, caught.value.code) == (422, "invalid_characters")
    assert f"Field '{field}' holds a control character" in caught.value.message


def test_bodies_at_the_depth_limit_parse() -> None:
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(raw.decode()) == MAX_JSON_DEPTH
    assert parse_json(b'{"patient": {"identifier": "X"}, "temperature": 38.4}')["temperature"] == 38.4
    assert parse_json(raw) is not None
    assert parse_json(b'{"reason": "line one\\nline two\\ttab"}')["reason"] == "line one\nline two\ttab"
