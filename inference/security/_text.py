"""The characters no text a request gives may hold: one rule for the API's JSON fields, query and path
parameters and the pages' form fields (``inference.api`` answers 422 ``invalid_characters`` naming the
field; the pages show a page that says so).

Refused: the C0 controls but tab, line feed and carriage return (NUL cannot be stored in PostgreSQL text
at all), DEL and the C1 controls U+0080-U+009F (NEL is a line break to log readers and terminals, CSI
starts an escape sequence, and DICOM PN accepts neither), lone surrogates (no text: they cannot be stored
as UTF-8), the line and paragraph separators, and the bidirectional embeddings, overrides and isolates,
which make a name, a reason or a search read other than it is stored (on a page, in an audit review).
Tab and line breaks stay accepted in free text (a reason), never in a one-line value (an identifier).
"""

from __future__ import annotations

import re
from typing import Final

CONTROLS: Final = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
"""The refused characters, as the inside of a regular expression's character class."""
NOT_IN_TEXT: Final = re.compile(f"[{CONTROLS}]")
"""Matches a character that no text value holds (free text: tab and line breaks accepted)."""
NOT_IN_LINE: Final = re.compile(f"[\t\n\r{CONTROLS}]")
"""Matches a character that no one-line value (an identifier, code, name or parameter) holds."""
