"""Text of one (parsed) mail -> one OutageReport.

Pure: no I/O, no asyncio. Everything the extractor looks for -- label synonyms, value synonyms and
regular expressions -- lives in :class:`ReportRules`, so an operator can adapt the parser from the
``[parser]`` table of the config file without touching code (see :func:`rules_from_config`).

How a report is read:

* ``Label: value`` lines (also ``Label | value`` as html2text renders HTML table rows, and
  ``Label<TAB>value``; a *known* label followed by two or more spaces also works). A value continues
  on the following lines until a blank line, a greeting/signature line or a label line: a known
  label, or an unknown ``Label:`` of a few words without digits at the start of a line (or
  indented, left of the column where the current value starts); in lower case ("aantal
  klanten: 120") not inside a description sentence. So a wrapped line such as ``ontstaan om
  09:42 door ...`` or ``... zijn / onderweg: herstel volgt`` continues the value. The lines
  are kept: places one per line are separate places.
* What the labels do not say is taken from the subject
  (``Storingsmelding KPN: Internet en VoIP - Amersfoort (INC000012345678) - Nieuw``), and a ticket
  id matching ``ticket_pattern`` anywhere in the subject or the body. Without a kind label, a
  maintenance word anywhere in the subject makes the report maintenance.
* A status word after a negation or partial word ("niet opgelost", "deels hersteld") is not
  that status: a resolved, cancelled or announced one becomes ``update``.
* Dates are day-first (Dutch). Zone-less times are local time in ``rules.timezone`` and stored as
  UTC. A time that does not exist (the hour skipped when summer time starts) is read with the
  offset from before the change; an ambiguous time (the hour repeated when summer time ends) is
  read as its first occurrence (summer time). A start or period value may hold a window
  ("28-11-2026 00:00 - 06:00", "tussen 00:00 en 06:00"); an end written as a bare time that
  would be before the start is on the next day.
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
    "parse_period",
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
    "period_labels": "period",
    "date_labels": "date",
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
    # A window in one value: "28-11-2026 00:00 - 06:00", "van 28-11-2026 22:00 tot
    # 29-11-2026 04:00", "tussen 00:00 en 06:00". Also read from start labels. Not "Gepland",
    # "Scheduled" or "Werkzaamheden": status and kind words, also used as a heading or a
    # label of the work itself ("Werkzaamheden: vervanging van een glasvezelknooppunt").
    period_labels: tuple[str, ...] = (
        "Periode", "Tijdvak", "Tijdsvak", "Tijdvenster", "Tijdsvenster", "Onderhoudsvenster",
        "Uitvoering", "Uitvoeringsperiode", "Gepland op", "Wanneer",
        "Period", "Time window", "Window", "Maintenance window", "Scheduled for",
        "When",
    )
    # Only the day of these is used: for a start, period or end written as a bare time. Not
    # "Date": a forward header ("Date: Sat, 28 Nov 2026 ...") left in the text would give the
    # day the mail was forwarded.
    date_labels: tuple[str, ...] = (
        "Datum", "Datum werkzaamheden", "Datum onderhoud", "Uitvoeringsdatum", "Geplande datum",
        "Planned date", "Maintenance date", "Scheduled date",
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
                    "in progress", "voortgang", "vervolg", "vervolgmelding", "unresolved",
                    "onopgelost")),
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
                       "netwerkonderhoud", "onderhoudsvenster", "onderhoudsaankondiging",
                       "maintenance", "planned maintenance", "scheduled maintenance",
                       "maintenance window", "planned work", "planned works")),
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
    # In a subject, a kind word after one of these names a cause, not the kind: "Storing door
    # werkzaamheden Amersfoort", "Storing tijdens onderhoud: ..." are outages, though
    # "werkzaamheden" and "onderhoud" are maintenance words. A subject whose only kind word
    # follows one ("Onderbreking wegens gepland onderhoud Zwolle") still uses it.
    kind_cause_words: tuple[str, ...] = (
        "door", "wegens", "vanwege", "als gevolg van", "ten gevolge van", "veroorzaakt door",
        "tijdens", "na", "bij", "due to", "caused by", "because of", "following", "after",
        "during")
    # A status word with one of these before it (up to two words between: "nog niet volledig
    # opgelost") is not that status: a negated resolved / cancelled / announced status is an
    # update, a negated new or update status is skipped. Whole words, case-insensitive.
    # Note: maintenance "Niet uitgevoerd" (not carried out) is thus an update, not cancelled.
    status_negation_words: tuple[str, ...] = ("niet", "nog niet", "not", "not yet")
    # The same for a partial status ("deels opgelost"); these also count right after the
    # status word when they end the status phrase ("opgelost (gedeeltelijk)", "hersteld -
    # deels"), not when they start a new clause ("opgelost, gedeeltelijke vervanging van de
    # kabel uitgevoerd" is resolved).
    status_partial_words: tuple[str, ...] = (
        "deels", "gedeeltelijk", "grotendeels", "gedeeltelijke", "partieel", "voor een deel",
        "partially", "partly", "partial", "mostly", "largely",
    )
    # Words around a date or time that carry no date ("op 28-11-2026 om 14:00", "vanaf ca.
    # 14:00", "28-11-2026 vanavond 22:00"): removed before a date is read, each optionally
    # followed by a dot. Only these (and a dash) may stand between a date and its time: in
    # "28-11-2026 versie 2.10" or "28-11-2026 update volgt 12:00" the number is no time.
    date_filler_words: tuple[str, ...] = (
        "om", "te", "op", "van", "vanaf", "tussen", "rond", "rondom", "omstreeks", "circa",
        "ca", "ongeveer", "plm", "uiterlijk", "vanochtend", "vanmorgen", "vanmiddag",
        "vanavond", "vannacht", "'s ochtends", "'s morgens", "'s middags", "'s avonds",
        "'s nachts", "at", "on", "from", "between", "around", "about", "approximately",
        "approx", "by",
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
    # Between the two ends of a period ("00:00 - 06:00", "00:00-06:00", "tot", "t/m", "en" as
    # in "tussen 00:00 en 06:00"). Matched right after the first date/time of a start or
    # period value, on lower-cased text.
    period_separators: str = (
        r"\s*+(?:[-\u2013\u2014]|(?:tot(?:\s++en\s++met)?+|t/m|tm|en|and|to|till|until|through)"
        r"(?!\w))\s*+"
    )
    # A line matching this ends a label value (greeting / signature).
    signature_pattern: str = (
        r"(?i)^\s*+(?:met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|"
        r"hartelijke\s+groet(?:en)?|groet(?:en)?|mvg|kind\s+regards|best\s+regards|regards|"
        r"with\s+kind\s+regards|sincerely)\b"
    )


DEFAULT_RULES = ReportRules()

_REGEX_FIELDS = ("ticket_pattern", "subject_pattern", "postcode_pattern", "place_separators",
                 "period_separators", "signature_pattern")
_SYNONYM_FIELDS = ("status_values", "kind_values", "service_values")


def rules_from_config(d: dict) -> ReportRules:
    """Build :class:`ReportRules` from the ``[parser]`` TOML table, starting from the defaults.

    Keys are the field names of :class:`ReportRules`:

    * ``timezone`` (string, an IANA zone name);
    * ``*_labels``, ``unknown_values``, ``kind_cause_words``, ``status_negation_words``,
      ``status_partial_words`` and ``date_filler_words`` (lists of strings; the four word
      lists may be empty);
    * ``status_values``, ``kind_values``, ``service_values`` (tables mapping a canonical name to a
      list of synonyms; status names must be one of nieuw/update/opgelost/geannuleerd/
      aangekondigd, kind names storing/onderhoud);
    * ``ticket_pattern``, ``subject_pattern``, ``postcode_pattern``, ``place_separators``,
      ``period_separators``, ``signature_pattern`` (regular expressions, Python syntax).

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
    body = _word_list_body(words)
    return re.compile(rf"(?<!\w)(?:{body})(?:\.|(?!\w))") if body else None


