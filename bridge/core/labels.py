"""What the report reader looks for: :class:`ReportRules` (label synonyms, value synonyms and
regular expressions) built from the config's ``[parser]`` table, and those rules compiled for
matching (:func:`compile_rules`).

Pure: no I/O. An operator adapts the parser from the ``[parser]`` table of the config file
without touching code (see :func:`rules_from_config`); :mod:`bridge.core.report` reads a mail
with the compiled rules. Labels are matched case-insensitively, ignoring blanks, ``*``, ``_``
and a trailing colon or dot (:func:`label_key`); a label written with qualifier words around
a configured one ("Begin storing", "Verwachte eindtijd storing", "Start of maintenance") is
that label (:func:`match_label`).
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, fields
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.core.dates import DATE_FILLER_WORDS, PERIOD_SEPARATORS
from bridge.core.words import phrase_regex, word_list_body

__all__ = [
    "DEFAULT_RULES",
    "KINDS",
    "LABEL_FIELDS",
    "STATUSES",
    "CompiledRules",
    "ReportRules",
    "compile_rules",
    "label_key",
    "match_label",
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
    "customer_labels": "customer",  # no report field: a sign of a single customer's ticket
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
    # Labels that name one end customer's line, not an area: a mail with a value for one of
    # these is a service ticket about a single connection and goes to review (see
    # bridge.core.confidence). They are read as labels (so they end the value before them)
    # but fill no report field.
    customer_labels: tuple[str, ...] = (
        "Klantnaam", "Klant", "Klantnummer", "Klantreferentie", "Aansluitnummer",
        "Aansluiting", "Aansluitadres", "Installatieadres", "Adres", "Huisnummer",
        "Lijnnummer", "Lijn-ID", "Lijn ID", "Access ID", "Circuit ID", "Circuitnummer",
        "Uw referentie", "Uw kenmerk", "Customer", "Customer name", "Customer number",
        "Customer reference", "Line ID", "Line number", "Installation address",
        "Service address", "Address", "Your reference",
    )
    # Phrases (whole words, case-insensitive) that address one customer's own report in the
    # subject or body: "Uw melding", "your ticket". Same effect as customer_labels.
    # Not "de klant" or "the customer": an area notice may say "de klant kan het modem
    # herstarten".
    customer_phrases: tuple[str, ...] = (
        "uw melding", "uw storingsmelding", "uw storingsticket", "uw ticket", "uw aanvraag",
        "uw aansluiting", "your ticket", "your report", "your request", "your service request",
        "your connection",
    )
    # One street address: a house number and a full postcode ("Dorpsstraat 12, 3811 AB
    # Amersfoort", "Dorpsstraat 12a\n3811AB"). An area outage names places and postcode
    # areas, not a house number. Python regex; searched in the body.
    address_pattern: str = (
        r"(?<![\w-])[^\W\d_][\w.'-]*+(?:[ \t][^\W\d_][\w.'-]*+){0,3}+[ \t]\d{1,5}"
        r"(?:[ \t]?[a-zA-Z](?![\w])|[-/]\d{1,4})?+[ \t]*+,?+\s{0,3}[1-9]\d{3}[ \t]?[A-Z]{2}"
        r"(?![\w])"
    )
    # Words that may stand before, after or between the words of a configured label without
    # changing which label it is: "Begin storing" is "Begin", "Einde werkzaamheden" is
    # "Einde", "Getroffen plaatsen" is "Plaatsen", "Start of maintenance" is "Start". Not
    # words that change the meaning ("verwachte", "oorspronkelijke", "vorige", "original"):
    # "Oorspronkelijke eindtijd" is not the end. Whole words, case-insensitive.
    label_qualifier_words: tuple[str, ...] = (
        "storing", "storingen", "verstoring", "onderhoud", "onderhoudswerkzaamheden",
        "werkzaamheden", "netwerkonderhoud", "getroffen", "betrokken", "geraakte", "geplande",
        "nieuwe", "gewijzigde", "aangepaste", "huidige", "van", "de", "het", "der", "voor",
        "maintenance", "outage", "disruption", "works", "work", "planned", "affected",
        "impacted", "new", "updated", "revised", "current", "of", "the", "for",
    )
    # At most this many words in a label matched with qualifier words (the whole label, as
    # written in the mail). Longer text before a colon is a sentence, not a label.
    label_max_words: int = 6

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
    # Words around a date or time that carry no date: see bridge.core.dates.DATE_FILLER_WORDS.
    date_filler_words: tuple[str, ...] = DATE_FILLER_WORDS
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
    # Between the two ends of a period: see bridge.core.dates.PERIOD_SEPARATORS.
    period_separators: str = PERIOD_SEPARATORS
    # A line matching this ends a label value (greeting / signature).
    signature_pattern: str = (
        r"(?i)^\s*+(?:met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|"
        r"hartelijke\s+groet(?:en)?|groet(?:en)?|mvg|kind\s+regards|best\s+regards|regards|"
        r"with\s+kind\s+regards|sincerely)\b"
    )


DEFAULT_RULES = ReportRules()

_REGEX_FIELDS = ("ticket_pattern", "subject_pattern", "postcode_pattern", "place_separators",
                 "period_separators", "signature_pattern", "address_pattern")
_INT_FIELDS = {"label_max_words": (1, 12)}
_SYNONYM_FIELDS = ("status_values", "kind_values", "service_values")


def rules_from_config(d: dict) -> ReportRules:
    """Build :class:`ReportRules` from the ``[parser]`` TOML table, starting from the defaults.

    Keys are the field names of :class:`ReportRules`:

    * ``timezone`` (string, an IANA zone name);
    * ``*_labels``, ``unknown_values``, ``kind_cause_words``, ``status_negation_words``,
      ``status_partial_words``, ``date_filler_words``, ``label_qualifier_words`` and
      ``customer_phrases`` (lists of strings; the word and phrase lists and
      ``customer_labels`` may be empty);
    * ``label_max_words`` (an integer from 1 to 12);
    * ``status_values``, ``kind_values``, ``service_values`` (tables mapping a canonical name to a
      list of synonyms; status names must be one of nieuw/update/opgelost/geannuleerd/
      aangekondigd, kind names storing/onderhoud);
    * ``ticket_pattern``, ``subject_pattern``, ``postcode_pattern``, ``place_separators``,
      ``period_separators``, ``signature_pattern``, ``address_pattern`` (regular expressions,
      Python syntax).

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
        elif key in _INT_FIELDS:
            low, high = _INT_FIELDS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{where}: expected an integer from {low} to {high}, "
                                 f"got {value!r}")
            changes[key] = value
        else:  # label lists, word and phrase lists, unknown_values
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
# Compiled rules


