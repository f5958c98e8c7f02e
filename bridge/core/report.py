"""Text of one (parsed) mail -> one OutageReport.

Pure: no I/O, no asyncio. Everything the extractor looks for -- label synonyms, value synonyms and
regular expressions -- lives in :class:`ReportRules`, so an operator can adapt the parser from the
``[parser]`` table of the config file without touching code (see :func:`rules_from_config`).

How a report is read:

* ``Label: value`` lines (also ``Label | value`` as html2text renders HTML table rows, and
  ``Label<TAB>value``; a *known* label followed by two or more spaces also works). A value continues
  on the following lines until a blank line, the next label line or a greeting/signature line.
  Indented continuation lines may contain a colon; unindented lines that look like ``Word: text``
  end the value.
* What the labels do not say is taken from the subject
  (``Storingsmelding KPN: Internet en VoIP - Amersfoort (INC000012345678) - Nieuw``), and a ticket
  id matching ``ticket_pattern`` anywhere in the subject or the body.
* Dates are day-first (Dutch). Zone-less times are local time in ``rules.timezone`` and stored as
  UTC. A time that does not exist (the hour skipped when summer time starts) is read with the
  offset from before the change; an ambiguous time (the hour repeated when summer time ends) is
  read as its first occurrence (summer time).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timezone, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.core.models import OutageReport, ParsedMail

__all__ = [
    "DEFAULT_RULES",
    "ReportRules",
    "extract_report",
    "parse_datetime",
    "parse_duration_minutes",
    "read_labels",
    "rules_from_config",
]

Synonyms = tuple[tuple[str, tuple[str, ...]], ...]

STATUSES = ("nieuw", "update", "opgelost", "geannuleerd", "aangekondigd")
KINDS = ("storing", "onderhoud")
SUBJECT_GROUPS = frozenset({"kind", "services", "place", "ticket", "status"})

# Fields of ReportRules that are label lists, and the report field each one fills.
LABEL_FIELDS = {
    "ticket_labels": "ticket",
    "status_labels": "status",
    "kind_labels": "kind",
    "service_labels": "services",
    "place_labels": "places",
    "postcode_labels": "postcodes",
    "start_labels": "start",
    "expected_end_labels": "expected_end",
    "end_labels": "end",
    "description_labels": "description",
    "downtime_labels": "downtime",
}


@dataclass(frozen=True)
class ReportRules:
    """Everything :func:`extract_report` looks for. Defaults cover Dutch and English KPN mails.

    Label lists are matched case-insensitively, ignoring spaces ("Ticket nummer" matches
    "Ticketnummer") and a trailing colon. Value synonyms (``*_values``) are pairs of
    ``(canonical name, synonyms)`` and match whole words/phrases, case-insensitively.
    """

    timezone: str = "Europe/Amsterdam"

    ticket_labels: tuple[str, ...] = (
        "Ticketnummer", "Ticket nummer", "Ticketnr", "Ticket nr", "Ticket", "Ticket number",
        "Ticket ID", "Ticket-ID", "Referentie", "Referentienummer", "Kenmerk", "Ons kenmerk",
        "Incident", "Incidentnummer", "Incident nummer", "Incident number", "Incident ID",
        "Storingsnummer", "Storingnummer", "Meldingsnummer", "Meldingnummer", "Wijzigingsnummer",
        "Change", "Change number", "Reference", "Reference number", "Ref",
    )
    status_labels: tuple[str, ...] = ("Status", "Stand van zaken", "State")
    kind_labels: tuple[str, ...] = (
        "Soort", "Soort melding", "Type", "Type melding", "Melding", "Categorie", "Kind", "Category",
    )
    service_labels: tuple[str, ...] = (
        "Dienst(en)", "Diensten", "Dienst", "Getroffen dienst(en)", "Getroffen diensten",
        "Getroffen dienst", "Betrokken dienst(en)", "Betrokken diensten", "Product(en)",
        "Producten", "Service(s)", "Services", "Service", "Affected service(s)",
        "Affected services", "Affected service",
    )
    place_labels: tuple[str, ...] = (
        "Getroffen gebied", "Getroffen gebieden", "Gebied", "Gebieden", "Plaats(en)", "Plaatsen",
        "Plaats", "Locatie", "Locaties", "Regio", "Woonplaats(en)", "Woonplaatsen", "Woonplaats",
        "Area", "Affected area", "Location", "Locations", "Region",
    )
    postcode_labels: tuple[str, ...] = (
        "Postcodes", "Postcode", "Postcode(s)", "Postcodegebied", "Postcodegebieden",
        "Getroffen postcodes", "Postal codes", "Postal code", "Zip codes", "Zip code",
    )
    start_labels: tuple[str, ...] = (
        "Starttijd", "Start", "Starttijdstip", "Startdatum", "Begintijd", "Begin", "Aanvang",
        "Aanvangstijd", "Begonnen op", "Gestart op", "Start time", "Start date", "Started",
    )
    expected_end_labels: tuple[str, ...] = (
        "Verwachte eindtijd", "Verwacht herstel", "Verwachte hersteltijd", "Verwacht einde",
        "Verwachte oplostijd", "Verwacht opgelost", "Prognose", "Expected end",
        "Expected end time", "Expected resolution", "Estimated end", "Estimated resolution",
        "ETR", "ETA",
    )
    end_labels: tuple[str, ...] = (
        "Eindtijd", "Einde", "Einddatum", "Hersteltijd", "Hersteld op", "Opgelost op",
        "Opgelost", "Eindtijdstip", "End time", "End", "End date", "Resolved at", "Resolved",
        "Restored at",
    )
    description_labels: tuple[str, ...] = (
        "Omschrijving", "Beschrijving", "Toelichting", "Oorzaak", "Description", "Details",
    )
    downtime_labels: tuple[str, ...] = (
        "Onderbrekingsduur", "Onderbreking", "Duur onderbreking", "Duur van de onderbreking",
        "Verwachte onderbreking", "Downtime", "Expected downtime", "Outage duration",
    )

    status_values: Synonyms = (
        ("nieuw", ("nieuw", "new", "open", "geopend", "gemeld", "actief", "active", "opened")),
        ("update", ("update", "updated", "bijgewerkt", "gewijzigd", "in behandeling",
                    "in progress", "voortgang", "vervolg", "vervolgmelding")),
        ("opgelost", ("opgelost", "verholpen", "hersteld", "gesloten", "afgerond", "afgesloten",
                      "resolved", "closed", "solved", "fixed", "restored", "completed",
                      "voltooid", "uitgevoerd")),
        ("geannuleerd", ("geannuleerd", "vervallen", "ingetrokken", "afgelast", "cancelled",
                         "canceled", "withdrawn")),
        ("aangekondigd", ("aangekondigd", "gepland", "ingepland", "announced", "scheduled",
                          "planned")),
    )
    kind_values: Synonyms = (
        ("onderhoud", ("onderhoud", "onderhoudsmelding", "gepland onderhoud",
                       "onderhoudswerkzaamheden", "werkzaamheden", "geplande werkzaamheden",
                       "maintenance", "planned maintenance", "planned work")),
        ("storing", ("storing", "storingsmelding", "verstoring", "storingen", "outage",
                     "incident", "disruption")),
    )
    service_values: Synonyms = (
        ("internet", ("internet", "zakelijk internet", "dsl", "vdsl", "vdsl2", "adsl", "adsl2",
                      "glasvezel", "fiber", "fibre", "ftth", "fttc", "breedband", "broadband")),
        ("voip", ("voip", "bellen", "vast bellen", "telefonie", "vaste telefonie", "spraak",
                  "voice", "telephony", "sip", "sip trunk", "sip-trunk")),
        ("tv", ("tv", "televisie", "itv", "iptv", "interactieve tv", "television")),
        ("mobiel", ("mobiel", "mobiele telefonie", "mobiel internet", "mobiel netwerk",
                    "mobile", "4g", "5g", "gsm")),
    )
    unknown_values: tuple[str, ...] = (
        "onbekend", "nog onbekend", "nog niet bekend", "niet bekend", "n.n.b.", "n.n.b", "nnb",
        "n.t.b.", "n.t.b", "ntb", "nader te bepalen", "volgt", "unknown", "not known", "tbd",
        "tba", "n/a",
    )

    ticket_pattern: str = r"\b(?:INC|CT|CHG|CRQ|WO|PRB|RFC|SR|REQ|TASK)[-_]?\d{5,}\b"
    # Named groups (all optional): kind, services, place, ticket, status.
    subject_pattern: str = (
        r"^(?:\s*+(?:re|fw|fwd|doorst|tr|wg|aw|antw|sv|vs)\s*+:\s*+)*"
        r"(?P<kind>[^:]*?)\s*+:\s*+(?P<services>.+?)\s++[-\u2013\u2014]\s++(?P<place>.+?)"
        r"\s*+(?:\((?P<ticket>[^()]*)\))?\s*+"
        r"(?:[-\u2013\u2014]\s*+(?P<status>[^-\u2013\u2014()]+?))?\s*+$"
    )
    postcode_pattern: str = (
        r"(?<![\w-])[1-9]\d{3}(?:\s?[A-Z]{2})?(?:\s*[-\u2013]\s*[1-9]\d{3}(?:\s?[A-Z]{2})?)?"
        r"(?![\w-])"
    )
    # Between two places. "/" only with blanks around it: "Capelle a/d IJssel" is one place.
    # Places on separate lines (or <br> in an HTML cell) are always separate.
    place_separators: str = (
        r"(?<!\s)\s*+[,;]\s*+|(?<!\s)\s++(?:[+/&]|en|and)\s++"
    )
    # A line matching this ends a label value (greeting / signature).
    signature_pattern: str = (
        r"(?i)^\s*+(?:met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|"
        r"hartelijke\s+groet(?:en)?|groet(?:en)?|mvg|kind\s+regards|best\s+regards|regards|"
        r"with\s+kind\s+regards|sincerely)\b"
    )


DEFAULT_RULES = ReportRules()

_REGEX_FIELDS = ("ticket_pattern", "subject_pattern", "postcode_pattern", "place_separators",
                 "signature_pattern")
_SYNONYM_FIELDS = ("status_values", "kind_values", "service_values")


def rules_from_config(d: dict) -> ReportRules:
    """Build :class:`ReportRules` from the ``[parser]`` TOML table, starting from the defaults.

    Keys are the field names of :class:`ReportRules`:

    * ``timezone`` (string, an IANA zone name);
    * ``*_labels`` and ``unknown_values`` (lists of strings);
    * ``status_values``, ``kind_values``, ``service_values`` (tables mapping a canonical name to a
      list of synonyms; status names must be one of nieuw/update/opgelost/geannuleerd/
      aangekondigd, kind names storing/onderhoud);
    * ``ticket_pattern``, ``subject_pattern``, ``postcode_pattern``, ``place_separators``,
      ``signature_pattern`` (regular expressions, Python syntax).

    A list or table given in the config REPLACES the default one entirely (it is not merged);
    to add a synonym, repeat the defaults you want to keep. Keys left out keep their defaults.

    Raises ``ValueError("parser.<key>: <what is wrong>")`` for an unknown key, a wrong type, a
    regular expression that does not compile or an unknown time zone.
    """
    if not isinstance(d, dict):
        raise ValueError(f"parser: expected a table, got {type(d).__name__}")
    known = {f.name for f in fields(ReportRules)}
    changes: dict = {}
    for key, value in d.items():
        if key not in known:
            raise ValueError(f"parser.{key}: unknown key (known keys: {', '.join(sorted(known))})")
        where = f"parser.{key}"
        if key == "timezone":
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: expected a time zone name (string)")
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"{where}: unknown time zone {value!r}") from exc
            changes[key] = value
        elif key in _REGEX_FIELDS:
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected a regular expression (string), "
                                 f"got {type(value).__name__}")
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"{where}: invalid regular expression: {exc}") from exc
            if key == "subject_pattern":
                extra = set(compiled.groupindex) - SUBJECT_GROUPS
                if extra:
                    raise ValueError(f"{where}: unknown group name(s) {sorted(extra)}; "
                                     f"allowed: {sorted(SUBJECT_GROUPS)}")
            changes[key] = value
        elif key in _SYNONYM_FIELDS:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: expected a table of name = [synonyms], "
                                 f"got {type(value).__name__}")
            allowed = {"status_values": STATUSES, "kind_values": KINDS}.get(key)
            pairs = []
            for name, syns in value.items():
                if allowed is not None and name not in allowed:
                    raise ValueError(f"{where}: unknown name {name!r} "
                                     f"(expected one of {', '.join(allowed)})")
                pairs.append((name, _str_list(f"{where}.{name}", syns)))
            changes[key] = tuple(pairs)
        else:  # label lists and unknown_values
            changes[key] = _str_list(where, value)
    return ReportRules(**changes) if changes else DEFAULT_RULES


def _str_list(where: str, value) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{where}: expected a list of non-empty strings, got {item!r}")
    return tuple(item.strip() for item in value)


# ---------------------------------------------------------------------------------------------
# Dates

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
_TIME = (
    r"(?:\s*+(?P<h>\d{1,2})[:.h](?P<mi>\d{2})(?:[:.](?P<s>\d{2})(?:\.\d+)?)?"
    r"\s*+(?P<ampm>[ap]\.?m\.?(?!\w))?(?:\s*+(?:uur|u)(?!\w))?"
    r"(?:\s*+\(?(?P<tz>z(?!\w)|utc(?:\s?[+-]\d{1,2}(?::?\d{2})?)?|gmt(?:\s?[+-]\d{1,2}(?::?\d{2})?)?"
    r"|cest|cet|mest|met|[+-]\d{2}:?\d{2})\)?)?)?"
)
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
_TIME_ONLY = re.compile(r"^\s*+" + _TIME.replace("(?:\\s*+(?P<h>", "(?:(?P<h>", 1) + r"\s*+$")


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


def _normalise_date_text(text: str) -> str:
    s = text.lower().replace("\u00a0", " ")
    s = s.replace(",", " ")
    s = re.sub(rf"(?<![\w]){_WEEKDAYS}(?:\.|(?!\w))", " ", s)
    s = re.sub(r"(?<![\w])(?:om|at|te|on|van|vanaf|from)(?!\w)", " ", s)
    s = re.sub(r"(?<=\d)t(?=\d{1,2}:)", " ", s)  # ISO "2026-11-28T09:42" -> "2026-11-28 09:42"
    return re.sub(r"\s+", " ", s).strip()


def parse_datetime(text: str | None, tz: str = "Europe/Amsterdam",
                   default_date: date | None = None) -> datetime | None:
    """Parse a date (and time) as written in a KPN mail or a forward header; return aware UTC.

    Day-first numeric dates ("28-11-2026 09:42", "28/11/26 9:42", "28.11.2026"), Dutch and
    English month names ("28 november 2026 om 07:05", "za 28 nov. 2026 om 09:45",
    "Saturday, November 28, 2026 9:45 AM"), ISO 8601 (with or without offset) and RFC 2822.
    Zone-less values are local time in ``tz``. A date without a time is midnight. A bare time
    ("14:00") uses ``default_date`` when given. Returns None when nothing parses; never raises.
    """
    if not text:
        return None
    try:
        s = _normalise_date_text(text)
        for pattern in _DATE_PATTERNS:
            m = pattern.search(s)
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
                return None
            h, mi, sec = parts
            extra = timedelta(0)
            if h == 24:
                h, extra = 0, timedelta(days=1)
            local = datetime(year, month, int(m.group("d")), h, mi, sec) + extra
            return _to_utc(local, tz, m.group("tz"))
        if default_date is not None:
            m = _TIME_ONLY.match(s)
            if m and m.group("h") is not None:
                parts = _time_parts(m)
                if parts is None or parts[0] == 24:
                    return None
                local = datetime.combine(default_date, time(*parts))
                return _to_utc(local, tz, m.group("tz"))
    except (ValueError, OverflowError, ZoneInfoNotFoundError):
        return None
    return None


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


# ---------------------------------------------------------------------------------------------
# Labels


def _label_key(label: str) -> str:
    return re.sub(r"[\s*_]+", "", label.lower()).rstrip(":.")


def _phrase_regex(phrases) -> re.Pattern | None:
    """One regex matching any phrase as a whole word/phrase, longest first, case-insensitive."""
    alts = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    if not alts:
        return None
    body = "|".join(r"\s+".join(re.escape(w) for w in a.split()) for a in alts)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class _Compiled:
    label_field: dict
    known_label_prefix: re.Pattern | None
    synonyms: dict  # field -> (regex, {lowered synonym: canonical})
    unknown: re.Pattern | None
    ticket: re.Pattern
    subject: re.Pattern
    postcode: re.Pattern
    place_sep: re.Pattern
    signature: re.Pattern


@functools.lru_cache(maxsize=16)
def _compile(rules: ReportRules) -> _Compiled:
    label_field: dict[str, str] = {}
    all_labels: list[str] = []
    for attr, target in LABEL_FIELDS.items():
        for label in getattr(rules, attr):
            label_field.setdefault(_label_key(label), target)
            all_labels.append(label)
    prefix = None
    if all_labels:
        alts = sorted({lb.strip() for lb in all_labels}, key=len, reverse=True)
        body = "|".join(r"\s+".join(re.escape(w) for w in a.split()) for a in alts)
        # A known label followed by at least two spaces (aligned columns without a colon).
        prefix = re.compile(rf"^\s*+(?P<label>{body})(?:\s{{2,}}+|\t)(?P<value>\S.*)$",
                            re.IGNORECASE)
    synonyms = {}
    for attr in _SYNONYM_FIELDS:
        lookup: dict[str, str] = {}
        for canonical, syns in getattr(rules, attr):
            for syn in (canonical, *syns):
                lookup.setdefault(re.sub(r"\s+", " ", syn.strip().lower()), canonical)
        synonyms[attr] = (_phrase_regex(lookup), lookup)
    return _Compiled(
        label_field=label_field,
        known_label_prefix=prefix,
        synonyms=synonyms,
        unknown=_phrase_regex(rules.unknown_values),
        ticket=re.compile(rules.ticket_pattern),
        subject=re.compile(rules.subject_pattern, re.IGNORECASE),
        postcode=re.compile(rules.postcode_pattern),
        place_sep=re.compile(rules.place_separators, re.IGNORECASE),
        signature=re.compile(rules.signature_pattern),
    )


_LABEL_SEPS = ":|\t"


def _label_line(line: str) -> tuple[str, str, str] | None:
    """``(indent, label, value)`` of a ``Label: value`` / ``Label | value`` / ``Label<TAB>value``
    line (label 1-60 characters, an optional bullet before it), else None.

    String methods, not a regex: linear on any line (the regex this replaces backtracked
    quadratically on long runs of blanks)."""
    rest = line.lstrip(" \t")
    indent = line[: len(line) - len(rest)]
    candidates = [rest]
    if rest[:1] in ("-", "*", "\u2022") and rest[1:2].isspace():
        candidates.insert(0, rest[1:].lstrip())
    for cand in candidates:
        cut = min((i for i in (cand.find(ch) for ch in _LABEL_SEPS) if i >= 0), default=-1)
        if cut <= 0:
            continue
        label = cand[:cut].rstrip(" ")
        if not 1 <= len(label) <= 60:
            continue
        value = cand[cut:].lstrip(" \t")
        if value[:1] in (":", "|") and cand[cut] == "\t":  # "Label<TAB>: value"
            value = value[1:].lstrip(" \t")
        elif cand[cut] != "\t":
            value = cand[cut + 1:].lstrip(" \t")
        if value.startswith("|"):
            value = value[1:].lstrip(" \t")
        return indent, label, value
    return None
_GENERIC_LABEL = re.compile(r"^[^\W\d_][\w()/.&' -]{0,39}$")
_SUBJECT_MAX = 500
_TABLE_RULE_CHARS = frozenset(" \t|:+-")


def _is_table_rule(line: str) -> bool:
    """A table border such as ``---|---`` or ``+-----+``: only ``-|:+`` and blanks, with three
    dashes in a row. Plain string checks: linear on any line (a regex here backtracked)."""
    return "---" in line and all(ch in _TABLE_RULE_CHARS or ch.isspace() for ch in line)


def _classify(line: str, c: _Compiled) -> tuple[str, str | None, str] | None:
    """("known", field, value) / ("other", None, value) for a label line, else None."""
    m = _label_line(line)
    if m:
        field = c.label_field.get(_label_key(m[1]))
        if field:
            return ("known", field, m[2].strip().strip("|").strip())
    if c.known_label_prefix is not None:
        m2 = c.known_label_prefix.match(line)
        if m2:
            field = c.label_field.get(_label_key(m2.group("label")))
            if field:
                return ("known", field, m2.group("value").strip().strip("|").strip())
    if m:
        label = m[1].strip()
        if (_GENERIC_LABEL.match(label) and len(label.split()) <= 4
                and not m[0]):
            return ("other", None, m[2])
    return None


def read_labels(text: str, rules: ReportRules = DEFAULT_RULES) -> dict[str, str]:
    """Known label values in ``text``: report field name -> value (first occurrence wins).

    Field names: ticket, status, kind, services, places, postcodes, start, expected_end, end,
    description, downtime. Continuation lines are joined with single spaces.
    """
    c = _compile(rules)
    found: dict[str, str] = {}
    current: str | None = None
    parts: list[str] = []

    def flush() -> None:
        nonlocal current, parts
        if current is not None and current not in found:
            found[current] = re.sub(r"\s+", " ", " ".join(p for p in parts if p)).strip()
        current, parts = None, []

    for line in text.split("\n"):
        if not line.strip():
            flush()
            continue
        if _is_table_rule(line):
            continue
        if c.signature.match(line):
            flush()
            continue
        kind = _classify(line, c)
        if kind is not None:
            flush()
            if kind[0] == "known":
                current, parts = kind[1], [kind[2]]
            continue
        if current is not None:
            parts.append(line.strip().strip("|").strip())
    flush()
    return found


# ---------------------------------------------------------------------------------------------
# Values


def _canonical_all(text: str, c: _Compiled, attr: str) -> list[str]:
    regex, lookup = c.synonyms[attr]
    out: list[str] = []
    if regex is None or not text:
        return out
    for m in regex.finditer(text):
        name = lookup.get(re.sub(r"\s+", " ", m.group(0).lower()))
        if name and name not in out:
            out.append(name)
    return out


def _canonical_first(text: str, c: _Compiled, attr: str) -> str | None:
    found = _canonical_all(text, c, attr)
    return found[0] if found else None


def _is_unknown(value: str, c: _Compiled) -> bool:
    return bool(value) and c.unknown is not None and c.unknown.search(value) is not None


def _split_places(value: str, c: _Compiled) -> list[str]:
    out: list[str] = []
    for part in c.place_sep.split(value):
        part = part.strip(" \t.-()")
        part = re.sub(r"\s+", " ", part)
        if part and part.casefold() not in {p.casefold() for p in out}:
            out.append(part)
    return out


def _postcodes(value: str, c: _Compiled) -> tuple[list[str], str]:
    """Postcodes found in ``value`` (normalised) and ``value`` with them removed."""
    out: list[str] = []
    for m in c.postcode.finditer(value):
        pc = re.sub(r"(\d{4})\s*([A-Z]{2})(?![A-Za-z])", r"\1 \2", m.group(0))
        pc = re.sub(r"\s*[-\u2013]\s*", "-", pc.strip())
        if pc not in out:
            out.append(pc)
    return out, c.postcode.sub(" ", value)


def _ticket(value: str | None, c: _Compiled) -> str | None:
    if not value or _is_unknown(value, c):
        return None
    m = c.ticket.search(value)
    if m:
        return m.group(0)
    token = value.split()[0].strip(".,;:()[]#")
    return token or None


def _local_date(dt: datetime | None, tz: str) -> date | None:
    return dt.astimezone(ZoneInfo(tz)).date() if dt else None


def extract_report(mail: ParsedMail, rules: ReportRules = DEFAULT_RULES) -> OutageReport:
    """Read one :class:`OutageReport` from a parsed mail. Never raises on odd content.

    A mail that is not a report at all still gives a report (ticket and status None); the caller
    decides what to do with it.
    """
    c = _compile(rules)
    env = mail.effective
    subject = env.subject or ""
    text = mail.text or ""
    labels = read_labels(text, rules)

    # Subjects longer than any real one are not matched (bounds a configured pattern's cost).
    sm = c.subject.match(subject) if len(subject) <= _SUBJECT_MAX else None
    subj: dict[str, str] = {}
    if sm:
        groups = {k: (v or "").strip() for k, v in sm.groupdict().items()}
        kind_part = groups.get("kind", "")
        ticket_part = groups.get("ticket", "")
        if (_canonical_first(kind_part, c, "kind_values")
                or (ticket_part and c.ticket.search(ticket_part))):
            subj = groups

    # ticket
    ticket = _ticket(labels.get("ticket"), c)
    if ticket is None and subj.get("ticket"):
        ticket = _ticket(subj["ticket"], c)
    if ticket is None:
        m = c.ticket.search(subject) or c.ticket.search(text)
        ticket = m.group(0) if m else None

    # kind
    kind = None
    if labels.get("kind"):
        kind = _canonical_first(labels["kind"], c, "kind_values")
    if kind is None and subj.get("kind"):
        kind = _canonical_first(subj["kind"], c, "kind_values")
    if kind is None:
        found = _canonical_all(subject, c, "kind_values")
        kind = "onderhoud" if "onderhoud" in found else (found[0] if found else None)
    if kind not in KINDS:
        kind = "storing"

    # status
    status = None
    if labels.get("status"):
        status = _canonical_first(labels["status"], c, "status_values")
    if status is None and subj.get("status"):
        status = _canonical_first(subj["status"], c, "status_values")
    if status is None and not sm and _canonical_first(subject, c, "kind_values"):
        # a report subject in another shape ("Storing opgelost: Internet Amersfoort")
        status = _canonical_first(subject, c, "status_values")
    if status not in STATUSES:
        status = None

    # services
    services = _canonical_all(labels.get("services", ""), c, "service_values")
    if not services and subj.get("services"):
        services = _canonical_all(subj["services"], c, "service_values")

    # places and postcodes
    postcodes: list[str] = []
    if labels.get("postcodes") and not _is_unknown(labels["postcodes"], c):
        postcodes, _ = _postcodes(labels["postcodes"], c)
    place_value = labels.get("places", "")
    if place_value and _is_unknown(place_value, c):
        place_value = ""
    if place_value and not labels.get("postcodes"):
        postcodes, place_value = _postcodes(place_value, c)
    places = _split_places(place_value, c) if place_value else []
    if not places and subj.get("place"):
        places = _split_places(subj["place"], c)

    # times
    tz = rules.timezone
    start = parse_datetime(labels.get("start"), tz)
    day = _local_date(start, tz) or _local_date(env.date, tz)
    end = None
    end_expected = False
    end_unknown = False
    if labels.get("end"):
        end = parse_datetime(labels["end"], tz, default_date=day)
        if end is None and _is_unknown(labels["end"], c):
            end_unknown = True
    if end is None and labels.get("expected_end"):
        end = parse_datetime(labels["expected_end"], tz, default_date=day)
        if end is not None:
            end_expected, end_unknown = True, False
        elif _is_unknown(labels["expected_end"], c):
            end_expected, end_unknown = True, True
    if end is not None:
        end_unknown = False

    downtime = parse_duration_minutes(labels.get("downtime"))
    description = labels.get("description", "")

    return OutageReport(
        ticket=ticket,
        kind=kind,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        subject=subject,
        services=tuple(services),
        places=tuple(places),
        postcodes=tuple(postcodes),
        start=start,
        end=end,
        end_expected=end_expected,
        end_unknown=end_unknown,
        downtime_minutes=downtime,
        description=description,
        sent_at=env.date,
    )
