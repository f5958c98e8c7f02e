"""iCalendar parts (core.calendar): the maintenance window a carrier sends as an invitation,
with the maintenance-notification BCOP's X-MAINTNOTE-* properties, read with icalendar; the
report takes from it what its text leaves open.

Golden cases: tests/golden/calendar/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bridge.core.calendar import MAX_CALENDAR_BYTES, complete_report, read_calendar
from bridge.core.models import CalendarFacts, OutageReport
from mail_golden import cases, check

UTC = timezone.utc


@pytest.mark.parametrize("case", cases("calendar"))
def test_golden(case):
    check("calendar", case)


def test_f08_window_comes_from_the_calendar():
    """do 3 dec 00:00-06:00 local time (23:00-05:00 UTC)."""
    got = check("calendar", "f08-onderhoud-agenda")
    report = got["report"]
    assert got["outcome"] == "queued" and report["kind"] == "onderhoud"
    assert report["status"] == "aangekondigd" and report["ticket"] == "CT00055500008"
    assert (report["start"], report["end"]) == ("2026-12-02T23:00:00+00:00",
                                                "2026-12-03T05:00:00+00:00")


def test_ticket_and_status_only_in_the_calendar():
    report = check("calendar", "c01-bcop-en-ticket-only-in-calendar")["report"]
    assert report["ticket"] == "CT00055800001" and report["status"] == "aangekondigd"
    assert report["kind"] == "onderhoud"
    assert report["start"] == "2026-12-04T00:00:00+00:00"  # 01:00 Europe/Amsterdam


def test_a_cancelled_calendar_cancels():
    assert check("calendar", "c02-geannuleerd-method-cancel")["report"]["status"] == "geannuleerd"


def test_windows_time_zone_names_in_an_ics_attachment():
    report = check("calendar", "c03-ics-bijlage-windows-tijdzone")["report"]
    assert (report["start"], report["end"]) == ("2026-12-04T23:00:00+00:00",
                                                "2026-12-05T03:00:00+00:00")


def test_the_text_wins_over_the_calendar():
    report = check("calendar", "c04-tekst-wint-van-agenda")["report"]
    assert (report["start"], report["end"]) == ("2026-12-03T00:00:00+00:00",
                                                "2026-12-03T02:00:00+00:00")


# --- read_calendar ------------------------------------------------------------------------------


def cal(*event: str, method: str = "REQUEST", extra: str = "") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
            + (f"METHOD:{method}\r\n" if method else "") + extra
            + "BEGIN:VEVENT\r\n" + "".join(f"{line}\r\n" for line in event)
            + "END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_bcop_properties():
    facts = read_calendar(cal(
        "UID:m-1@kpn.example", "SEQUENCE:3", "DTSTART:20261203T000000Z",
        "DTEND:20261203T040000Z", "SUMMARY:Onderhoud", "LOCATION:Zwolle",
        "X-MAINTNOTE-PROVIDER:kpn.example", "X-MAINTNOTE-ACCOUNT:CBG-1",
        "X-MAINTNOTE-MAINTENANCE-ID:CT1", "X-MAINTNOTE-OBJECT-ID:c1", "X-MAINTNOTE-OBJECT-ID:c2",
        "X-MAINTNOTE-IMPACT:outage", "X-MAINTNOTE-STATUS:IN-PROCESS"))
    assert facts == CalendarFacts(
        start=datetime(2026, 12, 3, 0, 0, tzinfo=UTC), end=datetime(2026, 12, 3, 4, 0, tzinfo=UTC),
        summary="Onderhoud", location="Zwolle", status="update", ticket="CT1",
        uid="m-1@kpn.example", sequence=3, method="REQUEST", provider="kpn.example",
        account="CBG-1", impact="OUTAGE", objects=("c1", "c2"), maintenance=True, events=1)


@pytest.mark.parametrize("lines, status", [
    (["X-MAINTNOTE-STATUS:TENTATIVE"], "aangekondigd"),
    (["X-MAINTNOTE-STATUS:CONFIRMED"], "aangekondigd"),
    (["X-MAINTNOTE-STATUS:CANCELLED"], "geannuleerd"),
    (["X-MAINTNOTE-STATUS:COMPLETED"], "opgelost"),
    (["STATUS:CANCELLED"], "geannuleerd"),
    (["STATUS:CONFIRMED"], "aangekondigd"),
    (["X-MAINTNOTE-STATUS:CONFIRMED", "STATUS:CANCELLED"], "aangekondigd"),  # BCOP first
    ([], None),
])
def test_status(lines, status):
    assert read_calendar(cal("UID:u", "DTSTART:20261203T000000Z", *lines)).status == status


def test_method_cancel_is_always_cancelled():
    facts = read_calendar(cal("UID:u", "DTSTART:20261203T000000Z", "STATUS:CONFIRMED",
                              method="CANCEL"))
    assert facts.status == "geannuleerd" and facts.method == "CANCEL"


def test_floating_times_dates_and_durations_in_the_zone():
    facts = read_calendar(cal("UID:u", "DTSTART:20260628T020000", "DURATION:PT2H"))
    assert facts.start == datetime(2026, 6, 28, 0, 0, tzinfo=UTC)  # summer time
    assert facts.end == facts.start + timedelta(hours=2)
    facts = read_calendar(cal("UID:u", "DTSTART;VALUE=DATE:20261203", "DTEND;VALUE=DATE:20261204"))
    assert facts.start == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    facts = read_calendar(cal("UID:u", "DTSTART:20261203T020000"), tz="UTC")
    assert facts.start == datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def test_the_earliest_of_several_events():
    text = cal("UID:b", "DTSTART:20261205T000000Z").replace(
        "END:VCALENDAR", "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20261204T000000Z\r\nEND:VEVENT\r\n"
                         "END:VCALENDAR")
    facts = read_calendar(text)
    assert facts.uid == "a" and facts.events == 2


@pytest.mark.parametrize("text", [
    "", "garbage", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    cal("UID:u", "SUMMARY:no start"), cal("UID:u", "DTSTART:2026xx"),
    cal("UID:u", "DTSTART:20261203T000000Z", "DESCRIPTION:" + "x" * MAX_CALENDAR_BYTES),
])
def test_unreadable_calendars_give_nothing(text):
    assert read_calendar(text) is None


def test_an_end_before_the_start_is_dropped():
    facts = read_calendar(cal("UID:u", "DTSTART:20261203T050000Z", "DTEND:20261203T010000Z"))
    assert facts.start is not None and facts.end is None


# --- complete_report ---------------------------------------------------------------------------------


def report(**kw) -> OutageReport:
    base = dict(ticket=None, kind="storing", status=None, subject="s")
    return OutageReport(**{**base, **kw})


START, END = datetime(2026, 12, 3, 0, 0, tzinfo=UTC), datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
FACTS = CalendarFacts(start=START, end=END, status="aangekondigd", ticket="CT9", uid="u",
                      maintenance=True)


def test_the_calendar_fills_what_the_text_left_open():
    r = complete_report(report(), FACTS)
    assert (r.start, r.end, r.ticket, r.status, r.kind) == (START, END, "CT9", "aangekondigd",
                                                            "onderhoud")
    assert not r.end_expected


def test_the_text_keeps_what_it_says():
    mine = report(ticket="CT1", status="geannuleerd", kind="onderhoud",
                  start=START + timedelta(hours=1), end=END + timedelta(hours=1))
    assert complete_report(mine, FACTS) == mine


def test_an_end_is_taken_only_for_the_same_start():
    assert complete_report(report(start=START), FACTS).end == END
    assert complete_report(report(start=START + timedelta(hours=1)), FACTS).end is None


def test_a_plain_calendar_does_not_announce_an_outage():
    """Only maintenance is announced (as core.report): a calendar without the BCOP marks
    leaves an outage's status open."""
    plain = CalendarFacts(start=START, end=END, status="aangekondigd", uid="u")
    r = complete_report(report(), plain)
    assert r.kind == "storing" and r.status is None


def test_no_calendar_no_change():
    mine = report()
    assert complete_report(mine, None) is mine


def test_the_sequence_orders_revisions_of_one_maintenance():
    """A revision with a lower SEQUENCE is outdated even when its mail is dated later (a
    resent copy of the first invitation after the moved window)."""
    from bridge.core.incidents import IncidentState, decide

    sent = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    moved = report(ticket="CT9", kind="onderhoud", status="aangekondigd", start=START,
                   end=END + timedelta(hours=2), sent_at=sent, sequence=2)
    first = report(ticket="CT9", kind="onderhoud", status="aangekondigd", start=START, end=END,
                   sent_at=sent + timedelta(hours=1), sequence=1)
    assert decide(first, IncidentState(1, "aangekondigd", moved)).action == "outdated"
    assert decide(moved, IncidentState(1, "aangekondigd", first)).action == "notice"
    assert complete_report(report(), FACTS).sequence is None
    assert complete_report(report(), CalendarFacts(start=START, sequence=4)).sequence == 4
    assert OutageReport.from_json(moved.to_json()) == moved
    assert "sequence" not in report().to_json()  # reports without a calendar keep their shape