def label_key(label: str) -> str:
    """``label`` as it is compared: lower case, without blanks, ``*`` and ``_``, and without a
    trailing colon or dot ("Ticket nummer:" -> "ticketnummer")."""
    return re.sub(r"[\s*_]+", "", label.lower()).rstrip(":.")


@dataclass(frozen=True)
class CompiledRules:
    """:class:`ReportRules` compiled for matching (see :func:`compile_rules`)."""

    label_field: dict  # label_key(label) -> report field name
    known_label_prefix: re.Pattern | None  # a known label followed by 2+ blanks or a TAB
    qualifiers: frozenset  # lower-cased label_qualifier_words
    label_max_words: int
    synonyms: dict  # field -> (regex, {lowered synonym: canonical})
    unknown: re.Pattern | None
    ticket: re.Pattern
    subject: re.Pattern
    postcode: re.Pattern
    place_sep: re.Pattern
    signature: re.Pattern
    kind_cause: re.Pattern | None  # where a subject's cause clause starts
    status_before: re.Pattern | None  # a negation or partial word right before a status word
    status_after: re.Pattern | None  # a partial word right after a status word
    customer_phrases: re.Pattern | None
    address: re.Pattern


@functools.lru_cache(maxsize=16)
def compile_rules(rules: ReportRules) -> CompiledRules:
    """The regular expressions and lookup tables of ``rules`` (cached per rules object).

    Raises ``re.error`` for a pattern that does not compile (:func:`rules_from_config` has
    already refused those for rules from the config)."""
    label_field: dict[str, str] = {}
    all_labels: list[str] = []
    for attr, target in LABEL_FIELDS.items():
        for label in getattr(rules, attr):
            label_field.setdefault(label_key(label), target)
            all_labels.append(label)
    prefix = None
    body = word_list_body(all_labels)
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
        synonyms[attr] = (phrase_regex(lookup), lookup)
    before = word_list_body((*rules.status_negation_words, *rules.status_partial_words))
    after = word_list_body(rules.status_partial_words)
    cause = word_list_body(rules.kind_cause_words)
    return CompiledRules(
        label_field=label_field,
        known_label_prefix=prefix,
        qualifiers=frozenset(w.lower() for w in rules.label_qualifier_words),
        label_max_words=rules.label_max_words,
        synonyms=synonyms,
        unknown=phrase_regex(rules.unknown_values),
        ticket=re.compile(rules.ticket_pattern),
        subject=re.compile(rules.subject_pattern, re.IGNORECASE),
        postcode=re.compile(rules.postcode_pattern),
        place_sep=re.compile(rules.place_separators, re.IGNORECASE),
        signature=re.compile(rules.signature_pattern),
        kind_cause=re.compile(rf"(?<!\w)(?:{cause})(?!\w)", re.IGNORECASE) if cause else None,
        # Used on a window of at most report._STATUS_WINDOW characters around the status word.
        status_before=re.compile(rf"(?<!\w)(?:{before})(?:\s++[^\W\d_]++){{0,2}}+\s*+$",
                                 re.IGNORECASE) if before else None,
        # The partial word must end the phrase: the end of the value or punctuation follows.
        status_after=re.compile(rf"\s*+[(\[:,\-\u2013\u2014]?+\s*+(?:{after})(?!\w)"
                                r"\s*+(?:[)\].,;:!?\-\u2013\u2014]|$)",
                                re.IGNORECASE) if after else None,
        customer_phrases=phrase_regex(rules.customer_phrases),
        address=re.compile(rules.address_pattern),
    )


