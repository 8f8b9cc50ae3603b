"""Column types and time helpers shared by the ORM, the result views and the FHIR views."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type, so values are stored as naive UTC there and made aware again on
    the way out; PostgreSQL stores ``timestamptz``. A naive value handed in is refused: a time without
    a zone is ambiguous, and the record is read across sites.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("Timestamps stored in the record must be timezone-aware.")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value  # the driver's datetime (naive from SQLite)
        if stored.tzinfo is None:
            return stored.replace(tzinfo=UTC)
        return stored.astimezone(UTC)


def new_id() -> str:
    """A new resource id: a UUID4 string, which is also a valid FHIR id."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken as UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix (valid as a FHIR ``instant`` and ``dateTime``)."""
    text = as_utc(value).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def fhir_date(value: str | None) -> str | None:
    """A DICOM ``YYYYMMDD`` or ISO ``YYYY-MM-DD`` date as a FHIR date, ``None`` when unusable."""
    if not value:
        return None
    text = value.strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return None
    return text


def age_at(birth_date: str | None, at: datetime) -> int | None:
    """Age in whole years at ``at`` of an ISO birth date (None when unknown, malformed or implausible)."""
    if not birth_date:
        return None
    try:
        born = date.fromisoformat(birth_date)
    except ValueError:
        return None
    years = at.year - born.year - ((at.month, at.day) < (born.month, born.day))
    return years if 0 <= years < 150 else None