# ISO 8601 with "T" and a numeric offset: "2026-11-28T09:42-05:00" is UTC-5, not a range.
_ISO_OFFSET = re.compile(
    r"(?<=\d)t(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-]\d{2}(?::?\d{2})?)(?![\d:])")


def _normalise_date_text(text: str, rules: ReportRules | None = None) -> str:
    s = text.lower().replace("\u00a0", " ")
    s = s.replace(",", " ")
    s = _ISO_OFFSET.sub(r" \1 utc\2", s)
    s = re.sub(rf"(?<![\w]){_WEEKDAYS}(?:\.|(?!\w))", " ", s)
    fillers = _date_fillers((rules or DEFAULT_RULES).date_filler_words)
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
                   rules: ReportRules | None = None) -> datetime | None:
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
                 rules: ReportRules | None = None) -> tuple[datetime | None, datetime | None]:
    """``(start, end)`` of a value that may hold a window: "28-11-2026 00:00 - 06:00",
    "28-11-2026 00:00 tot 06:00", "van 28-11-2026 22:00 tot 29-11-2026 04:00", "tussen 00:00
    en 06:00" (a bare time is on ``default_date``). The separators are
    ``rules.period_separators``. An end written as a bare time is on the start's day, or on
    the next day when it would be earlier than the start. A single date/time gives
    ``(start, None)``; nothing readable gives ``(None, None)``. Never raises.
    """
    if not text:
        return None, None
    c = _compile(rules or DEFAULT_RULES)
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
        sep = c.period_sep.match(s, pos)
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


