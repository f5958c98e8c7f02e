"""Regression tests for findings of a review of report extraction (bridge/core/report.py).

Numbers refer to the review's findings.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

import bridge.core.report as report_mod
from bridge.core.mail import parse_mail
from bridge.core.models import Envelope, ParsedMail
from bridge.core.report import (
    DEFAULT_RULES,
    extract_report,
    parse_datetime,
    read_labels,
    rules_from_config,
)

UTC = timezone.utc
AMS = ZoneInfo("Europe/Amsterdam")
SENT = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # Thursday 26 November 2026, 14:00 local


def _mail(text: str, subject: str = "", date_: datetime | None = SENT) -> ParsedMail:
    env = Envelope("kpn@example.nl", "KPN", subject, date_, None)
    return ParsedMail(outer=env, original=None, forward=None, text=text)


def _local(y, mo, d, h, mi=0) -> datetime:
    """A Europe/Amsterdam wall time as aware UTC."""
    return datetime(y, mo, d, h, mi, tzinfo=AMS).astimezone(UTC)


# =============================================================================================
# 2: a word between date and time
# =============================================================================================


@pytest.mark.parametrize(
    "text",
    [
        "28-11-2026 tussen 14:00 en 16:00",
        "28 november 2026 rond 14:00 uur",
        "op 28-11-2026 vanaf 14:00",
        "28-11-2026 omstreeks 14.00 uur",
        "28-11-2026 vanaf ca. 14:00",
        "zaterdag 28 november 2026 circa 14:00",
        "28-11-2026 vanmiddag 14:00",
        "28-11-2026 - 14:00",
        "28-11-2026, 14:00 uur",
    ],
)
def test_a_word_between_date_and_time_keeps_the_time(text):
    assert parse_datetime(text) == _local(2026, 11, 28, 14)


def test_a_start_with_a_word_before_the_time_in_a_report():
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 28 november 2026 rond 14:00 uur"))
    assert r.start == _local(2026, 11, 28, 14)


def test_a_date_without_a_time_is_still_midnight():
    assert parse_datetime("28-11-2026 (hele dag)") == _local(2026, 11, 28, 0)
    assert parse_datetime("28-11-2026 tot nader order") == _local(2026, 11, 28, 0)


def test_an_iso_offset_with_seconds_is_still_an_offset():
    assert parse_datetime("2026-11-28T09:42:00-05:00") == datetime(2026, 11, 28, 14, 42,
                                                                    tzinfo=UTC)
    assert parse_datetime("Sat, 28 Nov 2026 09:45:00 -0500") == datetime(2026, 11, 28, 14, 45,
                                                                         tzinfo=UTC)


# =============================================================================================
# 3: negated or partial status is not "opgelost"
# =============================================================================================


@pytest.mark.parametrize(
    "value",
    ["Niet opgelost", "Nog niet opgelost", "Deels opgelost", "Gedeeltelijk opgelost",
     "not resolved", "partially resolved", "Not yet resolved", "Nog niet volledig hersteld",
     "Opgelost (gedeeltelijk)", "Hersteld - deels", "Grotendeels verholpen"],
)
def test_negated_or_partial_resolved_status_is_an_update(value):
    assert extract_report(_mail(f"Ticketnummer: INC000012345678\nStatus: {value}")).status \
        == "update"


@pytest.mark.parametrize("value, want", [
    ("Opgelost", "opgelost"), ("Hersteld, geen actie nodig", "opgelost"),
    ("Niet geannuleerd", "update"), ("Nieuw", "nieuw"), ("In behandeling", "update"),
    ("Niet meer actief, opgelost", "opgelost"),
])
def test_plain_statuses_are_unchanged(value, want):
    assert extract_report(_mail(f"Status: {value}")).status == want


def test_negated_status_in_the_subject():
    r = extract_report(_mail("", subject="Storingsmelding KPN: Internet - Amersfoort "
                                         "(INC000012345678) - Deels opgelost"))
    assert r.status == "update"
    r = extract_report(_mail("", subject="Storing nog niet opgelost INC000012345678"))
    assert r.status == "update"


def test_negation_and_partial_words_come_from_config():
    assert "niet" in DEFAULT_RULES.status_negation_words
    assert "deels" in DEFAULT_RULES.status_partial_words
    rules = rules_from_config({"status_negation_words": ["nimmer"],
                               "status_partial_words": ["half"]})
    assert extract_report(_mail("Status: nimmer opgelost"), rules).status == "update"
    assert extract_report(_mail("Status: half opgelost"), rules).status == "update"
    # the lists were replaced: the default words no longer qualify
    assert extract_report(_mail("Status: deels opgelost"), rules).status == "opgelost"
    with pytest.raises(ValueError, match="parser.status_negation_words"):
        rules_from_config({"status_negation_words": "niet"})


# =============================================================================================
# 5: a wrapped value continues over lines with a time or a colon
# =============================================================================================


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


# =============================================================================================
# 7: places over several lines
# =============================================================================================


def test_places_on_separate_lines_are_separate_places():
    r = extract_report(_mail("Plaatsen: Amersfoort\nLeusden\nSoest\n\nStatus: Nieuw"))
    assert r.places == ("Amersfoort", "Leusden", "Soest")
    r = extract_report(_mail("Plaatsen:   Amersfoort\n            Leusden\n"
                             "            Soest, Baarn\n"))
    assert r.places == ("Amersfoort", "Leusden", "Soest", "Baarn")
    r = extract_report(_mail("Plaatsen:\n- Amersfoort\n- Capelle a/d IJssel\n"))
    assert r.places == ("Amersfoort", "Capelle a/d IJssel")


def test_places_with_postcodes_on_separate_lines():
    r = extract_report(_mail("Locatie: 3811 AB Amersfoort\n3831 Leusden\n"))
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


# =============================================================================================
# 8: a bare end time earlier than the start is on the next day
# =============================================================================================


def test_bare_end_time_before_start_rolls_to_the_next_day():
    r = extract_report(_mail("Starttijd: 28-11-2026 22:00\nVerwachte eindtijd: 02:00"))
    assert r.end == _local(2026, 11, 29, 2)
    assert r.end_expected is True
    r = extract_report(_mail("Starttijd: 28-11-2026 23:30\nEindtijd: 00:15 uur"))
    assert r.end == _local(2026, 11, 29, 0, 15)


def test_bare_end_time_after_start_stays_on_the_day_and_dates_are_kept():
    r = extract_report(_mail("Starttijd: 28-11-2026 09:00\nVerwachte eindtijd: 14:00"))
    assert r.end == _local(2026, 11, 28, 14)
    # an explicit date is never moved, even when it is before the start
    r = extract_report(_mail("Starttijd: 28-11-2026 22:00\nEindtijd: 27-11-2026 02:00"))
    assert r.end == _local(2026, 11, 27, 2)


def test_bare_end_rollover_across_the_dst_change():
    # Summer time ends 25 October 2026 (03:00 CEST -> 02:00 CET).
    r = extract_report(_mail("Starttijd: 24-10-2026 23:00\nVerwachte eindtijd: 04:00"))
    assert r.start == datetime(2026, 10, 24, 21, 0, tzinfo=UTC)
    assert r.end == datetime(2026, 10, 25, 3, 0, tzinfo=UTC)


# =============================================================================================
# 9: maintenance words in the subject give kind onderhoud
# =============================================================================================


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
    assert extract_report(_mail("Status: Aangekondigd", subject=subject)).kind == "onderhoud"


def test_kind_label_wins_and_outage_subjects_stay_storing():
    assert extract_report(_mail("Soort: Storing", subject="Onderhoud Zwolle")).kind == "storing"
    for subject in ("Storingsmelding KPN: Internet - Zwolle (INC000012345678) - Nieuw",
                    "Storing internet Zwolle", "Uw factuur"):
        assert extract_report(_mail("", subject=subject)).kind == "storing"


def test_maintenance_words_come_from_config():
    rules = rules_from_config({"kind_values": {"onderhoud": ["klus"], "storing": ["storing"]}})
    assert extract_report(_mail("", subject="Klus in Zwolle"), rules).kind == "onderhoud"
    assert extract_report(_mail("", subject="Storing: Internet - Zwolle (INC000012345678) - "
                                            "werkzaamheden"), rules).kind == "storing"


# =============================================================================================
# 10: time ranges in one value
# =============================================================================================


@pytest.mark.parametrize(
    "label, value, start, end",
    [
        ("Periode", "28-11-2026 00:00 - 06:00", (28, 0), (28, 6)),
        ("Periode", "28-11-2026 00:00-06:00", (28, 0), (28, 6)),
        ("Tijdvak", "28-11-2026 00:00 tot 06:00", (28, 0), (28, 6)),
        ("Uitvoering", "van 28-11-2026 00:00 tot 29-11-2026 06:00", (28, 0), (29, 6)),
        ("Periode", "28-11-2026 22:00 \u2013 29-11-2026 04:00", (28, 22), (29, 4)),
        ("Periode", "28-11-2026 22:00 - 04:00", (28, 22), (29, 4)),
        ("Periode", "zaterdag 28 november 2026 tussen 00:00 en 06:00 uur", (28, 0), (28, 6)),
        ("Tijdvak", "28-11-2026 van 01:00 t/m 05:30", (28, 1), (28, 5.5)),
        ("Starttijd", "28-11-2026 00:00 - 06:00", (28, 0), (28, 6)),
        ("Maintenance window", "28-11-2026 00:00 to 06:00", (28, 0), (28, 6)),
    ],
)
def test_time_ranges_give_start_and_end(label, value, start, end):
    r = extract_report(_mail(f"Status: Aangekondigd\n{label}: {value}",
                             subject="Onderhoud Zwolle"))

    def at(dh):
        d, h = dh
        return _local(2026, 11, d, int(h), int(round((h % 1) * 60)))

    assert r.start == at(start)
    assert r.end == at(end)
    assert r.end_expected is False


def test_a_time_only_range_uses_the_date_label_or_the_mail_date():
    r = extract_report(_mail("Datum: 03-12-2026\nTijdvak: tussen 00:00 en 06:00"))
    assert (r.start, r.end) == (_local(2026, 12, 3, 0), _local(2026, 12, 3, 6))
    # maintenance, mail sent on 26 November 14:00: the window is that night
    r = extract_report(_mail("Periode: tussen 23:00 en 05:00", subject="Onderhoud Zwolle"))
    assert (r.start, r.end) == (_local(2026, 11, 26, 23), _local(2026, 11, 27, 5))


def test_a_bare_outage_start_is_not_after_the_mail():
    sent = datetime(2026, 11, 28, 23, 10, tzinfo=UTC)  # 29 November 00:10 local
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 23:50", date_=sent))
    assert r.start == _local(2026, 11, 28, 23, 50)
    r = extract_report(_mail("Status: Nieuw\nStarttijd: 00:05", date_=sent))
    assert r.start == _local(2026, 11, 29, 0, 5)


def test_dotted_dates_are_not_read_as_times():
    assert parse_datetime("28-11-2026 en 29.11.2026") == _local(2026, 11, 28, 0)
    assert report_mod.parse_period("van 01-12-2026 tot 03.12.2026") == (
        _local(2026, 12, 1, 0), _local(2026, 12, 3, 0))
    assert parse_datetime("28-11-2026 09.42.00") == _local(2026, 11, 28, 9, 42)


def test_an_end_label_wins_over_a_range_end():
    r = extract_report(_mail("Periode: 28-11-2026 00:00 - 06:00\nEindtijd: 28-11-2026 05:00"))
    assert r.end == _local(2026, 11, 28, 5)
    r = extract_report(_mail("Periode: 28-11-2026 00:00 - 06:00\n"
                             "Verwachte eindtijd: 28-11-2026 07:00"))
    assert r.end == _local(2026, 11, 28, 7) and r.end_expected is True
    r = extract_report(_mail("Starttijd: 28-11-2026 01:00\nPeriode: 28-11-2026 00:00 - 06:00"))
    assert (r.start, r.end) == (_local(2026, 11, 28, 1), _local(2026, 11, 28, 6))


def test_a_start_with_a_date_then_a_time_is_not_a_range():
    r = extract_report(_mail("Starttijd: 28-11-2026 - 09:42"))
    assert r.start == _local(2026, 11, 28, 9, 42) and r.end is None
    r = extract_report(_mail("Starttijd: 28-11-2026 09:42 en sindsdien actief"))
    assert r.start == _local(2026, 11, 28, 9, 42) and r.end is None


def test_parse_period():
    assert report_mod.parse_period("28-11-2026 00:00 - 06:00") == (_local(2026, 11, 28, 0),
                                                       _local(2026, 11, 28, 6))
    assert report_mod.parse_period("tussen 00:00 en 06:00", default_date=date(2026, 11, 28)) == (
        _local(2026, 11, 28, 0), _local(2026, 11, 28, 6))
    assert report_mod.parse_period("tussen 00:00 en 06:00") == (None, None)
    assert report_mod.parse_period("28-11-2026 09:42") == (_local(2026, 11, 28, 9, 42), None)
    assert report_mod.parse_period("") == (None, None)
    assert report_mod.parse_period("onbekend") == (None, None)


def test_period_labels_and_separators_come_from_config():
    assert "Periode" in DEFAULT_RULES.period_labels
    rules = rules_from_config({"period_labels": ["Venster"], "period_separators": r"\s*+~\s*+"})
    r = extract_report(_mail("Venster: 28-11-2026 00:00 ~ 06:00"), rules)
    assert (r.start, r.end) == (_local(2026, 11, 28, 0), _local(2026, 11, 28, 6))
    r = extract_report(_mail("Venster: 28-11-2026 00:00 - 06:00"), rules)
    assert (r.start, r.end) == (_local(2026, 11, 28, 0), None)
    with pytest.raises(ValueError, match="parser.period_separators"):
        rules_from_config({"period_separators": "("})


# =============================================================================================
# 13: indented unknown labels end the previous value
# =============================================================================================


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


# =============================================================================================
# Safety: the new patterns stay linear
# =============================================================================================

_N = 100_000
_HOSTILE = [
    "28-11-2026" + " a" * (_N // 2) + " 14:00",
    "28-11-2026 " + "a" * _N + " 14:00",
    "28-11-2026 14:00" + " - 14:00" * (_N // 8),
    "28-11-2026 14:00" + " " * _N + "- x",
    "niet " * (_N // 5) + "opgelost",
    "deels opgelost " * (_N // 15),
    "opgelost" + " " * _N + "(deels",
    "tussen " * (_N // 7) + "00:00",
    "Impact" + " " * _N + ": x",
    "   " + "A " * (_N // 2) + ": x",
]


@pytest.mark.parametrize("i", range(len(_HOSTILE)))
def test_new_patterns_are_linear_on_hostile_lines(i):
    line = _HOSTILE[i]
    calls = {
        "parse_datetime": lambda: parse_datetime(line, default_date=date(2026, 11, 28)),
        "parse_period": lambda: report_mod.parse_period(line, default_date=date(2026, 11, 28)),
        "extract_report": lambda: extract_report(_mail(
            "\n".join(f"{lb}: {line}" for lb in ("Status", "Periode", "Starttijd", "Eindtijd",
                                                   "Plaatsen", "Omschrijving"))
            + "\n" + line, subject=line[:400])),
    }
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        took = time.perf_counter() - t0
        assert took < 2.0, f"{name} took {took:.1f} s on hostile line {i}"


# -- a maintenance word that names the cause of an outage does not make it maintenance ---------
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


# =============================================================================================
# Second review: regressions of the first round of fixes
# =============================================================================================


# -- 1: a kind word in the subject's kind part decides; a cause word cuts a maintenance word --
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
    assert extract_report(_mail("Ticketnummer: X1", subject=subject)).kind == kind


def test_new_cause_words_are_defaults():
    for word in ("tijdens", "na", "bij", "after", "during"):
        assert word in DEFAULT_RULES.kind_cause_words


# -- 2: a wrapped list of places is joined back; one place per line stays ----------------------
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
    r = extract_report(_mail(f"Getroffen gebied: {value}\nStarttijd: 28-11-2026 09:42\n"))
    assert r.places == places


# -- 3: an unknown label in lower case ends a value again -------------------------------------
def test_a_lower_case_unknown_label_ends_the_value():
    r = extract_report(_mail("Getroffen gebied: Amersfoort\naantal getroffen klanten: 1200\n"
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


# -- 4: many places stay linear ----------------------------------------------------------------
@pytest.mark.parametrize("body", [
    "Plaatsen: " + "\n".join(f"Plaats{i:05d}" for i in range(16_000)) + "\n",
    "Plaatsen: " + "\n".join(f"Plaats{i:05d}," for i in range(16_000)) + "\n",
    "Locatie: " + "\n".join(f"{1000 + i // 26} {chr(65 + i % 26)}{chr(65 + i // 26 % 26)} "
                            f"Dorp{i}" for i in range(16_000)) + "\n",
    "Plaatsen: " + ", ".join(f"Plaats{i:05d}" for i in range(16_000)) + "\n",
])
def test_many_places_parse_in_linear_time(body):
    t0 = time.perf_counter()
    r = extract_report(_mail(body))
    took = time.perf_counter() - t0
    assert len(r.places) == 16_000
    assert took < 2.0, f"16,000 places took {took:.1f} s"


# -- 5: a partial word after the status counts only when it ends the status phrase ------------
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
    assert extract_report(_mail(f"Status: {value}")).status == want


def test_a_partial_word_cut_by_the_status_window_is_not_at_the_end():
    c = report_mod._compile(DEFAULT_RULES)
    w = report_mod._STATUS_WINDOW
    pad = " " * (w - len(", deels"))
    assert report_mod._status("Opgelost" + pad + ", deels", c) == "update"
    assert report_mod._status("Opgelost" + pad + ", deels vervangen", c) == "opgelost"


# -- 6: ISO offsets, and numbers after non-filler words are no times ---------------------------
@pytest.mark.parametrize("text, want", [
    ("2026-11-28T09:42-05:00", datetime(2026, 11, 28, 14, 42, tzinfo=UTC)),
    ("2026-11-28t09:42:30-0500", datetime(2026, 11, 28, 14, 42, 30, tzinfo=UTC)),
    ("2026-11-28T09:42+01:00", datetime(2026, 11, 28, 8, 42, tzinfo=UTC)),
    ("28-11-2026 versie 2.10 uitgerold", _local(2026, 11, 28, 0)),
    ("28-11-2026 kabel 12.34 meter", _local(2026, 11, 28, 0)),
    ("28-11-2026 nummer 1.23", _local(2026, 11, 28, 0)),
    ("28-11-2026 update volgt 12:00", _local(2026, 11, 28, 0)),
    ("28-11-2026 09:42/28-11-2026 10:00", _local(2026, 11, 28, 9, 42)),
    ("28-11-2026 uiterlijk 14:00", _local(2026, 11, 28, 14)),
    ("28-11-2026 's avonds 22:00", _local(2026, 11, 28, 22)),
    ("28-11-2026 ca. 14.00 uur", _local(2026, 11, 28, 14)),
])
def test_dates_with_offsets_and_words_between_date_and_time(text, want):
    assert parse_datetime(text) == want


def test_an_iso_offset_in_a_period_is_not_a_range():
    assert report_mod.parse_period("2026-11-28T09:42-05:00") == (
        datetime(2026, 11, 28, 14, 42, tzinfo=UTC), None)


def test_date_filler_words_come_from_config():
    assert "uiterlijk" in DEFAULT_RULES.date_filler_words
    rules = rules_from_config({"date_filler_words": ["versie"]})
    assert parse_datetime("28-11-2026 versie 14:00", rules=rules) == _local(2026, 11, 28, 14)
    assert parse_datetime("28-11-2026 rond 14:00", rules=rules) == _local(2026, 11, 28, 0)
    r = extract_report(_mail("Starttijd: 28-11-2026 versie 14:00"), rules)
    assert r.start == _local(2026, 11, 28, 14)


# -- 7: period and date labels that collide with status/kind words or forward headers ---------
def test_parse_period_is_exported():
    assert "parse_period" in report_mod.__all__


def test_colliding_period_and_date_labels_are_gone():
    for label in ("Gepland", "Werkzaamheden", "Scheduled"):
        assert label not in DEFAULT_RULES.period_labels
    assert "Date" not in DEFAULT_RULES.date_labels
    r = extract_report(_mail("Omschrijving: Vervanging van een knooppunt.\n"
                             "Date: 01-12-2026\nTijdvak: tussen 00:00 en 06:00\n",
                             subject="Onderhoud Zwolle"))
    # a bare window is on the day the mail was sent, not on a left-over forward header's day
    assert (r.start, r.end) == (_local(2026, 11, 26, 0), _local(2026, 11, 26, 6))
    r = extract_report(_mail("Werkzaamheden: 28-11-2026 00:00 - 06:00\n",
                             subject="Onderhoud Zwolle"))
    assert r.start is None


def test_an_outage_is_never_announced_it_goes_to_review_without_a_status():
    raw = (b"From: storingen@kpn.example\r\nSubject: Storing na gepland onderhoud Utrecht "
           b"INC000012345681\r\nContent-Type: text/plain\r\n\r\nDienst: Internet\r\n"
           b"Starttijd: 28-11-2026 09:30\r\n")
    r = extract_report(parse_mail(raw), DEFAULT_RULES)
    assert (r.kind, r.status) == ("storing", None)
