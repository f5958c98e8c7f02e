"""Report extraction: golden mails end to end, labels, values, rules from config.

Dates, times and periods are in test_dates.py."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from bridge.core.mail import parse_mail
from bridge.core.models import Envelope, OutageReport, ParsedMail
from bridge.core.report import (
    DEFAULT_RULES,
    ReportRules,
    extract_report,
    parse_datetime,
    parse_duration_minutes,
    read_labels,
    rules_from_config,
)

GOLDEN = Path(__file__).parent / "golden" / "mail"
CASES = sorted(p.stem for p in GOLDEN.glob("*.eml"))
UTC = timezone.utc


def _dump(report: OutageReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_there_are_enough_golden_cases():
    assert len(CASES) >= 19
    assert {"01-storing-nieuw", "06-doorgestuurd-outlook", "07-geen-storing"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str):
    """Each golden .eml gives exactly its .json. REGEN=1 rewrites the .json files."""
    report = extract_report(parse_mail((GOLDEN / f"{case}.eml").read_bytes()))
    got = _dump(report)
    want_path = GOLDEN / f"{case}.json"
    if os.environ.get("REGEN") == "1":
        want_path.write_text(got, encoding="utf-8")
    assert want_path.exists(), f"{want_path.name} missing; run with REGEN=1 and check it by hand"
    assert got == want_path.read_text(encoding="utf-8")
    # the JSON round-trips through the model
    assert OutageReport.from_json(json.loads(got)) == report


def _mail(text: str, subject: str = "", date_: datetime | None = None) -> ParsedMail:
    env = Envelope("kpn@example.nl", "KPN", subject, date_, None)
    return ParsedMail(outer=env, original=None, forward=None, text=text)


# --- labels ----------------------------------------------------------------------------------


def test_label_separators_and_spacing():
    text = (
        "Ticketnummer:INC000012345678\n"
        "STATUS   :   nieuw\n"
        "Dienst(en) | VoIP\n"
        "Getroffen gebied\tAmersfoort\n"
        "Ticket nummer: INC000099999999\n"  # second ticket label: first one wins
        "Starttijd           28-11-2026 09:42\n"  # known label, aligned, no colon
    )
    got = read_labels(text)
    assert got["ticket"] == "INC000012345678"
    assert got["status"] == "nieuw"
    assert got["services"] == "VoIP"
    assert got["places"] == "Amersfoort"
    assert got["start"] == "28-11-2026 09:42"


def test_label_continuation_lines():
    text = (
        "Omschrijving:   Door graafwerkzaamheden is een\n"
        "                glasvezelkabel beschadigd. Let op: modems\n"
        "moeten mogelijk opnieuw worden opgestart.\n"
        "Wijkcentrale:   AMF01\n"
        "Getroffen gebied: Amersfoort,\n"
        "                  Leusden\n"
        "\n"
        "Met vriendelijke groet,\n"
    )
    got = read_labels(text)
    assert got["description"] == (
        "Door graafwerkzaamheden is een glasvezelkabel beschadigd. Let op: modems "
        "moeten mogelijk opnieuw worden opgestart.")
    assert got["places"] == "Amersfoort, Leusden"


def test_continuation_stops_at_blank_line_signature_and_unknown_label():
    text = (
        "Omschrijving: Kabelbreuk.\n"
        "Met vriendelijke groet,\n"
        "KPN Wholesale Servicedesk\n"
    )
    assert read_labels(text)["description"] == "Kabelbreuk."
    text = "Omschrijving: Kabelbreuk.\n\nBeste groet, en tot ziens\n"
    assert read_labels(text)["description"] == "Kabelbreuk."
    text = "Omschrijving: Kabelbreuk.\nWijkcentrale: AMF01\n"
    assert read_labels(text)["description"] == "Kabelbreuk."


def test_html_table_rows_are_labels():
    text = "Veld| Waarde\n---|---\nTicketnummer:| INC000012345678\nOmschrijving| regel 1\nregel 2\n"
    got = read_labels(text)
    assert got["ticket"] == "INC000012345678"
    assert got["description"] == "regel 1 regel 2"


def test_description_empty_without_label_and_greeting_never_in_it():
    r = extract_report(_mail("Beste partner,\n\nEr is een storing.\n\nMet vriendelijke groet,\nKPN"))
    assert r.description == ""


# --- values ----------------------------------------------------------------------------------


def test_places_split_and_dedupe():
    r = extract_report(_mail("Gebied: Amersfoort, Leusden en Soest; Baarn / amersfoort and Hoevelaken"))
    assert r.places == ("Amersfoort", "Leusden", "Soest", "Baarn", "Hoevelaken")


def test_postcodes_normalised_and_ranges_kept():
    r = extract_report(_mail("Postcodes: 3811, 3811AB, 3812 CD, 3813-3815, 3811"))
    assert r.postcodes == ("3811", "3811 AB", "3812 CD", "3813-3815")


def test_postcodes_in_place_value_when_no_postcode_label():
    r = extract_report(_mail("Locatie: 3811 AB Amersfoort, 3831 Leusden"))
    assert r.postcodes == ("3811 AB", "3831")
    assert r.places == ("Amersfoort", "Leusden")


def test_services_canonical_dedupe_order():
    r = extract_report(_mail("Diensten: Telefonie, glasvezel, VDSL, iTV, vaste telefonie, mobiel internet"))
    assert r.services == ("voip", "internet", "tv", "mobiel")


def test_end_label_wins_over_expected_end():
    r = extract_report(_mail("Verwachte eindtijd: 28-11-2026 14:00\nEindtijd: 28-11-2026 13:10"))
    assert r.end == datetime(2026, 11, 28, 12, 10, tzinfo=UTC)
    assert r.end_expected is False and r.end_unknown is False


@pytest.mark.parametrize("word", ["Onbekend", "nog niet bekend", "n.n.b.", "Unknown", "NNB"])
def test_unknown_expected_end(word):
    r = extract_report(_mail(f"Verwacht herstel: {word}"))
    assert r.end is None and r.end_unknown is True and r.end_expected is True


def test_time_only_end_uses_start_date():
    r = extract_report(_mail("Starttijd: 15-07-2026 09:00\nVerwachte eindtijd: 14:00"))
    assert r.end == datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


def test_kind_from_subject_and_not_from_description():
    r = extract_report(_mail("Omschrijving: Door graafwerkzaamheden is de kabel kapot."))
    assert r.kind == "storing"
    r = extract_report(_mail("", subject="Gepland onderhoud KPN glasvezel Zwolle"))
    assert r.kind == "onderhoud"
    r = extract_report(_mail("", subject="Planned maintenance: Internet - Zwolle (CHG000123456)"))
    assert r.kind == "onderhoud"
    assert r.ticket == "CHG000123456"


def test_subject_fallback_everything():
    r = extract_report(_mail(
        "Geen labels hier.",
        subject="RE: FW: Storingsmelding KPN: Internet en VoIP - Amersfoort (INC000012345678) - Opgelost"))
    assert (r.ticket, r.kind, r.status) == ("INC000012345678", "storing", "opgelost")
    assert r.services == ("internet", "voip")
    assert r.places == ("Amersfoort",)


def test_subject_in_another_shape_still_gives_status():
    r = extract_report(_mail("", subject="Storing opgelost INC000012345678"))
    assert (r.ticket, r.status) == ("INC000012345678", "opgelost")


def test_ticket_anywhere_in_body_and_label_value_without_pattern():
    r = extract_report(_mail("Wij verwijzen naar incident INC000012345678 van vanochtend."))
    assert r.ticket == "INC000012345678"
    r = extract_report(_mail("Referentie: KPN-778899 (intern)"))
    assert r.ticket == "KPN-778899"


def test_not_a_report_has_no_ticket_no_status():
    r = extract_report(_mail("Beste klant,\n\nIn de bijlage vindt u uw factuur.",
                             subject="Uw factuur van november"))
    assert r.ticket is None and r.status is None
    assert r.services == () and r.places == () and r.description == ""


def test_sent_at_is_effective_date():
    when = datetime(2026, 11, 28, 8, 45, tzinfo=UTC)
    outer = Envelope("a@b", "", "FW: x", datetime(2026, 11, 28, 9, 0, tzinfo=UTC), None)
    orig = Envelope("kpn@example.nl", "", "x", when, None)
    mail = ParsedMail(outer=outer, original=orig, forward="inline", text="Status: Nieuw")
    assert extract_report(mail).sent_at == when


def test_garbage_never_crashes():
    junk = "\x00\x01:::|||\t\t\n" * 20 + "Starttijd: 99-99-9999 99:99\nOnderbreking: 1e999 uur\n"
    r = extract_report(_mail(junk, subject="(((:::)))-"))
    assert r.start is None


# --- rules from config -----------------------------------------------------------------------


def test_rules_from_config_defaults_and_replacement():
    assert rules_from_config({}) == DEFAULT_RULES
    rules = rules_from_config({
        "ticket_labels": ["Werkorder"],
        "ticket_pattern": r"\bWO-\d+\b",
        "status_values": {"opgelost": ["klaar"], "nieuw": ["begonnen"]},
        "service_values": {"internet": ["lijn"]},
        "timezone": "UTC",
    })
    assert rules.ticket_labels == ("Werkorder",)
    assert rules.status_labels == DEFAULT_RULES.status_labels
    r = extract_report(_mail("Werkorder: WO-12\nTicketnummer: INC000012345678\nStatus: klaar\n"
                             "Dienst: lijn, internet\nStarttijd: 28-11-2026 09:00"), rules)
    assert r.ticket == "WO-12"  # "Ticketnummer" is no longer a label (the list was replaced)
    assert r.status == "opgelost"
    assert r.services == ("internet",)
    assert r.start == datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    # the table was replaced: a default synonym no longer matches, the canonical name always does
    assert extract_report(_mail("Status: hersteld"), rules).status is None
    assert extract_report(_mail("Status: Opgelost"), rules).status == "opgelost"
    assert extract_report(_mail("Status: update"), rules).status is None


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"nonsense": 1}, "parser.nonsense: unknown key"),
        ({"ticket_labels": "Ticket"}, "parser.ticket_labels: expected a list"),
        ({"ticket_labels": ["Ticket", 3]}, "parser.ticket_labels: expected a list of non-empty"),
        ({"ticket_labels": [""]}, "parser.ticket_labels"),
        ({"ticket_pattern": "INC(\\d+"}, "parser.ticket_pattern: invalid regular expression"),
        ({"ticket_pattern": 5}, "parser.ticket_pattern: expected a regular expression"),
        ({"subject_pattern": "(?P<foo>x)"}, "parser.subject_pattern: unknown group name"),
        ({"postcode_pattern": "["}, "parser.postcode_pattern"),
        ({"status_values": ["nieuw"]}, "parser.status_values: expected a table"),
        ({"status_values": {"klaar": ["x"]}}, "parser.status_values: unknown name 'klaar'"),
        ({"kind_values": {"storm": ["x"]}}, "parser.kind_values: unknown name 'storm'"),
        ({"service_values": {"internet": "dsl"}}, "parser.service_values.internet: expected a list"),
        ({"timezone": "Mars/Olympus"}, "parser.timezone: unknown time zone"),
        ({"timezone": 1}, "parser.timezone"),
    ],
)
def test_rules_from_config_errors(cfg, fragment):
    with pytest.raises(ValueError) as exc:
        rules_from_config(cfg)
    assert fragment in str(exc.value)


def test_rules_from_config_not_a_table():
    with pytest.raises(ValueError, match="parser"):
        rules_from_config(["x"])  # type: ignore[arg-type]


def test_rules_are_hashable_and_frozen():
    hash(DEFAULT_RULES)
    with pytest.raises(Exception):
        DEFAULT_RULES.timezone = "UTC"  # type: ignore[misc]
    assert isinstance(ReportRules(), ReportRules)


# --- safety: no catastrophic backtracking ------------------------------------------------------

_N = 100_000
_ADVERSARIAL = [
    "-" * _N + "x",  # the old table-rule regex took 26 s on 2,501 of these
    "- " * (_N // 2) + "x",
    "|-" * (_N // 2) + "x",
    " " * _N + "x",
    "Status:" + " " * _N + "x",
    "Omschrijving:" + "\t" * _N + "x",
    "Ticket" + " " * _N + "x",
    "1" * _N + "x",
    "1 " * (_N // 2) + "x",
    "12:" * (_N // 3) + "x",
    "28-11-2026" + " " * _N + "x",
    "14:00" + " " * _N + "x",
    "a " * (_N // 2) + ":",
    "a@" * (_N // 2),
    "[mailto:" * (_N // 8),
    "x" * _N + "@",
    "Amersfoort" + " " * _N + "en",
    ", " * (_N // 2) + "x",
    " en" * (_N // 3),
    "1234" + " " * _N + "-x",
    "INC" + "0" * _N + "x",
    "> " * (_N // 2) + "x",
    "Storing: a" + " " * _N + "- b" + " " * _N + "x",
    "+31 6" + " 1" * (_N // 2),
]


@pytest.mark.parametrize("i", range(len(_ADVERSARIAL)))
def test_parsers_are_linear_on_long_adversarial_lines(i):
    """Every parser entry point finishes a 100k-character hostile line quickly (ReDoS guard;
    a generous bound: this is a safety test, not a benchmark)."""
    import time

    from bridge.core.mail import clean_subject
    from bridge.core.phone import mask_text

    line = _ADVERSARIAL[i]
    raw = line.encode()
    calls = {
        "read_labels": lambda: read_labels(line),
        "extract_report": lambda: extract_report(_mail(line, subject=line)),
        "extract_report_labels": lambda: extract_report(
            _mail("\n".join(f"{lb}: {line}" for lb in ("Plaats", "Postcode", "Starttijd",
                                                       "Verwachte eindtijd", "Status")))),
        "parse_datetime": lambda: parse_datetime(line, default_date=date(2026, 11, 28)),
        "parse_duration_minutes": lambda: parse_duration_minutes(line),
        "parse_mail": lambda: parse_mail(b"From: " + raw + b"\nSubject: " + raw + b"\n\n" + raw),
        "parse_mail_fwd": lambda: parse_mail(b"From: a@kpn.nl\n\n-----Original Message-----\nFrom: "
                                             + raw + b"\nSubject: x\n\n" + raw),
        "clean_subject": lambda: clean_subject(line),
        "mask_text": lambda: mask_text(line),
    }
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        took = time.perf_counter() - t0
        assert took < 2.0, f"{name} took {took:.1f} s on adversarial line {i}"


def test_slash_inside_a_place_name_does_not_split_it():
    r = extract_report(_mail("Ticketnummer: INC000012345678\nStatus: Nieuw\n"
                             "Plaats: Capelle a/d IJssel, Alphen a/d Rijn / Gouda"))
    assert r.places == ("Capelle a/d IJssel", "Alphen a/d Rijn", "Gouda")
