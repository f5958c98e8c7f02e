"""The Dutch filters notice and reply templates use, usable standalone as well.

Pure: no I/O (Dutch day and month names come from Babel's bundled CLDR data, zones from
:mod:`zoneinfo`). Dates are shown in the given time zone (default Europe/Amsterdam):

``datum`` "za 28 nov 09:42", ``tijd`` "09:42", ``dag`` "za 28 nov", ``moment(ref)`` only the
time when on the same local day as ``ref`` (a notice passes the moment it is rendered: a
time not on today's date carries the day), else ``datum``; ``venster(end)`` a window
("do 3 dec 09:00–12:00", a night window "nacht van wo 2 op do 3 dec, 00:00–06:00");
``lijst`` Dutch list join;
``diensten`` canonical service names to Dutch words (a list); ``wa`` escape WhatsApp markup;
``kort(n)`` shorten at a word boundary with "…"; ``duur`` minutes to Dutch ("4 uur").
``normalise`` and ``shorten`` tidy and cut a whole rendered text.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import get_day_names, get_month_names

__all__ = [
    "DEFAULT_TZ",
    "dag",
    "datum",
    "diensten",
    "duur",
    "kort",
    "lijst",
    "moment",
    "normalise",
    "shorten",
    "tijd",
    "venster",
    "wa",
]

DEFAULT_TZ = "Europe/Amsterdam"



@functools.lru_cache(maxsize=16)
def _zone(tz: str) -> tzinfo:
    return ZoneInfo(tz)


@functools.lru_cache(maxsize=1)
def _nl_names() -> tuple[dict[int, str], dict[int, str]]:
    """Dutch abbreviated day and month names from Babel, without trailing dots.

    Depending on the CLDR version Babel ships, abbreviations may be "za." / "nov."; the
    notices always show them without the dot.
    """
    days = {k: v.rstrip(".") for k, v in get_day_names("abbreviated", locale="nl").items()}
    months = {
        k: v.rstrip(".")
        for k, v in get_month_names("abbreviated", context="format", locale="nl").items()
    }
    return days, months


def _local(value: Any, tz: str | tzinfo = DEFAULT_TZ) -> datetime | None:
    """``value`` (aware datetime, naive = UTC, or ISO 8601 string) in local time."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    zone = _zone(tz) if isinstance(tz, str) else tz
    return value.astimezone(zone)


def dag(value: Any, tz: str | tzinfo = DEFAULT_TZ) -> str:
    """Dutch short date in local time: "za 28 nov". ``None`` gives "onbekend"."""
    d = _local(value, tz)
    if d is None:
        return "onbekend"
    days, months = _nl_names()
    return f"{days[d.weekday()]} {d.day} {months[d.month]}"


def tijd(value: Any, tz: str | tzinfo = DEFAULT_TZ) -> str:
    """Local time of day: "09:42". ``None`` gives "onbekend"."""
    d = _local(value, tz)
    if d is None:
        return "onbekend"
    return f"{d.hour:02d}:{d.minute:02d}"


def datum(value: Any, tz: str | tzinfo = DEFAULT_TZ) -> str:
    """Dutch short date and time in local time: "za 28 nov 09:42" (no dots).

    ``None`` gives "onbekend".
    """
    if value is None:
        return "onbekend"
    return f"{dag(value, tz)} {tijd(value, tz)}"


def moment(value: Any, ref: Any = None, tz: str | tzinfo = DEFAULT_TZ) -> str:
    """Only the time ("14:00") when ``value`` is on the same local day as ``ref``, else ``datum``."""
    d = _local(value, tz)
    if d is None:
        return "onbekend"
    r = _local(ref, tz)
    if r is not None and r.date() == d.date():
        return tijd(d, tz)
    return datum(d, tz)


# A window is read as a night when it crosses midnight, or starts before this hour and
# ends by _NIGHT_ENDS_BY the same morning; and lasts at most _NIGHT_MAX_HOURS.
_NIGHT_STARTS_BEFORE = 6
_NIGHT_ENDS_BY = 12
_NIGHT_MAX_HOURS = 18


def venster(start: Any, end: Any = None, tz: str | tzinfo = DEFAULT_TZ) -> str:
    """A time window in Dutch, in local time, that cannot be misread:

    * a night window -- one that crosses midnight, or starts between 00:00 and 06:00 and
      ends by noon the same day, at most 18 hours long -- names both days:
      "nacht van wo 2 op do 3 dec, 00:00–06:00", "nacht van ma 30 nov op di 1 dec,
      22:00–04:00" (a bare "do 3 dec 00:00" is read by many as Thursday night);
    * within one day: "do 3 dec 09:00–12:00";
    * longer: "do 3 dec 22:00 tot za 5 dec 06:00";
    * no end: "vanaf do 3 dec 00:00". ``None`` as start gives "onbekend".
    """
    s = _local(start, tz)
    if s is None:
        return "onbekend"
    e = _local(end, tz)
    if e is None:
        return f"vanaf {datum(s, tz)}"
    hours = (e - s).total_seconds() / 3600
    if 0 < hours <= _NIGHT_MAX_HOURS:
        night: tuple[date, date] | None = None
        if (e.date() - s.date()).days == 1:
            night = (s.date(), e.date())
        elif (e.date() == s.date() and s.hour < _NIGHT_STARTS_BEFORE
              and (e.hour, e.minute) <= (_NIGHT_ENDS_BY, 0)):
            night = (s.date() - timedelta(days=1), s.date())
        if night is not None:
            days, months = _nl_names()
            first, second = night
            day1 = f"{days[first.weekday()]} {first.day}"
            if first.month != second.month:
                day1 += f" {months[first.month]}"
            day2 = f"{days[second.weekday()]} {second.day} {months[second.month]}"
            return f"nacht van {day1} op {day2}, {tijd(s, tz)}\u2013{tijd(e, tz)}"
        if e.date() == s.date():
            return f"{dag(s, tz)} {tijd(s, tz)}\u2013{tijd(e, tz)}"
    return f"{datum(s, tz)} tot {datum(e, tz)}"