# ---------------------------------------------------------------------------------------------
# Labels


def _label_key(label: str) -> str:
    return re.sub(r"[\s*_]+", "", label.lower()).rstrip(":.")


def _word_list_body(words) -> str | None:
    """Regex alternatives for words/phrases (lower-cased, longest first, any blanks between
    the words of a phrase), or None when there are none."""
    alts = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not alts:
        return None
    return "|".join(r"\s+".join(re.escape(w) for w in a.split()) for a in alts)


def _phrase_regex(phrases) -> re.Pattern | None:
    """One regex matching any phrase as a whole word/phrase, longest first, case-insensitive."""
    body = _word_list_body(phrases)
    if body is None:
        return None
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
    period_sep: re.Pattern
    signature: re.Pattern
    kind_cause: re.Pattern | None  # where a subject's cause clause starts
    status_before: re.Pattern | None  # a negation or partial word right before a status word
    status_after: re.Pattern | None  # a partial word right after a status word


@functools.lru_cache(maxsize=16)
def _compile(rules: ReportRules) -> _Compiled:
    label_field: dict[str, str] = {}
    all_labels: list[str] = []
    for attr, target in LABEL_FIELDS.items():
        for label in getattr(rules, attr):
            label_field.setdefault(_label_key(label), target)
            all_labels.append(label)
    prefix = None
    body = _word_list_body(all_labels)
    if body is not None:
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
    before = _word_list_body((*rules.status_negation_words, *rules.status_partial_words))
    after = _word_list_body(rules.status_partial_words)
    cause = _word_list_body(rules.kind_cause_words)
    return _Compiled(
        label_field=label_field,
        known_label_prefix=prefix,
        synonyms=synonyms,
        unknown=_phrase_regex(rules.unknown_values),
        ticket=re.compile(rules.ticket_pattern),
        subject=re.compile(rules.subject_pattern, re.IGNORECASE),
        postcode=re.compile(rules.postcode_pattern),
        place_sep=re.compile(rules.place_separators, re.IGNORECASE),
        period_sep=re.compile(rules.period_separators, re.IGNORECASE),
        signature=re.compile(rules.signature_pattern),
        kind_cause=re.compile(rf"(?<!\w)(?:{cause})(?!\w)", re.IGNORECASE) if cause else None,
        # Used on a window of at most _STATUS_WINDOW characters around the status word.
        status_before=re.compile(rf"(?<!\w)(?:{before})(?:\s++[^\W\d_]++){{0,2}}+\s*+$",
                                 re.IGNORECASE) if before else None,
        # The partial word must end the phrase: the end of the value or punctuation follows.
        status_after=re.compile(rf"\s*+[(\[:,\-\u2013\u2014]?+\s*+(?:{after})(?!\w)"
                                r"\s*+(?:[)\].,;:!?\-\u2013\u2014]|$)",
                                re.IGNORECASE) if after else None,
    )


