"""Dutch and English dates, times, periods and durations as written in KPN mails and forward
headers.

Pure: no I/O (zone data comes from :mod:`zoneinfo`). Used by :mod:`bridge.core.mail` (the
``Date:`` of a forwarded original) and :mod:`bridge.core.report` (start, end, period and
downtime values).

* Dates are day-first (Dutch): "28-11-2026 09:42", "28/11/26 9:42", "28.11.2026", month
  names in Dutch and English ("28 november 2026 om 07:05", "Saturday, November 28, 2026 9:45
  AM"), ISO 8601 (with or without offset) and RFC 2822.
* Zone-less times are local time in the zone given (``tz``, by default Europe/Amsterdam) and
  returned as aware UTC. A time that does not exist (the hour skipped when summer time starts)
  is read with the offset from before the change; an ambiguous time (the hour repeated when
  summer time ends) is read as its first occurrence (summer time).
* A value may hold a window ("28-11-2026 00:00 - 06:00", "tussen 00:00 en 06:00"): see
  :func:`parse_period`.

The word lists that shape the reading (filler words around a date, the separators of a period)
default to :data:`DATE_FILLER_WORDS` and :data:`PERIOD_SEPARATORS`; a caller may pass its own
in any object with those two attributes (:class:`DateWords`, e.g. a
:class:`bridge.core.labels.ReportRules` built from the config's ``[parser]`` table).
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date, datetime, time, timezone, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.core.words import word_list_body

__all__ = [
    "DATE_FILLER_WORDS",
    "PERIOD_SEPARATORS",
    "DateWords",
    "parse_datetime",
    "parse_duration_minutes",
    "parse_period",
]

# Words around a date or time that carry no date ("op 28-11-2026 om 14:00", "vanaf ca.
# 14:00", "28-11-2026 vanavond 22:00"): removed before a date is read, each optionally
# followed by a dot. Only these (and a dash) may stand between a date and its time: in
# "28-11-2026 versie 2.10" or "28-11-2026 update volgt 12:00" the number is no time.
# The default of ReportRules.date_filler_words.
DATE_FILLER_WORDS: tuple[str, ...] = (
    "om", "te", "op", "van", "vanaf", "tussen", "rond", "rondom", "omstreeks", "circa",
    "ca", "ongeveer", "plm", "uiterlijk", "vanochtend", "vanmorgen", "vanmiddag",
    "vanavond", "vannacht", "'s ochtends", "'s morgens", "'s middags", "'s avonds",
    "'s nachts", "at", "on", "from", "between", "around", "about", "approximately",
    "approx", "by",
)
# Between the two ends of a period ("00:00 - 06:00", "00:00-06:00", "tot", "t/m", "en" as
# in "tussen 00:00 en 06:00"). Matched right after the first date/time of a start or
# period value, on lower-cased text. The default of ReportRules.period_separators.
PERIOD_SEPARATORS: str = (
    r"\s*+(?:[-\u2013\u2014]|(?:tot(?:\s++en\s++met)?+|t/m|tm|en|and|to|till|until|through)"
    r"(?!\w))\s*+"
)


class DateWords(Protocol):
    """The word lists date reading takes from the config (``ReportRules`` has both)."""

    @property
    def date_filler_words(self) -> tuple[str, ...]: ...

    @property
    def period_separators(self) -> str: ...


_MONTHS = {
    "januari": 1, "january": 1, "jan": 1,
    "februari": 2, "february": 2, "feb": 2, "febr": 2,
    "maart": 3, "march": 3, "mrt": 3, "mar": 3, "mar.": 3,
    "april": 4, "apr": 4,
    "mei": 5, "may": 5,
    "juni": 6, "june": 6, "jun": 6,
    "juli": 7, "july": 7, "jul": 7,
    "augustus": 8, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9,
    "oktober": 10, "october": 10, "okt": 10, "oct": 10,
    "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}
_WEEKDAYS = (
    "maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|"
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    "ma|di|wo|do|vr|za|zo|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun"
)
_MON = r"(?P<mon>[a-z]{3,9})\.?"
# A clock time and what may follow it: am/pm, "uur", a zone. Not the start of a dotted date
# ("03.12.2026" after "tot" is no 03:12). A numeric offset needs seconds before it when it is
# negative and has a colon: "00:00-06:00" is a range, not UTC-6.
_TIME_CORE = (
    r"(?P<h>\d{1,2})[:.h](?P<mi>\d{2})(?:[:.](?P<s>\d{2})(?:\.\d+)?)?(?!\.?\d)"
    r"(?!/\d{1,4}(?![\d./-]))"
    r"\s*+(?P<ampm>[ap]\.?m\.?(?!\w))?(?:\s*+(?:uur|u)(?!\w))?"
    r"(?:\s*+\(?(?P<tz>z(?!\w)|utc(?:\s?[+-]\d{1,2}(?::?\d{2})?)?|gmt(?:\s?[+-]\d{1,2}(?::?\d{2})?)?"
    r"|cest|cet|mest|met|(?(s)[+-]|(?:\+|-(?!\d{2}:)))\d{2}:?\d{2})\)?)?"
)
# Between a date and its time: a dash. Filler words ("28-11-2026 tussen 14:00", "28 november
# 2026 rond 14:00 uur", ReportRules.date_filler_words) are removed before this is matched;
# other words are not skipped ("28-11-2026 versie 2.10 uitgerold" has no time).
_DATE_TIME_GAP = r"(?:[-\u2013|]\s*+)?+"
_TIME = r"(?:\s*+" + _DATE_TIME_GAP + _TIME_CORE + r")?"
_DATE_PATTERNS = (
    # ISO 8601 / year first
    re.compile(r"(?<!\d)(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})(?:t|(?=\s)|(?!\d))"
               + _TIME),
    # 28-11-2026, 28/11/2026, 28.11.2026, 28-11-26
    re.compile(r"(?<!\d)(?P<d>\d{1,2})[-/.](?P<m>\d{1,2})[-/.](?P<y>\d{4}|\d{2})(?!\d)" + _TIME),
    # 28 november 2026, 28 nov. 2026
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\.?\s+" + _MON + r"\s+(?P<y>\d{4})(?!\d)" + _TIME),
    # November 28, 2026 / Nov 28 2026
    re.compile(_MON + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?P<y>\d{4})(?!\d)" + _TIME),
)
_TIME_ONLY = re.compile(r"^\s*+" + _TIME_CORE + r"\s*+$")
# A bare time at a position (the start of a period, the end of a range).
_TIME_AT = re.compile(r"\s*+" + _TIME_CORE)


def _zone_offset(tz: str) -> timezone | None:
    tz = tz.replace(" ", "")
    if tz in ("z", "utc", "gmt"):
        return timezone.utc
    if tz in ("cet", "met"):
        return timezone(timedelta(hours=1))
    if tz in ("cest", "mest"):
        return timezone(timedelta(hours=2))
    m = re.fullmatch(r"(?:utc|gmt)?([+-])(\d{1,2}):?(\d{2})?", tz)
    if not m:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if m.group(1) == "-" else delta)


def _time_parts(m: re.Match) -> tuple[int, int, int] | None:
    if m.group("h") is None:
        return (0, 0, 0)
    h, mi, s = int(m.group("h")), int(m.group("mi")), int(m.group("s") or 0)
    ampm = (m.group("ampm") or "").replace(".", "")
    if ampm:
        if not 1 <= h <= 12:
            return None
        if ampm == "pm" and h != 12:
            h += 12
        elif ampm == "am" and h == 12:
            h = 0
    if h == 24 and mi == 0 and s == 0:  # "24:00" is written for end of day; rare, tolerate
        return (24, 0, 0)
    if h > 23 or mi > 59 or s > 59:
        return None
    return (h, mi, s)


def _to_utc(local: datetime, tz: str, explicit: str | None) -> datetime | None:
    if explicit:
        offset = _zone_offset(explicit)
        if offset is None:
            return None
        return local.replace(tzinfo=offset).astimezone(timezone.utc)
    # Zone-less: local wall time in ``tz``. fold=0 -> first occurrence of an ambiguous time,
    # and the pre-transition offset for a time that does not exist.
    return local.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(timezone.utc)


@functools.lru_cache(maxsize=16)
def _date_fillers(words: tuple[str, ...]) -> re.Pattern | None:
    """The regex of ``date_filler_words`` (each optionally followed by a dot)."""
    body = word_list_body(words)
    return re.compile(rf"(?<!\w)(?:{body})(?:\.|(?!\w))") if body else None


@functools.lru_cache(maxsize=16)
def _period_separators(pattern: str) -> re.Pattern:
    """The compiled ``period_separators`` (case-insensitive)."""
    return re.compile(pattern, re.IGNORECASE)


# ISO 8601 with "T" and a numeric offset: "2026-11-28T09:42-05:00" is UTC-5, not a range.
_ISO_OFFSET = re.compile(
    r"(?<=\d)t(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-]\d{2}(?::?\d{2})?)(?![\d:])")


def _normalise_date_text(text: str, rules: DateWords | None = None) -> str:
    s = text.lower().replace("\u00a0", " ")
    s = s.replace(",", " ")
    s = _ISO_OFFSET.sub(r" \1 utc\2", s)
    s = re.sub(rf"(?<![\w]){_WEEKDAYS}(?:\.|(?!\w))", " ", s)
    fillers = _date_fillers(rules.date_filler_words if rules is not None else DATE_FILLER_WORDS)
    if fillers is not None:
        s = fillers.sub(" ", s)
    s = re.sub(r"(?<=\d)t(?=\d{1,2}:)", " ", s)  # ISO "2026-11-28T09:42" -> "2026-11-28 09:42"
    return re.sub(r"\s+", " ", s).strip()


def _date_match(s: str, tz: str, pos: int | None = None) -> tuple[datetime | None, int] | None:
    """The first date (with its time, if any) in the normalised ``s`` -- or, with ``pos``, one
    starting exactly at ``pos`` -- as ``(aware UTC or None when invalid, end position)``."""
    for pattern in _DATE_PATTERNS:
        m = pattern.search(s) if pos is None else pattern.match(s, pos)
        if not m:
            continue
        if "mon" in pattern.groupindex:
            month = _MONTHS.get(m.group("mon").rstrip("."))
            if month is None:
                continue
        else:
            month = int(m.group("m"))
        year = int(m.group("y"))
        if year < 100:
            year += 2000
        parts = _time_parts(m)
        if parts is None:
            return None, m.end()
        h, mi, sec = parts
        extra = timedelta(0)
        if h == 24:
            h, extra = 0, timedelta(days=1)
        local = datetime(year, month, int(m.group("d")), h, mi, sec) + extra
        return _to_utc(local, tz, m.group("tz")), m.end()
    return None


def _on_day(m: re.Match, day: date, tz: str) -> datetime | None:
    parts = _time_parts(m)
    if parts is None or parts[0] == 24:
        return None
    return _to_utc(datetime.combine(day, time(*parts)), tz, m.group("tz"))


def parse_datetime(text: str | None, tz: str = "Europe/Amsterdam",
                   default_date: date | None = None,
                   rules: DateWords | None = None) -> datetime | None:
    """Parse a date (and time) as written in a KPN mail or a forward header; return aware UTC.

    Day-first numeric dates ("28-11-2026 09:42", "28/11/26 9:42", "28.11.2026"), Dutch and
    English month names ("28 november 2026 om 07:05", "za 28 nov. 2026 om 09:45",
    "Saturday, November 28, 2026 9:45 AM"), ISO 8601 (with or without offset) and RFC 2822.
    A dash or filler words (``rules.date_filler_words``) may stand between the date and the
    time ("28-11-2026 tussen 14:00 en 16:00" is 14:00; "28-11-2026 versie 2.10" is midnight).
    An ISO time with "T" and an offset ("2026-11-28T09:42-05:00") keeps the offset. Zone-less values are local time in ``tz``. A date without a
    time is midnight. A bare time ("14:00") uses ``default_date`` when given. Returns None
    when nothing parses; never raises.
    """
    if not text:
        return None
    try:
        s = _normalise_date_text(text, rules)
        found = _date_match(s, tz)
        if found is not None:
            return found[0]
        if default_date is not None:
            m = _TIME_ONLY.match(s)
            if m:
                return _on_day(m, default_date, tz)
    except (ValueError, OverflowError, ZoneInfoNotFoundError):
        return None
    return None


def parse_period(text: str | None, tz: str = "Europe/Amsterdam",
                 default_date: date | None = None,
                 rules: DateWords | None = None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` of a value that may hold a window: "28-11-2026 00:00 - 06:00",
    "28-11-2026 00:00 tot 06:00", "van 28-11-2026 22:00 tot 29-11-2026 04:00", "tussen 00:00
    en 06:00" (a bare time is on ``default_date``). The separators are
    ``rules.period_separators``. An end written as a bare time is on the start's day, or on
    the next day when it would be earlier than the start. A single date/time gives
    ``(start, None)``; nothing readable gives ``(None, None)``. Never raises.
    """
    if not text:
        return None, None
    period_sep = _period_separators(
        rules.period_separators if rules is not None else PERIOD_SEPARATORS)
    try:
        s = _normalise_date_text(text, rules)
        found = _date_match(s, tz)
        if found is None:
            m = _TIME_AT.match(s) if default_date is not None else None
            if m is None:
                return None, None
            found = (_on_day(m, default_date, tz), m.end())
        start, pos = found
        if start is None:
            return None, None
        sep = period_sep.match(s, pos)
        if sep is None or sep.end() == pos:
            return start, None
        pos = sep.end()
        found = _date_match(s, tz, pos)
        if found is not None:
            return start, found[0]
        m = _TIME_AT.match(s, pos)
        if m is None:
            return start, None
        day = start.astimezone(ZoneInfo(tz)).date()
        end = _on_day(m, day, tz)
        if end is not None and end < start:
            end = _on_day(m, day + timedelta(days=1), tz)
        return start, end
    except (ValueError, OverflowError, ZoneInfoNotFoundError):
        return None, None


