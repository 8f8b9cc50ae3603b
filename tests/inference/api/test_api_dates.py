"""Request dates: converted to UTC without overflow, within plausible ranges (the clock is injected)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic_core import PydanticCustomError

from inference.api._dates import CLOCK_SKEW, check_birth_date, check_born_before, check_observed_at

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PLUS_14 = timezone(timedelta(hours=14))
MINUS_14 = timezone(timedelta(hours=-14))


@pytest.mark.parametrize(
    "moment",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_14),  # year 10000 in UTC
        datetime(1, 1, 1, tzinfo=PLUS_14),  # year 0 in UTC
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1899, 12, 31, 23, 59, tzinfo=UTC),
        NOW + CLOCK_SKEW + timedelta(seconds=1),
        datetime(2999, 1, 1, tzinfo=UTC),
    ],
)
def test_implausible_observation_times_are_refused(moment: datetime) -> None:
    with pytest.raises(PydanticCustomError) as caught:
        check_observed_at(moment, now=NOW)
    assert caught.value.type == "implausible_date"
    assert moment.isoformat()[:10] not in caught.value.message()  # the value is never echoed


def test_plausible_observation_times_pass_in_any_zone() -> None:
    for moment in (
        NOW + CLOCK_SKEW,
        NOW.astimezone(PLUS_14),
        NOW.astimezone(MINUS_14),
        datetime(1900, 1, 1, tzinfo=UTC),
    ):
        assert check_observed_at(moment, now=NOW) == moment
    assert check_observed_at(None, now=NOW) is None


def test_birth_dates_in_the_future_or_beyond_150_years_are_refused() -> None:
    # Already 2 December in UTC+14 at noon UTC on 1 December: that birth date is today somewhere.
    assert check_birth_date(date(2026, 12, 2), now=NOW) == date(2026, 12, 2)
    for day in (date(2026, 12, 3), date(2999, 1, 1), date(1875, 12, 31), date(1, 1, 1)):
        with pytest.raises(PydanticCustomError):
            check_birth_date(day, now=NOW)
    assert check_birth_date(date(1876, 1, 1), now=NOW) == date(1876, 1, 1)


def test_an_observation_before_birth_is_refused() -> None:
    check_born_before(datetime(2020, 1, 1, tzinfo=UTC), date(2020, 1, 1))
    check_born_before(datetime(2019, 12, 31, 11, tzinfo=UTC), date(2020, 1, 1))  # already 1 Jan in UTC+14
    with pytest.raises(PydanticCustomError):
        check_born_before(datetime(2019, 12, 31, 9, tzinfo=UTC), date(2020, 1, 1))
