"""Plausible dates in request bodies: checked where they enter, with the time zone taken into account.

A syntactically valid timestamp can still be absurd or dangerous: ``9999-12-31T23:59:59-14:00`` is year
10000 in UTC (Python raises ``OverflowError`` converting it), ``0001-01-01T00:00:00+14:00`` is year 0,
an observation dated next year would sort at the top of a trend, and a birth date in 2999 makes an age
negative. Each is refused with the code ``implausible_date`` (HTTP 422) and a sentence naming the field
and the accepted range; the value itself is never echoed (a birth date is patient data).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from pydantic_core import PydanticCustomError

IMPLAUSIBLE_DATE: Final = "implausible_date"
EARLIEST_OBSERVATION: Final = datetime(1900, 1, 1, tzinfo=UTC)
"""No vital-sign observation the service could triage predates this."""
CLOCK_SKEW: Final = timedelta(minutes=10)
"""How far in the future an observation time may be: the sender's clock may run a little ahead."""
OLDEST_AGE_YEARS: Final = 150
"""A birth date more than this many years ago is a typing error (the oldest recorded human reached 122)."""
_LATEST_ZONE: Final = timedelta(hours=14)  # UTC+14 (Line Islands): the first place where a day begins


def _refuse(field: str, accepted: str) -> PydanticCustomError:
    return PydanticCustomError(
        IMPLAUSIBLE_DATE,
        "'{field}' is outside the plausible range; {accepted}.",
        {
            "field": field,
            "accepted": accepted,
        },
    )


def in_utc(value: datetime, field: str) -> datetime:
    """``value`` converted to UTC, refused when the conversion leaves the representable years 1 to 9999."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise _refuse(field, "it falls outside the years 1 to 9999 once converted to UTC") from e


def check_observed_at(value: datetime | None, *, now: datetime | None = None) -> datetime | None:
    """Refuse an observation time before 1900 or more than :data:`CLOCK_SKEW` in the future.

    Raises:
        PydanticCustomError: ``implausible_date``.
    """
    if value is None:
        return None
    moment = in_utc(value, "observed_at")
    latest = (now or datetime.now(UTC)) + CLOCK_SKEW
    if not EARLIEST_OBSERVATION <= moment <= latest:
        raise _refuse(
            "observed_at",
            "send the time the signs were measured, with its time zone, between 1900 and now",
        )
    return value


def check_birth_date(value: date | None, *, now: datetime | None = None) -> date | None:
    """Refuse a birth date in the future (anywhere on Earth) or more than 150 years ago.

    Raises:
        PydanticCustomError: ``implausible_date``.
    """
    if value is None:
        return None
    current = now or datetime.now(UTC)
    latest = (current + _LATEST_ZONE).date()
    earliest = date(latest.year - OLDEST_AGE_YEARS, 1, 1)
    if not earliest <= value <= latest:
        raise _refuse(
            "patient.birth_date",
            f"a birth date is at most {OLDEST_AGE_YEARS} years ago and not in the future",
        )
    return value


def check_born_before(observed_at: datetime | None, birth_date: date | None) -> None:
    """Refuse an observation made before the patient was born (compared in the latest time zone).

    Raises:
        PydanticCustomError: ``implausible_date``.
    """
    if observed_at is None or birth_date is None:
        return
    # Local dates run up to 14 hours ahead of UTC: compare with the latest local date the moment had.
    if (in_utc(observed_at, "observed_at") + _LATEST_ZONE).date() < birth_date:
        raise _refuse("observed_at", "an observation cannot precede the patient's birth date")