_LABEL_SEPS = ":|\t"


def _label_line(line: str) -> tuple[str, str, str, bool] | None:
    """``(indent, label, value, loose)`` of a ``Label: value`` / ``Label | value`` /
    ``Label<TAB>value`` line (label 1-60 characters, an optional bullet before it), else None.
    ``value`` is the rest of the line (a suffix of it); ``loose`` is True when the separator is
    a colon with no blank after it ("Let op:modems", "09:42"), which only a known label may use.

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
        after = cand[cut + 1:cut + 2]
        loose = cand[cut] == ":" and after not in ("", "|") and not after.isspace()
        value = cand[cut:].lstrip(" \t")
        if value[:1] in (":", "|") and cand[cut] == "\t":  # "Label<TAB>: value"
            value = value[1:].lstrip(" \t")
        elif cand[cut] != "\t":
            value = cand[cut + 1:].lstrip(" \t")
        if value.startswith("|"):
            value = value[1:].lstrip(" \t")
        return indent, label, value, loose
    return None


# The shape of a label the config does not know ("Wijkcentrale", "Aantal klanten"): letters
# (no digits: "om 09:42" is not a label), no sentence break inside.
_GENERIC_LABEL = re.compile(r"^[^\W\d_](?:[^\W\d_]|[()/.&' -]){0,39}+$")
_GENERIC_LABEL_WORDS = 4  # at the start of a line
_GENERIC_LABEL_WORDS_INDENTED = 3  # indented, left of the current value's column
_SENTENCE_ENDS = (".", "!", "?")
_SUBJECT_MAX = 500
_TABLE_RULE_CHARS = frozenset(" \t|:+-")


def _is_table_rule(line: str) -> bool:
    """A table border such as ``---|---`` or ``+-----+``: only ``-|:+`` and blanks, with three
    dashes in a row. Plain string checks: linear on any line (a regex here backtracked)."""
    return "---" in line and all(ch in _TABLE_RULE_CHARS or ch.isspace() for ch in line)


def _width(text: str) -> int:
    return len(text.expandtabs(8))


def _is_generic_label(indent: str, label: str, loose: bool, value_col: int | None,
                      in_sentence: bool = False) -> bool:
    """Whether an unknown ``Label:`` ends the value before it (else the line continues it).

    At the start of a line: a label of 1-4 words. Indented: 1-3 words, and left of the column
    where the current value starts -- a wrapped value aligned under its first line ("Let op:
    herstart het modem.") stays a continuation. A label in lower case ("aantal klanten: 120")
    counts too, except when ``in_sentence`` (a description whose last line does not end a
    sentence: "Monteurs zijn / onderweg: herstel volgt")."""
    label = label.strip()
    if loose or ". " in label or not _GENERIC_LABEL.match(label):
        return False
    if not label[:1].isupper() and in_sentence:
        return False
    words = len(label.split())
    if not indent:
        return words <= _GENERIC_LABEL_WORDS
    return words <= _GENERIC_LABEL_WORDS_INDENTED and (
        value_col is None or _width(indent) < value_col)


def _classify(line: str, c: _Compiled, value_col: int | None = None,
              in_sentence: bool = False) -> tuple[str, str | None, str, int] | None:
    """``("known", field, value, value column)`` / ``("other", None, value, value column)``
    for a label line, else None (a continuation line). ``value_col`` is the column where the
    value this line may continue starts (None when there is none); ``in_sentence`` see
    :func:`_is_generic_label`."""
    m = _label_line(line)
    if m:
        field = c.label_field.get(_label_key(m[1]))
        if field:
            return ("known", field, m[2].strip().strip("|").strip(),
                    _width(line[: len(line) - len(m[2])]))
    if c.known_label_prefix is not None:
        m2 = c.known_label_prefix.match(line)
        if m2:
            field = c.label_field.get(_label_key(m2.group("label")))
            if field:
                return ("known", field, m2.group("value").strip().strip("|").strip(),
                        _width(line[: m2.start("value")]))
    if m and _is_generic_label(m[0], m[1], m[3], value_col, in_sentence):
        return ("other", None, m[2], _width(line[: len(line) - len(m[2])]))
    return None


def _read_values(text: str, c: _Compiled) -> dict[str, list[str]]:
    """Known label values in ``text``: field -> the value's lines (first occurrence wins).

    A value continues on the following lines until a blank line, a greeting/signature line or
    a line that is a label (see :func:`_classify`); table borders are skipped."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    parts: list[str] = []
    col: int | None = None

    def flush() -> None:
        nonlocal current, parts
        if current is not None and current not in found:
            found[current] = parts
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
        in_sentence = (current == "description" and bool(parts)
                       and not parts[-1].rstrip().endswith(_SENTENCE_ENDS))
        kind = _classify(line, c, col if current is not None else None, in_sentence)
        if kind is not None:
            flush()
            if kind[0] == "known":
                current, parts, col = kind[1], [kind[2]], kind[3]
            continue
        if current is not None:
            parts.append(line.strip().strip("|").strip())
    flush()
    return found


def _joined(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(p for p in lines if p)).strip()


def read_labels(text: str, rules: ReportRules = DEFAULT_RULES) -> dict[str, str]:
    """Known label values in ``text``: report field name -> value (first occurrence wins).

    Field names: ticket, status, kind, services, places, postcodes, start, expected_end, end,
    period, date, description, downtime. Continuation lines are joined with single spaces.
    """
    return {k: _joined(v) for k, v in _read_values(text, _compile(rules)).items()}


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


_STATUS_WINDOW = 60  # characters before / after a status word searched for a qualifier
_STATUS_OPEN = ("nieuw", "update")


def _status(text: str | None, c: _Compiled) -> str | None:
    """The canonical status ``text`` names, or None. A status word qualified by a negation or
    partial word (``status_negation_words``, ``status_partial_words``: "niet opgelost", "deels
    hersteld", "opgelost (gedeeltelijk)") is not that status: a qualified resolved, cancelled
    or announced status is an ``update`` (the work goes on); a qualified new/update status
    ("niet meer actief") is skipped and the next status word counts."""
    regex, lookup = c.synonyms["status_values"]
    if regex is None or not text:
        return None
    for m in regex.finditer(text):
        name = lookup.get(re.sub(r"\s+", " ", m.group(0).lower()))
        if not name:
            continue
        before = text[max(0, m.start() - _STATUS_WINDOW):m.start()]
        after = text[m.end():m.end() + _STATUS_WINDOW]
        if m.end() + _STATUS_WINDOW < len(text):
            after += "\n\x00"  # the window is not the end of the value
        qualified = ((c.status_before is not None and c.status_before.search(before))
                     or (c.status_after is not None and c.status_after.match(after)))
        if not qualified:
            return name
        if name not in _STATUS_OPEN:
            return "update"
    return None


def _is_unknown(value: str, c: _Compiled) -> bool:
    return bool(value) and c.unknown is not None and c.unknown.search(value) is not None


_PLACE_LINE_MAX = 40  # a line longer than this is part of a wrapped list, not one place
_BULLET = re.compile(r"^[-*\u2022]\s")


def _ends_with_separator(line: str, c: _Compiled) -> bool:
    """Whether ``line`` ends with a place separator (",", "en", "and", ...)."""
    probe = line.rstrip() + " X"
    return any(m.end() == len(probe) - 1 for m in c.place_sep.finditer(probe))


def _place_items(lines: list[str], c: _Compiled) -> list[str]:
    """The pieces of a places value to split at ``place_separators``: each line, when the
    places come one per line (bulleted lines, or short lines, most without a separator, as in
    an HTML cell with <br>); else the lines of a wrapped list joined with spaces. Two lines are
    always joined when the first ends with a separator ("Barneveld en") or the second starts
    with a lower-case letter ("Capelle aan / den IJssel")."""
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) < 2:
        return lines
    if all(_BULLET.match(line) for line in lines):
        return lines
    with_sep = sum(1 for line in lines if c.place_sep.search(line))
    one_per_line = (all(len(line) <= _PLACE_LINE_MAX for line in lines)
                    and 2 * with_sep <= len(lines))
    if not one_per_line:
        return [" ".join(lines)]
    groups = [[lines[0]]]
    for prev, line in zip(lines, lines[1:]):
        if _ends_with_separator(prev, c) or line[:1].islower():
            groups[-1].append(line)
        else:
            groups.append([line])
    return [" ".join(group) for group in groups]


