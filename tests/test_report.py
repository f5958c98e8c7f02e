"""Report extraction: golden mails end to end, labels, values, places, status, kind, rules from
config, safety.

How dates, times and periods are read (also a report's start and end from bare times and
ranges) is in test_dates.py."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

import bridge.core.report as report_mod
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
SENT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # Thursday 26 November 2026, 14:00 local


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


def _sent_mail(text: str, subject: str = "", date_: datetime | None = SENT) -> ParsedMail:
    """:func:`_mail` sent on Thursday 26 November 2026, 14:00 local (the cases that came
    with this default keep it)."""
    return _mail(text, subject, date_)


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


# --- labels: where a wrapped value ends -------------------------------------------------------

# A wrapped value goes on over lines with a time or a colon in a sentence; a label at the start
# of a line ends it, also an unknown one, an indented one or one in lower case.


@pytest.mark.parametrize(
    "wrapped, rest",
    [
        ("Kabelbreuk. De storing is\nontstaan om 09:42 door graafwerk.",
         "Kabelbreuk. De storing is ontstaan om 09:42 door graafwerk."),
        ("Kabelbreuk. De storing is ontstaan\nom 09:42 door graafwerk.",
         "Kabelbreuk. De storing is ontstaan om 09:42 door graafwerk."),
        ("Kabelbreuk.\nSinds 09:42 is er geen internet.",
         "Kabelbreuk. Sinds 09:42 is er geen internet."),
        ("Kabelbreuk. Monteurs zijn\nonderweg: herstel volgt.",
         "Kabelbreuk. Monteurs zijn onderweg: herstel volgt."),
        ("Kabelbreuk. De oorzaak is\neen graafmachine. Advies: herstart het modem.",
         "Kabelbreuk. De oorzaak is een graafmachine. Advies: herstart het modem."),
        ("Kabelbreuk.\nUpdate 11:15: monteur ter plaatse.",
         "Kabelbreuk. Update 11:15: monteur ter plaatse."),
    ],
)
def test_wrapped_description_is_not_cut_at_a_time_or_colon(wrapped, rest):
    text = f"Omschrijving: {wrapped}\nStatus: Nieuw\n"
    got = read_labels(text)
    assert got["description"] == rest
    assert got["status"] == "Nieuw"


def test_a_label_at_line_start_still_ends_the_value():
    text = "Omschrijving: Kabelbreuk.\nWijkcentrale: AMF01\nImpact | groot\nStatus: Nieuw\n"
    assert read_labels(text)["description"] == "Kabelbreuk."
    text = "Omschrijving: Kabelbreuk.\nAantal klanten: 120\n"
    assert read_labels(text)["description"] == "Kabelbreuk."


def test_wrapped_description_in_an_html_cell():
    html = ("<table><tr><td>Status</td><td>Nieuw</td></tr><tr><td>Omschrijving</td>"
            "<td>Kabelbreuk.<br>De storing is ontstaan om 09:42 door graafwerk.<br>"
            "Sinds 10:00 is een monteur ter plaatse.</td></tr></table>")
    r = extract_report(parse_mail(_html_mail(html)))
    assert r.description == ("Kabelbreuk. De storing is ontstaan om 09:42 door graafwerk. "
                             "Sinds 10:00 is een monteur ter plaatse.")


def _html_mail(html: str) -> bytes:
    return ("From: storingen@kpn.example\nSubject: Storing\nMIME-Version: 1.0\n"
            "Content-Type: text/html; charset=utf-8\n\n<html><body>" + html
            + "</body></html>").encode()


def test_indented_unknown_label_ends_the_previous_value():
    text = "Omschrijving: Kabelbreuk.\n   Impact: groot\nStatus: Nieuw\n"
    assert read_labels(text)["description"] == "Kabelbreuk."
    text = ("  Status: Nieuw\n  Omschrijving: Kabelbreuk bij de\n  wijkcentrale.\n"
            "  Aantal klanten: 120\n  Plaats: Ede\n")
    got = read_labels(text)
    assert got["description"] == "Kabelbreuk bij de wijkcentrale."
    assert got["places"] == "Ede"


def test_aligned_continuation_with_a_colon_is_still_a_continuation():
    text = ("Omschrijving:   Door graafwerkzaamheden is een kabel\n"
            "                beschadigd.\n"
            "                Let op: herstart het modem.\n"
            "Status:         Nieuw\n")
    got = read_labels(text)
    assert got["description"] == ("Door graafwerkzaamheden is een kabel beschadigd. "
                                  "Let op: herstart het modem.")
    text = "Omschrijving: Kabelbreuk, de monteur\n   meldt om 10:15: kabel gevonden.\n"
    assert read_labels(text)["description"] == (
        "Kabelbreuk, de monteur meldt om 10:15: kabel gevonden.")


def test_a_lower_case_unknown_label_ends_the_value():
    r = extract_report(_sent_mail("Getroffen gebied: Amersfoort\naantal getroffen klanten: 1200\n"
                             "wijkcentrale: AMF01\nStarttijd: 28-11-2026 09:42\n"))
    assert r.places == ("Amersfoort",)
    assert r.postcodes == ()
    got = read_labels("Omschrijving: De storing is\nontstaan om 09:42 door een stroomstoring.\n"
                      "Update 10:30: monteur ter plaatse.\naantal klanten: circa 1200\n")
    assert got["description"] == ("De storing is ontstaan om 09:42 door een stroomstoring. "
                                  "Update 10:30: monteur ter plaatse.")


def test_a_lower_case_word_and_colon_inside_a_description_sentence_continues_it():
    got = read_labels("Omschrijving: Kabelbreuk. Monteurs zijn\nonderweg: herstel volgt.\n")
    assert got["description"] == "Kabelbreuk. Monteurs zijn onderweg: herstel volgt."


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


# --- places over several lines ----------------------------------------------------------------

# One place per line stays one place each; a list wrapped in the middle of a name is joined back.


def test_places_on_separate_lines_are_separate_places():
    r = extract_report(_sent_mail("Plaatsen: Amersfoort\nLeusden\nSoest\n\nStatus: Nieuw"))
    assert r.places == ("Amersfoort", "Leusden", "Soest")
    r = extract_report(_sent_mail("Plaatsen:   Amersfoort\n            Leusden\n"
                             "            Soest, Baarn\n"))
    assert r.places == ("Amersfoort", "Leusden", "Soest", "Baarn")
    r = extract_report(_sent_mail("Plaatsen:\n- Amersfoort\n- Capelle a/d IJssel\n"))
    assert r.places == ("Amersfoort", "Capelle a/d IJssel")


def test_places_with_postcodes_on_separate_lines():
    r = extract_report(_sent_mail("Locatie: 3811 AB Amersfoort\n3831 Leusden\n"))
    assert r.places == ("Amersfoort", "Leusden")
    assert r.postcodes == ("3811 AB", "3831")


def test_places_in_an_html_cell_with_br():
    html = ("<table><tr><td>Status</td><td>Nieuw</td></tr>"
            "<tr><td>Plaatsen</td><td>Amersfoort<br>Leusden<br/>Soest</td></tr>"
            "<tr><td>Dienst</td><td>Internet</td></tr></table>")
    r = extract_report(parse_mail(_html_mail(html)))
    assert r.places == ("Amersfoort", "Leusden", "Soest")
    assert r.services == ("internet",)


def test_read_labels_still_joins_lines_with_spaces():
    assert read_labels("Plaatsen: Amersfoort\nLeusden\n")["places"] == "Amersfoort Leusden"


@pytest.mark.parametrize("value, places", [
    ("Amersfoort, Leusden, Hoevelaken, Nijkerk, Barneveld, Bergen op\n"
     "Zoom en Capelle aan den IJssel",
     ("Amersfoort", "Leusden", "Hoevelaken", "Nijkerk", "Barneveld", "Bergen op Zoom",
      "Capelle aan den IJssel")),
    ("Amersfoort, Leusden, Hoevelaken, Nijkerk, Barneveld en\n   Woudenberg",
     ("Amersfoort", "Leusden", "Hoevelaken", "Nijkerk", "Barneveld", "Woudenberg")),
    ("Amersfoort,\nLeusden", ("Amersfoort", "Leusden")),
    ("Amersfoort en Capelle aan\nden IJssel", ("Amersfoort", "Capelle aan den IJssel")),
    ("Amersfoort\nLeusden\nSoest", ("Amersfoort", "Leusden", "Soest")),
    ("Amersfoort\nLeusden\nSoest, Baarn", ("Amersfoort", "Leusden", "Soest", "Baarn")),
    ("\n- Amersfoort\n- Leusden, Soest\n- Baarn", ("Amersfoort", "Leusden", "Soest", "Baarn")),
])
def test_wrapped_place_lists_are_joined(value, places):
    r = extract_report(_sent_mail(f"Getroffen gebied: {value}\nStarttijd: 28-11-2026 09:42\n"))
    assert r.places == places


@pytest.mark.parametrize("body", [
    "Plaatsen: " + "\n".join(f"Plaats{i:05d}" for i in range(16_000)) + "\n",
    "Plaatsen: " + "\n".join(f"Plaats{i:05d}," for i in range(16_000)) + "\n",
    "Locatie: " + "\n".join(f"{1000 + i // 26} {chr(65 + i % 26)}{chr(65 + i // 26 % 26)} "
                            f"Dorp{i}" for i in range(16_000)) + "\n",
    "Plaatsen: " + ", ".join(f"Plaats{i:05d}" for i in range(16_000)) + "\n",
])
def test_many_places_parse_in_linear_time(body):
    t0 = time.process_time()
    r = extract_report(_sent_mail(body))
    took = time.process_time() - t0
    assert len(r.places) == 16_000
    assert took < 2.0, f"16,000 places took {took:.1f} s"


def test_slash_inside_a_place_name_does_not_split_it():
    r = extract_report(_mail("Ticketnummer: INC000012345678\nStatus: Nieuw\n"
                             "Plaats: Capelle a/d IJssel, Alphen a/d Rijn / Gouda"))
    assert r.places == ("Capelle a/d IJssel", "Alphen a/d Rijn", "Gouda")


# --- status: negated and partial words --------------------------------------------------------

# "Niet opgelost", "Deels opgelost" or "Opgelost (gedeeltelijk)" is an update, not resolved; a
# partial word after the status word counts only when it ends the status phrase.


@pytest.mark.parametrize(
    "value",
    ["Niet opgelost", "Nog niet opgelost", "Deels opgelost", "Gedeeltelijk opgelost",
     "not resolved", "partially resolved", "Not yet resolved", "Nog niet volledig hersteld",
     "Opgelost (gedeeltelijk)", "Hersteld - deels", "Grotendeels verholpen"],
)
def test_negated_or_partial_resolved_status_is_an_update(value):
    assert extract_report(_sent_mail(f"Ticketnummer: INC000012345678\nStatus: {value}")).status \
        == "update"


@pytest.mark.parametrize("value, want", [
    ("Opgelost", "opgelost"), ("Hersteld, geen actie nodig", "opgelost"),
    ("Niet geannuleerd", "update"), ("Nieuw", "nieuw"), ("In behandeling", "update"),
    ("Niet meer actief, opgelost", "opgelost"),
])
def test_plain_statuses_are_unchanged(value, want):
    assert extract_report(_sent_mail(f"Status: {value}")).status == want


def test_negated_status_in_the_subject():
    r = extract_report(_sent_mail("", subject="Storingsmelding KPN: Internet - Amersfoort "
                                         "(INC000012345678) - Deels opgelost"))
    assert r.status == "update"
    r = extract_report(_sent_mail("", subject="Storing nog niet opgelost INC000012345678"))
    assert r.status == "update"


def test_negation_and_partial_words_come_from_config():
    assert "niet" in DEFAULT_RULES.status_negation_words
    assert "deels" in DEFAULT_RULES.status_partial_words
    rules = rules_from_config({"status_negation_words": ["nimmer"],
                               "status_partial_words": ["half"]})
    assert extract_report(_sent_mail("Status: nimmer opgelost"), rules).status == "update"
    assert extract_report(_sent_mail("Status: half opgelost"), rules).status == "update"
    # the lists were replaced: the default words no longer qualify
    assert extract_report(_sent_mail("Status: deels opgelost"), rules).status == "opgelost"
    with pytest.raises(ValueError, match="parser.status_negation_words"):
        rules_from_config({"status_negation_words": "niet"})


@pytest.mark.parametrize("value, want", [
    ("Opgelost, gedeeltelijke vervanging van de kabel uitgevoerd", "opgelost"),
    ("Opgelost - deels nieuwe bekabeling gelegd", "opgelost"),
    ("Resolved: partial fibre replacement done", "opgelost"),
    ("Opgelost (gedeeltelijk)", "update"),
    ("Hersteld - deels", "update"),
    ("opgelost, gedeeltelijk", "update"),
    ("Opgelost, gedeeltelijk. Monteur komt morgen terug.", "update"),
    ("Resolved (partially)", "update"),
    ("Niet uitgevoerd", "update"),
])
def test_a_partial_word_after_the_status_must_end_the_phrase(value, want):
    assert extract_report(_sent_mail(f"Status: {value}")).status == want


def test_a_partial_word_cut_by_the_status_window_is_not_at_the_end():
    c = report_mod._compile(DEFAULT_RULES)
    w = report_mod._STATUS_WINDOW
    pad = " " * (w - len(", deels"))
    assert report_mod._status("Opgelost" + pad + ", deels", c) == "update"
    assert report_mod._status("Opgelost" + pad + ", deels vervangen", c) == "opgelost"


def test_an_outage_is_never_announced_it_goes_to_review_without_a_status():
    raw = (b"From: storingen@kpn.example\r\nSubject: Storing na gepland onderhoud Utrecht "
           b"INC000012345681\r\nContent-Type: text/plain\r\n\r\nDienst: Internet\r\n"
           b"Starttijd: 28-11-2026 09:30\r\n")
    r = extract_report(parse_mail(raw), DEFAULT_RULES)
    assert (r.kind, r.status) == ("storing", None)


# --- kind: outage or maintenance --------------------------------------------------------------

# Maintenance words in the subject make a maintenance notice, unless they name the cause of an
# outage ("Storing door werkzaamheden", "Outage after planned maintenance"); a kind label wins.


@pytest.mark.parametrize(
    "subject",
    [
        "Onderhoud KPN glasvezel Zwolle",
        "Maintenance notification Zwolle CT00012345678",
        "Aankondiging werkzaamheden Zwolle",
        "Storingsmelding KPN: Internet - Zwolle (CT00012345678) - Gepland onderhoud",
        "KPN incident: Internet onderhoud - Zwolle (CT00012345678)",
        "Melding KPN: Internet - Zwolle (CT00012345678) - werkzaamheden",
        "RE: Planned maintenance: Internet - Zwolle (CHG000123456)",
        "Netwerkonderhoud Zwolle CT00012345678",
    ],
)
def test_maintenance_words_in_the_subject_give_onderhoud(subject):
    assert extract_report(_sent_mail("Status: Aangekondigd", subject=subject)).kind == "onderhoud"


def test_kind_label_wins_and_outage_subjects_stay_storing():
    assert extract_report(_sent_mail("Soort: Storing", subject="Onderhoud Zwolle")).kind == "storing"
    for subject in ("Storingsmelding KPN: Internet - Zwolle (INC000012345678) - Nieuw",
                    "Storing internet Zwolle", "Uw factuur"):
        assert extract_report(_sent_mail("", subject=subject)).kind == "storing"


def test_maintenance_words_come_from_config():
    rules = rules_from_config({"kind_values": {"onderhoud": ["klus"], "storing": ["storing"]}})
    assert extract_report(_sent_mail("", subject="Klus in Zwolle"), rules).kind == "onderhoud"
    assert extract_report(_sent_mail("", subject="Storing: Internet - Zwolle (INC000012345678) - "
                                            "werkzaamheden"), rules).kind == "storing"


@pytest.mark.parametrize("subject, kind", [
    ("Storing door werkzaamheden Amersfoort", "storing"),
    ("Verstoring internet wegens onderhoud aan de centrale", "storing"),
    ("Outage caused by planned maintenance in Leusden", "storing"),
    ("Gepland onderhoud door KPN in Amersfoort", "onderhoud"),
    ("Storingsmelding - Gepland onderhoud Doorn", "onderhoud"),
])
def test_a_cause_clause_in_the_subject_does_not_decide_the_kind(subject, kind):
    raw = (f"From: storingen@kpn.example\r\nTo: noc@cbgconnect.example\r\nSubject: {subject}\r\n"
           "Message-ID: <k@kpn.example>\r\nDate: Sat, 28 Nov 2026 09:45:00 +0100\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "Referentie: INC000012345678\r\nStatus: Nieuw\r\nDienst: Internet\r\n").encode()
    assert extract_report(parse_mail(raw), DEFAULT_RULES).kind == kind


def test_kind_cause_words_come_from_config():
    rules = rules_from_config({"kind_cause_words": []})
    assert rules.kind_cause_words == ()
    raw = (b"From: storingen@kpn.example\r\nSubject: Storing door werkzaamheden\r\n"
           b"Content-Type: text/plain\r\n\r\nReferentie: INC1\r\nStatus: Nieuw\r\n")
    assert extract_report(parse_mail(raw), rules).kind == "onderhoud"


@pytest.mark.parametrize("subject, kind", [
    ("Storing tijdens onderhoud: Internet - Utrecht (INC000012345681) - Nieuw", "storing"),
    ("Storingsmelding KPN: Internet - Utrecht (INC000012345680) - Nieuw - storing na "
     "werkzaamheden", "storing"),
    ("Outage after planned maintenance: Internet - Utrecht (INC000012345681) - New", "storing"),
    ("Outage during maintenance: Internet - Utrecht (INC000012345681) - New", "storing"),
    ("Storing bij werkzaamheden: Internet - Utrecht (INC000012345681) - Nieuw", "storing"),
    ("Storing na gepland onderhoud Utrecht INC000012345681", "storing"),
    ("Onderbreking dienstverlening wegens gepland onderhoud Zwolle CHG0001234567", "onderhoud"),
    ("Onderbreking wegens gepland onderhoud: Internet - Zwolle (CHG0001234567) - Gepland",
     "onderhoud"),
    ("Service interruption due to scheduled maintenance - Zwolle (CHG0001234568)", "onderhoud"),
    ("Storing door werkzaamheden Amersfoort", "storing"),
    ("Storingsmelding - Gepland onderhoud Doorn", "onderhoud"),
    ("Storingsmelding KPN: Internet - Doorn (CT00012399006) - Gepland onderhoud", "onderhoud"),
    ("Werkzaamheden KPN: Internet - Doorn (CT00012399006) - Gepland", "onderhoud"),
    ("Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Opgelost", "storing"),
])
def test_kind_from_the_subject_with_cause_words(subject, kind):
    assert extract_report(_sent_mail("Ticketnummer: X1", subject=subject)).kind == kind


def test_new_cause_words_are_defaults():
    for word in ("tijdens", "na", "bij", "after", "during"):
        assert word in DEFAULT_RULES.kind_cause_words


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
    a generous bound: this is a safety test, not a benchmark). Measured in CPU time: on a
    busy machine the wall time of the same work is several times longer."""
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
        t0 = time.process_time()
        call()
        took = time.process_time() - t0
        assert took < 2.0, f"{name} took {took:.1f} s on adversarial line {i}"
