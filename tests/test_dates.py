"""Dates, times, periods and durations as KPN writes them (parse_datetime, parse_period,
parse_duration_minutes), and the start and end of a report read from them."""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

import bridge.core.report as report_mod
from bridge.core.models import Envelope, ParsedMail
from bridge.core.report import (
    DEFAULT_RULES,
    extract_report,
    parse_datetime,
    parse_duration_minutes,
    rules_from_config,
)

UTC = timezone.utc
AMS = ZoneInfo("Europe/Amsterdam")
SENT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # Thursday 26 November 2026, 14:00 local


def _mail(text: str, subject: str = "", date_: datetime | None = SENT) -> ParsedMail:
    """A parsed mail from KPN with body ``text``, sent at ``date_`` (default: SENT)."""
    env = Envelope("kpn@example.nl", "KPN", subject, date_, None)
    return ParsedMail(outer=env, original=None, forward=None, text=text)


def _local(y, mo, d, h, mi=0) -> datetime:
    """A Europe/Amsterdam wall time as aware UTC."""
    return datetime(y, mo, d, h, mi, tzinfo=AMS).astimezone(UTC)


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


# --- words, offsets and dotted numbers between a date and its time ----------------------------

# Filler words ("rond", "tussen", "ca.", "uiterlijk") may stand between a date and its time;
# any other word or number after the date is not a time ("versie 2.10", "kabel 12.34 meter").


@pytest.mark.parametrize(
    "text",
    [
        "28-11-2026 tussen 14:00 en 16:00",
        "28 november 2026 rond 14:00 uur",
        "op 28-11-2026 vanaf 14:00",
        "28-11-2026 omstreeks 14.00 uur",
        "28-11-2026 vanaf ca. 14:00",
        "zaterdag 28 november 2026 circa 14:00",
        "28-11-2026 vanmiddag 14:00",
        "28-11-2026 - 14:00",
        "28-11-2026, 14:00 uur",
    ],
)
def test_a_word_between_date_and_time_keeps_the_time(text):
    assert parse_datetime(text) == _local(2026, 11, 28, 14)


def test_a_date_without_a_time_is_still_midnight():
    assert parse_datetime("28-11-2026 (hele dag)") == _local(2026, 11, 28, 0)
    assert parse_datetime("28-11-2026 tot nader order") == _local(2026, 11, 28, 0)


def test_an_iso_offset_with_seconds_is_still_an_offset():
    assert parse_datetime("2026-11-28T09:42:00-05:00") == datetime(2026, 11, 28, 14, 42,
                                                                    tzinfo=UTC)
    assert parse_datetime("Sat, 28 Nov 2026 09:45:00 -0500") == datetime(2026, 11, 28, 14, 45,
                                                                         tzinfo=UTC)


@pytest.mark.parametrize("text, want", [
    ("2026-11-28T09:42-05:00", datetime(2026, 11, 28, 14, 42, tzinfo=UTC)),
    ("2026-11-28t09:42:30-0500", datetime(2026, 11, 28, 14, 42, 30, tzinfo=UTC)),
    ("2026-11-28T09:42+01:00", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
    ("28-11-2026 versie 2.10 uitgerold", _local(2026, 11, 28, 0)),
    ("28-11-2026 kabel 12.34 meter", _local(2026, 11, 28, 0)),
    ("28-11-2026 nummer 1.23", _local(2026, 11, 28, 0)),
    ("28-11-2026 update volgt 12:00", _local(2026, 11, 28, 0)),
    ("28-11-2026 09:42/28-11-2026 10:00", _local(2026, 11, 28, 9, 42)),
    ("28-11-2026 uiterlijk 14:00", _local(2026, 11, 28, 14)),
    ("28-11-2026 's avonds 22:00", _local(2026, 11, 28, 22)),
    ("28-11-2026 ca. 14.00 uur", _local(2026, 11, 28, 14)),
])
def test_dates_with_offsets_and_words_between_date_and_time(text, want):
    assert parse_datetime(text) == want


def test_dotted_dates_are_not_read_as_times():
    assert parse_datetime("28-11-2026 en 29.11.2026") == _local(2026, 11, 28, 0)
    assert report_mod.parse_period("van 01-12-2026 tot 03.12.2026") == (
        _local(2026, 12, 1, 0), _local(2026, 12, 3, 0))
    assert parse_datetime("28-11-2026 09.42.00") == _local(2026, 11, 28, 9, 42)


def test_date_filler_words_come_from_config():
    assert "uiterlijk" in DEFAULT_RULES.date_filler_words
    rules = rules_from_config({"date_filler_words": ["versie"]})
    assert parse_datetime("28-11-2026 versie 14:00", rules=rules) == _local(2026, 11, 28, 14)
    assert parse_datetime("28-11-2026 rond 14:00", rules=rules) == _local(2026, 11, 28, 0)
    r = extract_report(_mail("Starttijd: 28-11-2026 versie 14:00"), rules)
    assert r.start == _local(2026, 11, 28, 14)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [("240 minuten", 240), ("4 uur", 240), ("2,5 uur", 150), ("1 uur en 30 minuten", 90),
     ("90 min", 90), ("1.5 hours", 90), ("2 hours 30 minutes", 150), ("01:30", 90),
     ("120", 120), ("max. 15 minuten", 15), ("geen", None), ("", None), (None, None)],
)
def test_parse_duration_minutes(text, want):
    assert parse_duration_minutes(text) == want


