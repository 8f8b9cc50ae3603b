"""French typography puts a no-break space before a colon ("Patient : ..." must not break before the colon
at the end of a line, and screen readers read it as one group): every French string of the pages does,
as ``Formats.label`` does for labels."""

from __future__ import annotations

from pathlib import Path

from babel.messages.pofile import read_po

import inference.api.ui

CATALOGUE = Path(inference.api.ui.__file__).parent / "locale" / "fr" / "LC_MESSAGES" / "ui.po"


def test_no_french_string_has_a_breaking_space_before_a_colon() -> None:
    with CATALOGUE.open("rb") as f:
        catalogue = read_po(f, locale="fr")
    offending = []
    for message in catalogue:
        if not message.id:
            continue  # the header
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        offending += [s for s in strings if s and " :" in s]
    assert offending == []
