"""iCalendar parts -> :class:`CalendarFacts`, and the facts a report takes from them.

Carriers send maintenance windows as calendar invitations (``text/calendar``, RFC 5545), often
with the maintenance-notification BCOP's ``X-MAINTNOTE-*`` properties (PROVIDER, ACCOUNT,
MAINTENANCE-ID, OBJECT-ID, IMPACT, STATUS) and revisions of one maintenance threaded by UID and
ordered by SEQUENCE. The calendar is parsed with the ``icalendar`` library.

Pure: no I/O. Never raises on odd input: a calendar that does not parse, or has no event with
a start, gives None.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar

from bridge.core.models import CalendarFacts, OutageReport

__all__ = ["read_calendar", "complete_report", "MAX_CALENDAR_BYTES"]

MAX_CALENDAR_BYTES = 256 * 1024  # a maintenance invitation is a few kB; larger is not read
_MAX_EVENTS = 50  # events looked at in one calendar

# X-MAINTNOTE-STATUS (BCOP) -> report status
_MAINTNOTE_STATUS = {
    "TENTATIVE": "aangekondigd",
    "CONFIRMED": "aangekondigd",
    "CANCELLED": "geannuleerd",
    "IN-PROCESS": "update",
    "COMPLETED": "opgelost",
}
# STATUS (RFC 5545 3.8.1.11, VEVENT) -> report status
_EVENT_STATUS = {
    "TENTATIVE": "aangekondigd",
    "CONFIRMED": "aangekondigd",
    "CANCELLED": "geannuleerd",
}


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())


def _texts(value) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(t for t in (_text(v) for v in items) if t)


def _utc(value, tz: str) -> datetime | None:
    """A DTSTART/DTEND value as UTC: aware datetimes converted, floating times and dates
    (midnight) read in ``tz``."""
    try:
        dt = value.dt
    except AttributeError:  # a property icalendar could not parse keeps its raw text
        return None
    try:
        if isinstance(dt, datetime):
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=ZoneInfo(tz))
            return dt.astimezone(timezone.utc)
        if isinstance(dt, date):
            return datetime.combine(dt, time(0, 0), ZoneInfo(tz)).astimezone(timezone.utc)
    except (ValueError, OverflowError, TypeError):
        return None
    return None


def _event_facts(cal, ev, tz: str, events: int) -> CalendarFacts | None:
    start = _utc(ev.get("DTSTART"), tz) if ev.get("DTSTART") is not None else None
    if start is None:
        return None
    end = _utc(ev.get("DTEND"), tz) if ev.get("DTEND") is not None else None
    if end is None and ev.get("DURATION") is not None:
        try:
            duration = ev.get("DURATION").dt
            if isinstance(duration, timedelta):
                end = start + duration
        except (AttributeError, OverflowError, TypeError):
            end = None
    if end is not None and end < start:
        end = None
    method = _text(cal.get("METHOD")).upper() or None
    note_status = _text(ev.get("X-MAINTNOTE-STATUS")).upper()
    status = _MAINTNOTE_STATUS.get(note_status) or _EVENT_STATUS.get(_text(ev.get("STATUS")).upper())
    if method == "CANCEL":
        status = "geannuleerd"
    try:
        sequence = int(str(ev.get("SEQUENCE"))) if ev.get("SEQUENCE") is not None else None
    except ValueError:
        sequence = None
    uid = _text(ev.get("UID")) or None
    maintenance_id = _text(ev.get("X-MAINTNOTE-MAINTENANCE-ID")) or None
    return CalendarFacts(
        start=start,
        end=end,
        summary=_text(ev.get("SUMMARY")),
        location=_text(ev.get("LOCATION")),
        status=status,  # type: ignore[arg-type]
        ticket=maintenance_id or uid,
        uid=uid,
        sequence=sequence,
        method=method,
        provider=_text(ev.get("X-MAINTNOTE-PROVIDER")),
        account=_text(ev.get("X-MAINTNOTE-ACCOUNT")),
        impact=_text(ev.get("X-MAINTNOTE-IMPACT")).upper(),
        objects=_texts(ev.get("X-MAINTNOTE-OBJECT-ID")),
        maintenance=any(str(k).upper().startswith("X-MAINTNOTE-") for k in ev.keys()),
        events=events,
    )


def read_calendar(data: str | bytes, tz: str = "Europe/Amsterdam") -> CalendarFacts | None:
    """The facts of the earliest event with a start in an iCalendar text, or None.

    ``data`` is the text of a ``text/calendar`` part (bytes are read as UTF-8). Times with a
    TZID (IANA or a VTIMEZONE in the calendar, also Windows names such as "W. Europe
    Standard Time") or in UTC are converted to UTC; floating times and all-day dates are read
    in ``tz``. A DURATION stands in for a missing DTEND. ``status``: X-MAINTNOTE-STATUS
    (TENTATIVE/CONFIRMED -> aangekondigd, CANCELLED -> geannuleerd, IN-PROCESS -> update,
    COMPLETED -> opgelost), else STATUS (TENTATIVE/CONFIRMED/CANCELLED); METHOD:CANCEL is
    always geannuleerd. Input over :data:`MAX_CALENDAR_BYTES`, or that icalendar cannot
    parse, gives None.
    """
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    if not data or len(data) > MAX_CALENDAR_BYTES or "BEGIN:VCALENDAR" not in data.upper():
        return None
    try:
        cals = icalendar.Calendar.from_ical(data, multiple=True)
    except Exception:  # icalendar raises ValueError and others on malformed input
        return None
    found: list[CalendarFacts] = []
    for cal in cals[:5]:
        try:
            events = cal.walk("VEVENT")[:_MAX_EVENTS]
        except Exception:
            continue
        for ev in events:
            try:
                facts = _event_facts(cal, ev, tz, len(events))
            except Exception:  # a property of a type we did not expect: skip the event
                facts = None
            if facts is not None:
                found.append(facts)
    if not found:
        return None
    return min(found, key=lambda f: f.start)  # type: ignore[arg-type, return-value]


def complete_report(report: OutageReport, facts: CalendarFacts | None) -> OutageReport:
    """``report`` with what its text left open taken from the mail's calendar.

    The text decides what it says; the calendar fills gaps: the window (start and end, when
    the text gives neither; the end alone when the text's start is the calendar's), the
    ticket (MAINTENANCE-ID, else UID), the status and the SEQUENCE (which orders revisions
    of one event, core.incidents.is_older). A calendar with X-MAINTNOTE-*
    properties (the maintenance BCOP) makes the report maintenance. Returns ``report``
    itself when there is nothing to add.
    """
    if facts is None:
        return report
    changes: dict = {}
    if report.start is None and report.end is None and facts.start is not None:
        changes.update(start=facts.start, end=facts.end, end_expected=False, end_unknown=False)
    elif report.end is None and facts.end is not None and report.start == facts.start:
        changes.update(end=facts.end, end_expected=False, end_unknown=False)
    if report.ticket is None and facts.ticket:
        changes["ticket"] = facts.ticket
    if facts.sequence is not None and report.sequence is None:
        changes["sequence"] = facts.sequence
    if facts.maintenance and report.kind != "onderhoud":
        changes["kind"] = "onderhoud"
    kind = changes.get("kind", report.kind)
    if report.status is None and facts.status and not (
            facts.status == "aangekondigd" and kind == "storing"):
        changes["status"] = facts.status  # only maintenance is announced (as core.report)
    return dataclasses.replace(report, **changes) if changes else report