# --- periods: a start and an end in one value -------------------------------------------------


def test_parse_period():
    assert report_mod.parse_period("28-11-2026 00:00 - 06:00") == (_local(2026, 11, 28, 0),
                                                       _local(2026, 11, 28, 6))
    assert report_mod.parse_period("tussen 00:00 en 06:00", default_date=date(2026, 11, 28)) == (
        _local(2026, 11, 28, 0), _local(2026, 11, 28, 6))
    assert report_mod.parse_period("tussen 00:00 en 06:00") == (None, None)
    assert report_mod.parse_period("28-11-2026 09:42") == (_local(2026, 11, 28, 9, 42), None)
    assert report_mod.parse_period("") == (None, None)
    assert report_mod.parse_period("onbekend") == (None, None)


def test_parse_period_is_exported():
    assert "parse_period" in report_mod.__all__


def test_an_iso_offset_in_a_period_is_not_a_range():
    assert report_mod.parse_period("2026-11-28T09:42-05:00") == (
        datetime(2026, 11, 28, 14, 42, tzinfo=UTC), None)


@pytest.mark.parametrize(
    "label, value, start, end",
    [
        ("Periode", "28-11-2026 00:00 - 06:00", (28, 0), (28, 6)),
        ("Periode", "28-11-2026 00:00-06:00", (28, 0), (28, 6)),
        ("Tijdvak", "28-11-2026 00:00 tot 06:00", (28, 0), (28, 6)),
        ("Uitvoering", "van 28-11-2026 00:00 tot 29-11-2026 06:00", (28, 0), (29, 6)),
        ("Periode", "28-11-2026 22:00 \u2013 29-11-2026 04:00", (28, 22), (29, 4)),
        ("Periode", "28-11-2026 22:00 - 04:00", (28, 22), (29, 4)),
        ("Periode", "zaterdag 28 november 2026 tussen 00:00 en 06:00 uur", (28, 0), (28, 6)),
        ("Tijdvak", "28-11-2026 van 01:00 t/m 05:30", (28, 1), (28, 5.5)),
        ("Starttijd", "28-11-2026 00:00 - 06:00", (28, 0), (28, 6)),
        ("Maintenance window", "28-11-2026 00:00 to 06:00", (28, 0), (28, 6)),
    ],
)
def test_time_ranges_give_start_and_end(label, value, start, end):
    r = extract_report(_mail(f"Status: Aangekondigd\n{label}: {value}",
                             subject="Onderhoud Zwolle"))

    def at(dh):
        d, h = dh
        return _local(2026, 11, d, int(h), int(round((h % 1) * 60)))

    assert r.start == at(start)
    assert r.end == at(end)
    assert r.end_expected is False


def test_a_time_only_range_uses_the_date_label_or_the_mail_date():
    r = extract_report(_mail("Datum: 03-12-2026\nTijdvak: tussen 00:00 en 06:00"))
    assert (r.start, r.end) == (_local(2026, 12, 3, 0), _local(2026, 12, 3, 6))
    # maintenance, mail sent on 26 November 14:00: the window is that night
    r = extract_report(_mail("Periode: tussen 23:00 en 05:00", subject="Onderhoud Zwolle"))
    assert (r.start, r.end) == (_local(2026, 11, 26, 23), _local(2026, 11, 27, 5))


def test_an_end_label_wins_over_a_range_end():
    r = extract_report(_mail("Periode: 28-11-2026 00:00 - 06:00\nEindtijd: 28-11-2026 05:00"))
    assert r.end == _local(2026, 11, 28, 5)
    r = extract_report(_mail("Periode: 28-11-2026 00:00 - 06:00\n"
                             "Verwachte eindtijd: 28-11-2026 07:00"))
    assert r.end == _local(2026, 11, 28, 7) and r.end_expected is True
    r = extract_report(_mail("Starttijd: 28-11-2026 01:00\nPeriode: 28-11-2026 00:00 - 06:00"))
    assert (r.start, r.end) == (_local(2026, 11, 28, 1), _local(2026, 11, 28, 6))


def test_a_start_with_a_date_then_a_time_is_not_a_range():
    r = extract_report(_mail("Starttijd: 28-11-2026 - 09:42"))
    assert r.start == _local(2026, 11, 28, 9, 42) and r.end is None
    r = extract_report(_mail("Starttijd: 28-11-2026 09:42 en sindsdien actief"))
    assert r.start == _local(2026, 11, 28, 9, 42) and r.end is None


