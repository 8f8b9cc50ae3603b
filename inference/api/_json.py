"""Reading JSON request bodies with bounds checked before the parser runs.

Python's ``json`` module recurses once per nesting level: a body of 30 000 ``[`` (30 KB, well under the
size limit) raises ``RecursionError`` deep inside the parser. The nesting depth is therefore measured
first by a linear scan that never recurses, and the parser only runs on bodies within
:data:`MAX_JSON_DEPTH`. The parse itself refuses what RFC 8259 does not allow but Python accepts
(``NaN``, ``Infinity``), numbers that overflow a double (``1e400`` would become ``inf``), and keys given
twice in one object (which value wins differs between parsers: a classic smuggling trick).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from inference.api._errors import InvalidCharacters, MalformedRequest
from inference.api._text import UNPRINTABLE_NAME, shown_name
from inference.security import NOT_IN_LINE, NOT_IN_TEXT

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting of arrays and objects accepted in a JSON body (the API's own bodies need 4)."""

# In a string, an escape is consumed whole so that an escaped quote does not end it; outside strings,
# only brackets and quotes matter. Every match is one or two bytes: the scan is linear in the body.
_STRUCTURE: Final = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class JsonTooDeep(MalformedRequest):
    """The JSON body nests arrays and objects deeper than :data:`MAX_JSON_DEPTH` (HTTP 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The JSON body nests arrays and objects more than {limit} levels deep; "
            "the API's request bodies need far fewer.",
            code="json_too_deep",
        )


def json_depth(text: str, *, limit: int = MAX_JSON_DEPTH) -> int:
    """The deepest nesting of arrays and objects in ``raw``, counting stops just past ``limit``.

    Brackets inside strings do not count. ``text`` need not be valid JSON: the parser judges that later;
    up to its first syntax error the parser nests exactly as deep as counted here.

    Args:
        text: The request body, decoded.
        limit: Counting stops once the depth exceeds this (the body is refused anyway).

    Returns:
        The maximum depth reached, at most ``limit + 1``.
    """
    depth = deepest = 0
    in_string = False
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue
        elif token in ("[", "{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _constant(name: str) -> Any:
    raise MalformedRequest(
        f"The JSON body holds '{name}', which is not JSON (RFC 8259); send numbers as finite values.",
        code="invalid_json_number",
    )


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedRequest(
            "The JSON body holds a number too large to represent; send values in their plausible range.",
            code="invalid_json_number",
        )
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # The key itself is a field name the caller chose, never a value: safe to quote (shortened).
            shown = re.sub(r"[^A-Za-z0-9_.-]", "?", key[:40])
            raise MalformedRequest(
                f"The JSON body gives the key '{shown}' twice in one object; give each key once.",
                code="duplicate_json_key",
            )
        out[key] = value
    return out


def parse_json(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON request body after checking its nesting depth.

    Args:
        raw: The body (its size is already bounded by the request body limit).
        max_depth: Deepest nesting accepted.

    Returns:
        The decoded value.

    Raises:
        JsonTooDeep: Nesting deeper than ``max_depth`` (400 ``json_too_deep``).
        MalformedRequest: Not JSON (400 ``malformed``), ``NaN``/``Infinity`` or an overflowing number
            (400 ``invalid_json_number``), or a key repeated in one object (400 ``duplicate_json_key``).
        InvalidCharacters: A string holds a character no text value holds (a C0 control other than tab
            and line breaks, DEL, a C1 control, a line or paragraph separator, a bidirectional override or
            isolate), or a key a tab or line break too (422 ``invalid_characters``, naming the field).
    """
    try:
        # RFC 8259: JSON between systems is UTF-8. Decoding first also keeps the depth scan honest (in
        # UTF-16, a byte 0x22 can be half of another character).
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedRequest("The request body is not UTF-8 text; send JSON encoded in UTF-8.") from e
    if json_depth(text, limit=max_depth) > max_depth:
        raise JsonTooDeep(max_depth)
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, object_pairs_hook=_object)
    except MalformedRequest:
        raise
    except (ValueError, RecursionError) as e:
        # RecursionError cannot happen within the depth limit; caught anyway so no parser path can 500.
        raise MalformedRequest("The request body is not valid JSON; send a JSON object.") from e
    where = _control_at(value, ())
    if where is not None:
        # 422 naming the field, as the schemas answer a one-line value holding a line break.
        raise InvalidCharacters("Field", ".".join(where) or "body")
    return value


# Every string refuses what no text value holds (inference.security._text: C0 controls but tab and line
# breaks, DEL, C1 controls, line and paragraph separators, bidirectional embeddings, overrides and
# isolates, lone surrogates), so a field declared without the schemas' Line/Text annotation, or one no
# schema declares, refuses them too: a NUL in an identifier would be filed and then break PostgreSQL, and
# a bidi override makes a value read other than it is stored. Free text keeps its tab and line breaks; a
# one-line value refuses those in its schema (Line). A key is a field's name: one line.
_CONTROL: Final = NOT_IN_TEXT
_KEY_CONTROL: Final = NOT_IN_LINE


def _control_at(value: Any, where: tuple[str, ...]) -> tuple[str, ...] | None:
    """Where the first string (key or value) of ``value`` holding a control character is, as the names
    and list positions leading to it (``("verdicts", "0", "code")``), or None; depth is bounded."""
    if isinstance(value, str):
        return where if _CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _KEY_CONTROL.search(key):
                return (*where, UNPRINTABLE_NAME)
            found = _control_at(item, (*where, shown_name(key)))
            if found is not None:
                return found
    if isinstance(value, list):
        for position, item in enumerate(value):
            found = _control_at(item, (*where, str(position)))
            if found is not None:
                return found
    return None
