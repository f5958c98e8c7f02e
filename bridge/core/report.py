"""Text of one (parsed) mail -> one OutageReport.

Pure: no I/O, no asyncio. Everything the extractor looks for -- label synonyms, value synonyms and
regular expressions -- lives in :class:`~bridge.core.labels.ReportRules`, so an operator can
adapt the parser from the ``[parser]`` table of the config file without touching code (see
:func:`~bridge.core.labels.rules_from_config`). Dates and durations are read by
:mod:`bridge.core.dates`, places and postcodes by :mod:`bridge.core.places`.

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
* Dates are day-first (Dutch); zone-less times are local time in ``rules.timezone`` and stored
  as UTC (see :mod:`bridge.core.dates`). A start or period value may hold a window
  ("28-11-2026 00:00 - 06:00", "tussen 00:00 en 06:00"); an end written as a bare time that
  would be before the start is on the next day.

``parse_datetime``, ``parse_period``, ``parse_duration_minutes`` (from :mod:`bridge.core.dates`)
and ``DEFAULT_RULES``, ``ReportRules``, ``rules_from_config`` (from :mod:`bridge.core.labels`)
are re-exported here for callers of the former single module.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.core.dates import parse_datetime, parse_duration_minutes, parse_period
from bridge.core.labels import (
    DEFAULT_RULES,
    KINDS,
    STATUSES,
    CompiledRules,
    ReportRules,
    label_key,
    match_label,
    rules_from_config,
)
from bridge.core.labels import compile_rules as _compile  # the name the reader has always used
from bridge.core.models import OutageReport, ParsedMail
from bridge.core.places import read_postcodes, split_places

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

# ---------------------------------------------------------------------------------------------
# Labels

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


_COLUMN_GAP = re.compile(r" {2,}+|\t")


def _aligned_label(line: str, c: CompiledRules) -> tuple[str, str, str, int] | None:
    """``("qualified", field, value, value column)`` for an aligned ``Label    value`` line
    whose label is a configured one with qualifier words ("Begin storing     09:42"), else
    None. Whole configured labels are found by ``CompiledRules.known_label_prefix``."""
    rest = line.lstrip(" \t")
    gap = _COLUMN_GAP.search(rest, 0, 61)
    if gap is None or gap.start() == 0:
        return None
    value = rest[gap.end():].strip()
    if not value:
        return None
    field = match_label(rest[:gap.start()], c)
    if field is None:
        return None
    start = len(line) - len(rest) + gap.end()
    return ("qualified", field, value.strip("|").strip(), _width(line[:start]))


def _classify(line: str, c: CompiledRules, value_col: int | None = None,
              in_sentence: bool = False) -> tuple[str, str | None, str, int] | None:
    """``("known", field, value, value column)`` (a configured label as a whole),
    ``("qualified", ...)`` (one with qualifier words, :func:`~bridge.core.labels.match_label`)
    or ``("other", None, value, value column)`` for a label line, else None (a continuation line). ``value_col`` is the column where the
    value this line may continue starts (None when there is none); ``in_sentence`` see
    :func:`_is_generic_label`."""
    m = _label_line(line)
    if m:
        field = match_label(m[1], c)
        if field:
            how = "known" if c.label_field.get(label_key(m[1])) else "qualified"
            return (how, field, m[2].strip().strip("|").strip(),
                    _width(line[: len(line) - len(m[2])]))
    if c.known_label_prefix is not None:
        m2 = c.known_label_prefix.match(line)
        if m2:
            field = c.label_field.get(label_key(m2.group("label")))
            if field:
                return ("known", field, m2.group("value").strip().strip("|").strip(),
                        _width(line[: m2.start("value")]))
    aligned = _aligned_label(line, c)
    if aligned is not None:
        return aligned
    if m and _is_generic_label(m[0], m[1], m[3], value_col, in_sentence):
        return ("other", None, m[2], _width(line[: len(line) - len(m[2])]))
    return None


def _read_values(text: str, c: CompiledRules) -> dict[str, list[str]]:
    """Known label values in ``text``: field -> the value's lines (first occurrence wins,
    except that a configured label written as a whole wins over an earlier one matched with
    qualifier words: "Storing opgelost: de kabel is hersteld" does not hide a later
    "Eindtijd: 11:02").

    A value continues on the following lines until a blank line, a greeting/signature line or
    a line that is a label (see :func:`_classify`); table borders are skipped."""
    found: dict[str, list[str]] = {}
    weak: set[str] = set()  # fields found only under a label with qualifier words
    current: str | None = None
    current_weak = False
    parts: list[str] = []
    col: int | None = None

    def flush() -> None:
        nonlocal current, parts
        if current is not None and (current not in found
                                    or (current in weak and not current_weak)):
            found[current] = parts
            if current_weak:
                weak.add(current)
            else:
                weak.discard(current)
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
            if kind[0] != "other":
                current, parts, col = kind[1], [kind[2]], kind[3]
                current_weak = kind[0] == "qualified"
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


def _canonical_all(text: str, c: CompiledRules, attr: str) -> list[str]:
    regex, lookup = c.synonyms[attr]
    out: list[str] = []
    if regex is None or not text:
        return out
    for m in regex.finditer(text):
        name = lookup.get(re.sub(r"\s+", " ", m.group(0).lower()))
        if name and name not in out:
            out.append(name)
    return out


def _canonical_first(text: str, c: CompiledRules, attr: str) -> str | None:
    found = _canonical_all(text, c, attr)
    return found[0] if found else None


_STATUS_WINDOW = 60  # characters before / after a status word searched for a qualifier
_STATUS_OPEN = ("nieuw", "update")


def _status(text: str | None, c: CompiledRules) -> str | None:
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


def _is_unknown(value: str, c: CompiledRules) -> bool:
    return bool(value) and c.unknown is not None and c.unknown.search(value) is not None


def _ticket(value: str | None, c: CompiledRules) -> str | None:
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


def _subject_kind(subject: str, kind_part: str, c: CompiledRules) -> str | None:
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
        postcodes, _ = read_postcodes(labels["postcodes"], c)
    place_lines = [line for line in values.get("places", []) if line]
    if place_lines and _is_unknown(_joined(place_lines), c):
        place_lines = []
    if place_lines and not labels.get("postcodes"):
        rest = []
        seen_codes: set[str] = set()
        for line in place_lines:
            found_codes, line = read_postcodes(line, c)
            for pc in found_codes:
                if pc not in seen_codes:
                    seen_codes.add(pc)
                    postcodes.append(pc)
            rest.append(line)
        place_lines = rest
    places = split_places(place_lines, c)
    if not places and subj.get("place"):
        places = split_places([subj["place"]], c)

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
    signals = customer_signals(text, subject, c)

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
        customer_signals=signals,
    )


_SIGNAL_LINES = 400  # lines of a body searched for customer labels and addresses


def customer_signals(text: str, subject: str, c: CompiledRules) -> tuple[str, ...]:
    """Signs that a mail is about one end customer's line rather than an area outage, for
    the review reason (:mod:`bridge.core.confidence`): ``label "Klantnaam"`` for a
    ``customer_labels`` label with a value, ``phrase "uw melding"`` for a ``customer_phrases``
    phrase in the subject or the body, ``a street address with house number and postcode``
    for an ``address_pattern`` match at the start of a line or in a place or customer value.
    Only the text above the greeting counts (a sender's own address in a signature is no
    sign). Never the customer's data itself. At most one sign of each kind."""
    out: list[str] = []
    body: list[str] = []
    for line in text.split("\n")[:_SIGNAL_LINES]:
        if c.signature.match(line):
            break
        body.append(line)
    label = address = None
    for line in body:
        m = _label_line(line)
        if m and match_label(m[1], c) == "customer" and m[2].strip(" -|:"):
            label = m[1].strip().lstrip("-*\u2022 ").strip()
            break
    joined = "\n".join(body)
    for found in c.address.finditer(joined):
        # the address must start its line, or the value of a customer or place label
        start = joined.rfind("\n", 0, found.start()) + 1
        before = joined[start:found.start()].strip(" \t-*\u2022|")
        if before:
            end = joined.find("\n", start)
            m = _label_line(joined[start:end if end >= 0 else len(joined)])
            if not (m and match_label(m[1], c) in ("customer", "places")
                    and before.rstrip(": |\t") == m[1].strip()):
                continue
        address = "a street address with house number and postcode"
        break
    if label:
        out.append(f'label "{label}"')
    if c.customer_phrases is not None:
        found = c.customer_phrases.search(subject) or c.customer_phrases.search("\n".join(body))
        if found:
            phrase = " ".join(found.group(0).split())
            out.append(f'phrase "{phrase}"')
    if address:
        out.append(address)
    return tuple(out)
