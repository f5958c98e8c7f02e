"""Dates, times, periods and durations as KPN writes them (parse_datetime, parse_period,
parse_duration_minutes), and the start and end of a report read from them."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from bridge.core.report import parse_datetime, parse_duration_minutes

UTC = timezone.utc


# --- date and time forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [
        ("28-11-2026 09:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28-11-2026 9:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28/11/2026 09:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28.11.2026 09:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28-11-26 09:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28-11-2026 09.42 uur", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("28 november 2026 om 07:05", datetime(2026, 11, 28, 6, 5, tzinfo=UTC)),
        ("28 nov 2026 07:05", datetime(2026, 11, 28, 6, 5, tzinfo=UTC)),
        ("zaterdag 28 november 2026 07:05", datetime(2026, 11, 28, 6, 5, tzinfo=UTC)),
        ("za 28 nov. 2026 om 09:45", datetime(2026, 11, 28, 8, 45, tzinfo=UTC)),
        ("Saturday, November 28, 2026 9:45 AM", datetime(2026, 11, 28, 8, 45, tzinfo=UTC)),
        ("Sat, Nov 28, 2026 at 9:45 PM", datetime(2026, 11, 28, 20, 45, tzinfo=UTC)),
        ("Sat, 28 Nov 2026 09:45:00 +0100", datetime(2026, 11, 28, 8, 45, tzinfo=UTC)),
        ("28 November 2026 at 09:45:00 CET", datetime(2026, 11, 28, 8, 45, tzinfo=UTC)),
        ("28-11-2026", datetime(2026, 11, 27, 23, 0, tzinfo=UTC)),  # midnight local
        ("2026-11-28", datetime(2026, 11, 27, 23, 0, tzinfo=UTC)),
        ("2026-11-28T09:42", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("2026-11-28T09:42:00+01:00", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("2026-11-28T08:42:00Z", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("2026-07-15 09:42:00+02:00", datetime(2026, 7, 15, 7, 42, tzinfo=UTC)),
        ("28-11-2026 09:42 (geschat)", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
        ("12 mei 2026 12:00", datetime(2026, 5, 12, 10, 0, tzinfo=UTC)),
        ("3 mrt 2026 12:00", datetime(2026, 3, 3, 11, 0, tzinfo=UTC)),
        ("1 okt. 2026 12:00", datetime(2026, 10, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_parse_datetime_forms(text, want):
    got = parse_datetime(text)
    assert got == want
    assert got.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "text",
    ["Onbekend", "", "nog niet bekend", "31-02-2026 10:00", "28-11-2026 25:00",
     "zaterdag", "13/13/2026", "32 november 2026", "de 28ste", "99999-1-1"],
)
def test_parse_datetime_unparsable_is_none(text):
    assert parse_datetime(text) is None


def test_parse_datetime_dst_boundaries():
    # Summer time starts 29 March 2026 02:00 CET -> 03:00 CEST.
    assert parse_datetime("29-03-2026 01:59") == datetime(2026, 3, 29, 0, 59, tzinfo=UTC)
    assert parse_datetime("29-03-2026 03:00") == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # 02:30 does not exist that night: read with the offset from before the change (+01:00).
    assert parse_datetime("29-03-2026 02:30") == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # Summer time ends 25 October 2026 03:00 CEST -> 02:00 CET.
    assert parse_datetime("25-10-2026 01:59") == datetime(2026, 10, 24, 23, 59, tzinfo=UTC)
    assert parse_datetime("25-10-2026 03:00") == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
    # 02:30 happens twice: the first occurrence (still summer time, +02:00) is taken.
    assert parse_datetime("25-10-2026 02:30") == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # Midsummer and midwinter
    assert parse_datetime("15-07-2026 12:00") == datetime(2026, 7, 15, 10, 0, tzinfo=UTC)
    assert parse_datetime("15-01-2026 12:00") == datetime(2026, 1, 15, 11, 0, tzinfo=UTC)


def test_parse_datetime_other_timezone_and_time_only():
    assert parse_datetime("28-11-2026 09:42", "UTC") == datetime(2026, 11, 28, 9, 42, tzinfo=UTC)
    assert parse_datetime("14:00") is None
    assert parse_datetime("14:00", default_date=date(2026, 7, 1)) == datetime(
        2026, 7, 1, 12, 0, tzinfo=UTC)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [("240 minuten", 240), ("4 uur", 240), ("2,5 uur", 150), ("1 uur en 30 minuten", 90),
     ("90 min", 90), ("1.5 hours", 90), ("2 hours 30 minutes", 150), ("01:30", 90),
     ("120", 120), ("max. 15 minuten", 15), ("geen", None), ("", None), (None, None)],
)
def test_parse_duration_minutes(text, want):
    assert parse_duration_minutes(text) == want
