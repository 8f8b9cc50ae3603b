"""The sentence that refuses a request value holding a character no value holds (422
``invalid_characters``, naming the value's field or parameter, never quoting the value), for JSON fields,
query and path parameters; the characters themselves are :data:`inference.security.NOT_IN_TEXT` and
:data:`inference.security.NOT_IN_LINE`, which the pages' forms refuse too.
"""

from __future__ import annotations

import re
from typing import Final

_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,39}$")
UNPRINTABLE_NAME: Final = "(unprintable name)"


def shown_name(name: str) -> str:
    """``name`` as an error may quote it: a field or parameter name, or ``(unprintable name)`` when it is
    no plain name (it may hold the very characters refused, or a patient's data)."""
    return name if _NAME.match(name) else UNPRINTABLE_NAME


def invalid_characters_message(kind: str, where: str, more: str = "") -> str:
    """The sentence of a 422 ``invalid_characters``: which value (``kind``: ``Field``, ``Query
    parameter`` or ``Path parameter``; and its name) and what is accepted."""
    return (
        f"{kind} '{where}' holds a control character (U+0000-U+001F, U+007F-U+009F) or an invisible "
        "formatting character (a line or paragraph separator, a bidirectional override or isolate); "
        f"send printable text{more}."
    )