def test_period_labels_and_separators_come_from_config():
    assert "Periode" in DEFAULT_RULES.period_labels
    rules = rules_from_config({"period_labels": ["Venster"], "period_separators": r"\s*+~\s*+"})
    r = extract_report(_mail("Venster: 28-11-2026 00:00 ~ 06:00"), rules)
    assert (r.start, r.end) == (_local(2026, 11, 28, 0), _local(2026, 11, 28, 6))
    r = extract_report(_mail("Venster: 28-11-2026 00:00 - 06:00"), rules)
    assert (r.start, r.end) == (_local(2026, 11, 28, 0), None)
    with pytest.raises(ValueError, match="parser.period_separators"):
        rules_from_config({"period_separators": "("})


# Period and date labels that are also status or kind words ("Gepland", "Werkzaamheden") or a
# forward header ("Date") are not read as dates.
def test_colliding_period_and_date_labels_are_gone():
    for label in ("Gepland", "Werkzaamheden", "Scheduled"):
        assert label not in DEFAULT_RULES.period_labels
    assert "Date" not in DEFAULT_RULES.date_labels
    r = extract_report(_mail("Omschrijving: Vervanging van een knooppunt.\n"
                             "Date: 01-12-2026\nTijdvak: tussen 00:00 en 06:00\n",
                             subject="Onderhoud Zwolle"))
    # a bare window is on the day the mail was sent, not on a left-over forward header's day
    assert (r.start, r.end) == (_local(2026, 11, 26, 0), _local(2026, 11, 26, 6))
    r = extract_report(_mail("Werkzaamheden: 28-11-2026 00:00 - 06:00\n",
                             subject="Onderhoud Zwolle"))
    assert r.start is None


# --- a report's start and end: bare times -----------------------------------------------------

# A bare end time earlier than the start is on the next day; a bare outage start is never
# after the mail that reports it.


def test_a_start_with_a_word_before_the_time_in_a_report():
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 28 november 2026 rond 14:00 uur"))
    assert r.start == _local(2026, 11, 28, 14)


def test_bare_end_time_before_start_rolls_to_the_next_day():
    r = extract_report(_mail("Starttijd: 28-11-2026 22:00\nVerwachte eindtijd: 02:00"))
    assert r.end == _local(2026, 11, 29, 2)
    assert r.end_expected is True
    r = extract_report(_mail("Starttijd: 28-11-2026 23:30\nEindtijd: 00:15 uur"))
    assert r.end == _local(2026, 11, 29, 0, 15)


def test_bare_end_time_after_start_stays_on_the_day_and_dates_are_kept():
    r = extract_report(_mail("Starttijd: 28-11-2026 09:00\nVerwachte eindtijd: 14:00"))
    assert r.end == _local(2026, 11, 28, 14)
    # an explicit date is never moved, even when it is before the start
    r = extract_report(_mail("Starttijd: 28-11-2026 22:00\nEindtijd: 27-11-2026 02:00"))
    assert r.end == _local(2026, 11, 27, 2)


def test_bare_end_rollover_across_the_dst_change():
    # Summer time ends 25 October 2026 (03:00 CEST -> 02:00 CET).
    r = extract_report(_mail("Starttijd: 24-10-2026 23:00\nVerwachte eindtijd: 04:00"))
    assert r.start == datetime(2026, 10, 24, 21, 0, tzinfo=UTC)
    assert r.end == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)


def test_a_bare_outage_start_is_not_after_the_mail():
    sent = datetime(2026, 11, 28, 23, 10, tzinfo=UTC)  # 29 November 00:10 local
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 23:50", date_=sent))
    assert r.start == _local(2026, 11, 28, 23, 50)
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 00:05", date_=sent))
    assert r.start == _local(2026, 11, 29, 0, 5)


# --- safety: the date, period, status and label patterns stay linear --------------------------

# (the other parser entry points: test_report.py, test_parsers_are_linear_on_long_adversarial_lines)

_N = 100_000

_HOSTILE = [
    "28-11-2026" + " a" * (_N // 2) + " 14:00",
    "28-11-2026 " + "a" * _N + " 14:00",
    "28-11-2026 14:00" + " - 14:00" * (_N // 8),
    "28-11-2026 14:00" + " " * _N + "- x",
    "niet " * (_N // 5) + "opgelost",
    "deels opgelost " * (_N // 15),
    "opgelost" + " " * _N + "(deels",
    "tussen " * (_N // 7) + "00:00",
    "Impact" + " " * _N + ": x",
    "   " + "A " * (_N // 2) + ": x",
]


@pytest.mark.parametrize("i", range(len(_HOSTILE)))
def test_new_patterns_are_linear_on_hostile_lines(i):
    line = _HOSTILE[i]
    calls = {
        "parse_datetime": lambda: parse_datetime(line, default_date=date(2026, 11, 28)),
        "parse_period": lambda: report_mod.parse_period(line, default_date=date(2026, 11, 28)),
        "extract_report": lambda: extract_report(_mail(
            "\n".join(f"{lb}: {line}" for lb in ("Status", "Periode", "Starttijd", "Eindtijd",
                                                   "Plaatsen", "Omschrijving"))
            + "\n" + line, subject=line[:400])),
    }
    for name, call in calls.items():  # CPU time: a busy machine does not make it slower
        t0 = time.process_time()
        call()
        took = time.process_time() - t0
        assert took < 2.0, f"{name} took {took:.1f} s on hostile line {i}"
