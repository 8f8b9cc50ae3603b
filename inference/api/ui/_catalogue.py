"""The messages of the pages, for the catalogues: what the templates say, and the words they translate
from data (priorities, AI statuses, roles, sexes, verdicts).

``python -m inference.api.ui._catalogue`` prints the msgids missing from each catalogue; the tests fail
when one is missing, so a new label cannot ship untranslated.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from inference.api.ui._i18n import DEFAULT, DOMAIN, LANGUAGES, LOCALE_DIR

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"

DATA_WORDS: Final = (
    # priorities
    "critical", "urgent", "routine",
    # AI statuses
    "analysed", "not assessable", "failed",
    # roles
    "radiologist", "clinician", "pacs", "ml_engineer", "auditor", "admin",
    # sexes as the record keeps them
    "F", "M", "O", "female", "male", "other", "unknown",
    # verdicts
    "agree", "disagree", "correct",
    # durations (inference.api.ui._i18n.Formats.waited)
    "{days} d {hours} h", "{hours} h {minutes}", "{minutes} min",
)  # fmt: skip


def template_messages() -> set[str]:
    """Every msgid the templates pass to ``_()``."""
    from jinja2.ext import babel_extract

    found: set[str] = set()
    options = {"extensions": "jinja2.ext.i18n"}
    for template in sorted(TEMPLATES.glob("*.html")):
        with template.open("rb") as handle:
            for _line, _function, message, _comments in babel_extract(handle, ("_", "gettext"), [], options):
                # Calls with keyword arguments come as (msgid, None, ...).
                text = message[0] if isinstance(message, tuple) else message
                if isinstance(text, str):
                    found.add(text)
    return found


def warning_messages() -> set[str]:
    """The sentences of a result's warnings a page shows in the reader's language, and the demographics
    the identity warning names (:func:`inference.api.ui._views.localised_warning`)."""
    from inference.vocabulary import IDENTITY_FIELDS, WARNING_PHRASES

    return {phrase.text for phrase in WARNING_PHRASES} | set(IDENTITY_FIELDS.values())


def messages() -> set[str]:
    """Every msgid the pages need translated."""
    return template_messages() | set(DATA_WORDS) | warning_messages()


def missing(language: str) -> list[str]:
    """The msgids without a translation in ``language``'s catalogue."""
    from babel.messages.pofile import read_po

    with (LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as handle:
        catalog = read_po(handle, locale=language)
    absent = []
    for message in messages():
        entry = catalog.get(message)
        if entry is None or not entry.string:
            absent.append(message)
    return sorted(absent)


def main() -> int:
    """Print the missing msgids of each catalogue; exit 1 if any."""
    status = 0
    for language in LANGUAGES:
        if language == DEFAULT:
            continue
        for message in missing(language):
            sys.stdout.write(f"{language}: {message!r}\n")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
