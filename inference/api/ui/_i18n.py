"""Languages of the pages: gettext catalogues (``locale/<lang>/LC_MESSAGES/ui.po``) compiled in memory at
first use, the reader's choice (``?lang=``, then the cookie, then ``Accept-Language``), and numbers and
dates in the locale (Babel's CLDR data).
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import datetime
from pathlib import Path
from typing import Final

LANGUAGES: Final[dict[str, str]] = {"en": "English", "fr": "Français", "ar": "العربية"}
RTL: Final = frozenset({"ar"})
DEFAULT: Final = "en"
LANG_COOKIE: Final = "dxassist_lang"
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
DOMAIN: Final = "ui"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language`` (English: the messages themselves)."""
    if language == DEFAULT:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def from_accept_language(header: str | None) -> str | None:
    """The first language of ``Accept-Language`` that the pages speak, by the header's q-values."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header[:256].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language of a page: an explicit choice, the remembered one, the browser's, else English."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return str(candidate)
    return from_accept_language(accept_language) or DEFAULT


class Formats:
    """Numbers, percentages, dates and durations in one locale (for the templates)."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._t = translations(language)

    def percent(self, value: float | None) -> str:
        """A probability: ``0.873`` → ``87.3%`` (``87,3%`` in French); ``>99.9%`` and ``<0.1%`` at the
        ends, never ``100.0%`` or ``0.0%``, which a model's output cannot mean."""
        if value is None:
            return "–"
        from babel.numbers import format_percent

        if value >= 0.9995:
            return ">" + format_percent(0.999, format="#,##0.0%", locale=self.language)
        if value < 0.0005:
            return "<" + format_percent(0.001, format="#,##0.0%", locale=self.language)
        return format_percent(value, format="#,##0.0%", locale=self.language)

    def label(self, text: str) -> str:
        """``text`` as the label of what follows: ``Patient:`` (``Patient\u00a0:`` in French, whose
        typography puts a no-break space before a colon)."""
        return f"{text}\u00a0:" if self.language == "fr" else f"{text}:"

    def items(self, values: list[str]) -> str:
        """A list in the locale's words: ``A, B and C``, ``A, B et C``, ``A وB وC`` (Arabic joins with
        its own conjunction, never a Latin comma)."""
        from babel.lists import format_list

        return format_list(list(values), style="standard", locale=self.language) if values else ""

    def number(self, value: float | int | None, digits: int = 0) -> str:
        """A decimal number with ``digits`` fraction digits."""
        if value is None:
            return "–"
        from babel.numbers import format_decimal

        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return format_decimal(value, format=pattern, locale=self.language)

    def signed(self, value: float | int | None) -> str:
        """A change with its sign: ``+3``, ``−1``, ``0``."""
        if value is None:
            return "–"
        text = self.number(abs(value))
        return f"+{text}" if value > 0 else (f"−{text}" if value < 0 else text)

    def datetime(self, value: str | datetime | None) -> str:
        """A timestamp (ISO string or datetime) as the locale's medium date, short time and the time zone:
        ``Mar 4, 2026, 10:05 AM UTC``. The month by name: an all-digit short date (``3/4/26``) reads as
        another day to a reader used to the other order, and English pages serve both."""
        if not value:
            return "–"
        from babel.dates import format_date, format_time, get_datetime_format

        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        date = format_date(moment, format="medium", locale=self.language)
        time = format_time(moment, format="short", locale=self.language)
        both = (
            str(get_datetime_format("medium", locale=self.language)).replace("{1}", date).replace("{0}", time)
        )
        return f"{both} {_zone(moment)}"

    def date(self, value: str | None) -> str:
        """A DICOM (``YYYYMMDD``) or ISO date in the locale's medium form."""
        if not value:
            return "–"
        from babel.dates import format_date

        text = value.strip()
        try:
            if len(text) == 8 and text.isdigit():
                moment = datetime(int(text[:4]), int(text[4:6]), int(text[6:]))
            else:
                moment = datetime.fromisoformat(text[:10])
        except ValueError:
            return "–"
        return format_date(moment.date(), format="medium", locale=self.language)

    def waited(self, minutes: float) -> str:
        """A waiting time: ``45 min``, ``3 h 05``, ``2 d 4 h``."""
        total = max(0, int(minutes))
        days, rest = divmod(total, 24 * 60)
        hours, mins = divmod(rest, 60)
        n = self.number
        if days:
            return self._t.gettext("{days} d {hours} h").format(days=n(days), hours=n(hours))
        if hours:
            from babel.numbers import format_decimal

            padded = format_decimal(mins, format="00", locale=self.language)
            return self._t.gettext("{hours} h {minutes}").format(hours=n(hours), minutes=padded)
        return self._t.gettext("{minutes} min").format(minutes=n(mins))


def _zone(moment: datetime) -> str:
    """``UTC``, or the offset from it (``UTC+01:00``) of a timestamp that carries its own; a naive one is
    taken as UTC, as the record stores them."""
    offset = moment.utcoffset()
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"