def lijst(items: Any, laatste: str = "en") -> str:
    """Dutch list join: "A", "A en B", "A, B en C". Empty items are skipped."""
    if items is None:
        return ""
    if isinstance(items, str):
        return items
    parts = [str(i) for i in items if i is not None and str(i).strip()]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {laatste} {parts[-1]}"


_SERVICE_WORDS: dict[str, str] = {
    "internet": "internet",
    "dsl": "internet",
    "glasvezel": "internet",
    "fiber": "internet",
    "voip": "bellen",
    "telefonie": "bellen",
    "bellen": "bellen",
    "telefoon": "bellen",
    "tv": "tv",
    "iptv": "tv",
    "televisie": "tv",
}


def diensten(services: Any) -> list[str]:
    """Canonical service names to Dutch words, duplicates removed, order kept.

    internet → "internet", voip → "bellen", tv → "tv"; unknown names pass through in lower
    case, escaped with :func:`wa`. Use ``|diensten|lijst`` for "internet en bellen".
    """
    if services is None:
        return []
    if isinstance(services, str):
        services = [services]
    out: list[str] = []
    for s in services:
        key = str(s).strip().lower()
        if not key:
            continue
        word = _SERVICE_WORDS.get(key) or wa(key)
        if word not in out:
            out.append(word)
    return out


# WhatsApp has no escape character for its markup. Characters next to a marker (zero-width
# space, U+2060 word joiner) do not reliably stop formatting in every client version, so the
# markers are replaced by look-alike characters that no WhatsApp client treats as markup.
_WA_LOOKALIKES = str.maketrans(
    {
        "*": "\u2217",  # ∗ ASTERISK OPERATOR
        "_": "\u02cd",  # ˍ MODIFIER LETTER LOW MACRON
        "~": "\u223c",  # ∼ TILDE OPERATOR
        "`": "\u02cb",  # ˋ MODIFIER LETTER GRAVE ACCENT
    }
)


def wa(value: Any) -> str:
    """Make a value from a mail print literally in WhatsApp.

    WhatsApp formats ``*bold*``, ``_italic_``, ``~strike~`` and backtick code; it has no escape
    mechanism, and invisible characters such as U+200B or the U+2060 word joiner next to a
    marker are not honoured consistently across clients. So the four marker characters are
    replaced with look-alikes (∗ ˍ ∼ ˋ) that look the same to a reader but are never markup.
    The function is idempotent; ``None`` gives "".
    """
    if value is None:
        return ""
    return str(value).translate(_WA_LOOKALIKES)


def kort(value: Any, n: int = 300, ellipsis: str = "…") -> str:
    """Shorten ``value`` to at most ``n`` characters, cut at a word boundary, with "…"."""
    text, _ = shorten("" if value is None else str(value), int(n), ellipsis)
    return text


def duur(minutes: Any) -> str:
    """Minutes as Dutch words: 30 → "30 minuten", 240 → "4 uur", 90 → "1 uur en 30 minuten"."""
    if minutes is None or minutes == "":
        return ""
    m = int(minutes)
    if m < 60:
        return "1 minuut" if m == 1 else f"{m} minuten"
    hours, rest = divmod(m, 60)
    if not rest:
        return f"{hours} uur"
    return f"{hours} uur en {'1 minuut' if rest == 1 else f'{rest} minuten'}"


# --------------------------------------------------------------------------------------
# Text post-processing
# --------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Strip trailing spaces per line, collapse 3+ newlines to 2, strip the whole text."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def shorten(text: str, limit: int, ellipsis: str = "…") -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` characters at a word boundary and add ``ellipsis``.

    Returns ``(text, truncated)``. An unclosed ``*bold*`` at the cut is closed again.
    """
    if len(text) <= limit:
        return text, False
    room = max(limit - len(ellipsis), 0)
    head = text[:room]
    if room < len(text) and not text[room].isspace():
        cut = max(head.rfind(" "), head.rfind("\n"))
        if cut > room // 2:
            head = head[:cut]
    head = head.rstrip(" \t\n,;:-–—(")
    if head.count("*") % 2:
        if len(head) + 1 + len(ellipsis) > limit:
            head = head[:-1].rstrip()
        if head.count("*") % 2 and head.rstrip("*"):
            head += "*"
    return head + ellipsis, True