# ---------------------------------------------------------------------------------------------
# Durations

_DURATION_UNITS = re.compile(
    r"(?<![\d.,])(?P<n>\d++(?:[.,]\d++)?)\s*+(?P<unit>dagen|dag|days?|uren|uur|hours?|hrs?|h|u|"
    r"minuten|minuut|minutes?|mins?|m|seconden|seconde|seconds?|secs?|s)(?!\w)",
    re.IGNORECASE,
)


def parse_duration_minutes(text: str | None) -> int | None:
    """ "240 minuten" -> 240, "4 uur" -> 240, "2,5 uur" -> 150, "1 uur en 30 minuten" -> 90,
    "01:30" -> 90, a bare number -> minutes. None when there is no duration; never raises."""
    if not text:
        return None
    total = 0.0
    found = False
    for m in _DURATION_UNITS.finditer(text):
        n = float(m.group("n").replace(",", "."))
        unit = m.group("unit").lower()
        if unit.startswith(("dag", "day")):
            total += n * 1440
        elif unit.startswith(("u", "h")):
            total += n * 60
        elif unit.startswith("m"):
            total += n
        else:
            total += n / 60
        found = True
    if not found:
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
        if m:
            return int(m.group(1)) * 60 + int(m.group(2))
        m = re.fullmatch(r"\s*(\d+)\s*", text)
        if m:
            return int(m.group(1))
        return None
    if not math.isfinite(total):
        return None
    return int(round(total))