def _split_places(lines: list[str], c: _Compiled) -> list[str]:
    """Places in a value (see :func:`_place_items`), each piece split at
    ``place_separators``; bullets and duplicates (case-insensitive) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for item in _place_items(lines, c):
        for part in c.place_sep.split(item):
            part = part.strip(" \t.-()*\u2022")
            part = re.sub(r"\s+", " ", part)
            if part and part.casefold() not in seen:
                seen.add(part.casefold())
                out.append(part)
    return out


def _postcodes(value: str, c: _Compiled) -> tuple[list[str], str]:
    """Postcodes found in ``value`` (normalised) and ``value`` with them removed."""
    out: list[str] = []
    seen: set[str] = set()
    for m in c.postcode.finditer(value):
        pc = re.sub(r"(\d{4})\s*([A-Z]{2})(?![A-Za-z])", r"\1 \2", m.group(0))
        pc = re.sub(r"\s*[-\u2013]\s*", "-", pc.strip())
        if pc not in seen:
            seen.add(pc)
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


def _window(text: str | None, tz: str, day: date | None, not_after: datetime | None,
            rules: ReportRules) -> tuple[datetime | None, datetime | None]:
    """Start and end of a start or period value (:func:`parse_period`). Written as bare times
    they are on ``day``, or on the day before when that would put the start after
    ``not_after``."""
    start, end = parse_period(text, tz, None, rules)
    if start is not None or day is None:
        return start, end
    start, end = parse_period(text, tz, day, rules)
    if start is not None and not_after is not None and start > not_after:
        start, end = parse_period(text, tz, day - timedelta(days=1), rules)
    return start, end


def _end_time(text: str, tz: str, day: date | None, start: datetime | None,
              rules: ReportRules) -> datetime | None:
    """An end value. Written as a bare time ("02:00") it is on ``day``, or on the next day when
    it would be earlier than ``start`` (a night window); a written date is never moved."""
    end = parse_datetime(text, tz, default_date=day, rules=rules)
    if (end is not None and start is not None and day is not None and end < start
            and parse_datetime(text, tz, rules=rules) is None):
        end = parse_datetime(text, tz, default_date=day + timedelta(days=1), rules=rules)
    return end


def _subject_kind(subject: str, kind_part: str, c: _Compiled) -> str | None:
    """The kind a subject names (see :func:`extract_report`); ``kind_part`` is the kind group
    of a subject in the standard shape ("" otherwise)."""
    cause = c.kind_cause.search(subject) if c.kind_cause else None
    before_cause = _canonical_all(subject[:cause.start()] if cause else subject, c,
                                  "kind_values")
    if "onderhoud" in before_cause:
        return "onderhoud"
    return (_canonical_first(kind_part, c, "kind_values")
            or (before_cause[0] if before_cause else None)
            or _canonical_first(subject, c, "kind_values"))


def extract_report(mail: ParsedMail, rules: ReportRules = DEFAULT_RULES) -> OutageReport:
    """Read one :class:`OutageReport` from a parsed mail. Never raises on odd content.

    A mail that is not a report at all still gives a report (ticket and status None); the caller
    decides what to do with it.
    """
    c = _compile(rules)
    env = mail.effective
    subject = env.subject or ""
    text = mail.text or ""
    values = _read_values(text, c)
    labels = {k: _joined(v) for k, v in values.items()}

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

    # kind: the kind label; else the subject. A kind word after a cause word ("Storing
    # tijdens onderhoud", "... - storing na werkzaamheden") names the cause, not the kind.
    # A maintenance word with no cause word before it wins anywhere (a maintenance notice may
    # come in an outage-shaped subject, "Storingsmelding - Gepland onderhoud"); else the
    # subject's kind part decides, else any kind word before the cause, else any kind word.
    kind = None
    if labels.get("kind"):
        kind = _canonical_first(labels["kind"], c, "kind_values")
    if kind is None:
        kind = _subject_kind(subject, subj.get("kind", ""), c)
    if kind not in KINDS:
        kind = "storing"

    # status
    status = None
    if labels.get("status"):
        status = _status(labels["status"], c)
    if status is None and subj.get("status"):
        status = _status(subj["status"], c)
    if status is None and not sm and _canonical_first(subject, c, "kind_values"):
        # a report subject in another shape ("Storing opgelost: Internet Amersfoort")
        status = _status(subject, c)
    if status not in STATUSES:
        status = None
    if status == "aangekondigd" and kind == "storing":
        # Only maintenance is announced; an outage "gepland" ("Storing na gepland onderhoud")
        # has no status we can trust, so it goes to review instead of a wrong notice.
        status = None

    # services
    services = _canonical_all(labels.get("services", ""), c, "service_values")
    if not services and subj.get("services"):
        services = _canonical_all(subj["services"], c, "service_values")

    # places and postcodes
    postcodes: list[str] = []
    if labels.get("postcodes") and not _is_unknown(labels["postcodes"], c):
        postcodes, _ = _postcodes(labels["postcodes"], c)
    place_lines = [line for line in values.get("places", []) if line]
    if place_lines and _is_unknown(_joined(place_lines), c):
        place_lines = []
    if place_lines and not labels.get("postcodes"):
        rest = []
        seen_codes: set[str] = set()
        for line in place_lines:
            found_codes, line = _postcodes(line, c)
            for pc in found_codes:
                if pc not in seen_codes:
                    seen_codes.add(pc)
                    postcodes.append(pc)
            rest.append(line)
        place_lines = rest
    places = _split_places(place_lines, c)
    if not places and subj.get("place"):
        places = _split_places([subj["place"]], c)

    # times. A start or period value may be a window ("28-11-2026 00:00 - 06:00"); one
    # written as a bare time is on the date label's day, else on the day the mail was sent
    # (for an outage: the day before, if that would put its start after the mail).
    tz = rules.timezone
    date_day = _local_date(parse_datetime(labels.get("date"), tz, rules=rules), tz)
    bare_day = date_day or _local_date(env.date, tz)
    not_after = env.date if kind == "storing" and date_day is None else None
    start, window_end = _window(labels.get("start"), tz, bare_day, not_after, rules)
    if labels.get("period"):
        period_start, period_end = _window(labels["period"], tz, bare_day, not_after, rules)
        if start is None:
            start = period_start
        window_end = window_end or period_end
    day = _local_date(start, tz) or bare_day
    end = None
    end_expected = False
    end_unknown = False
    if labels.get("end"):
        end = _end_time(labels["end"], tz, day, start, rules)
        if end is None and _is_unknown(labels["end"], c):
            end_unknown = True
    if end is None and labels.get("expected_end"):
        end = _end_time(labels["expected_end"], tz, day, start, rules)
        if end is not None:
            end_expected, end_unknown = True, False
        elif _is_unknown(labels["expected_end"], c):
            end_expected, end_unknown = True, True
    if end is None and window_end is not None:
        end, end_expected = window_end, False
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