# What a label as written may hold to be matched by its words: letters, blanks and
# ( ) / . & ' - (no digits, commas or sentence ends), at most _LABEL_CHARS characters.
_LABEL_TEXT = re.compile(r"[^\W\d_](?:[^\W\d_]|[()/.&' -])*+")
_LABEL_CHARS = 60


def match_label(label: str, c: CompiledRules) -> str | None:
    """The report field the label ``label`` (as written before its colon) fills, or None.

    A configured label matches as a whole string (:func:`label_key`: case, blanks, ``*``,
    ``_`` and a trailing colon ignored). Else the label is matched by its words: the words of
    one configured label present in order, with only ``label_qualifier_words`` before, after
    or between them ("Begin storing" -> start, "Einde van de werkzaamheden" -> end,
    "Getroffen plaatsen" -> places, "Start of maintenance" -> start). A label of more than
    ``label_max_words`` words, or with a digit, comma or sentence end in it, is not matched
    by its words; a label of qualifier words only ("Storing", "Werkzaamheden") is no label.
    When several configured labels fit, the one with the most words wins (the fewest
    qualifiers dropped). At most 2^``label_max_words`` look-ups."""
    field = c.label_field.get(label_key(label))
    if field is not None or not c.qualifiers:
        return field
    text = re.sub(r"[*_]+", "", label).strip().rstrip(":.").strip()
    if len(text) > _LABEL_CHARS or not _LABEL_TEXT.fullmatch(text):
        return None
    words = text.lower().split()
    if len(words) > c.label_max_words:
        return None
    optional = [i for i, w in enumerate(words) if w in c.qualifiers]
    if not optional or len(optional) == len(words):
        return None
    for n in range(1, len(optional) + 1):
        for drop in itertools.combinations(optional, n):
            key = "".join(w for i, w in enumerate(words) if i not in drop)
            field = c.label_field.get(key)
            if field is not None:
                return field
    return None
