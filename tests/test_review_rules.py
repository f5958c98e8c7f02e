"""When in doubt, review (issue 11, item 6, the report-level half): a maintenance notice
without a window, an outage update that names nothing and changes nothing, a new outage that
names nothing, and a mail about one customer's line go to review with a reason an operator
understands; an area outage that mentions an address is still a notice.

Golden mails in tests/golden/review/ (see goldencases.py); the rules of
bridge/core/confidence.py directly below.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from bridge.core.confidence import ReviewRules, doubt, window_end
from bridge.core.incidents import IncidentState, decide
from bridge.core.labels import DEFAULT_RULES, rules_from_config
from bridge.core.models import Envelope, OutageReport, ParsedMail
from bridge.core.report import extract_report
from goldencases import GOLDEN, case_names, check_case

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=timezone.utc)


def _mail(text: str, subject: str = "") -> ParsedMail:
    env = Envelope("kpn@example.nl", "KPN", subject, T0, None)
    return ParsedMail(outer=env, original=None, forward=None, text=text)


@pytest.mark.parametrize("case", case_names(GOLDEN / "review"))
def test_golden_review_mails(case):
    check_case(GOLDEN / "review", case)


def test_there_are_three_cases_of_each_kind_in_dutch_and_english():
    names = case_names(GOLDEN / "review")
    for words in (("zonder-venster", "no-window"), ("klant", "customer", "uw-melding"),
                  ("zonder-feiten", "no-facts")):
        found = [n for n in names if any(w in n for w in words)]
        assert len(found) >= 3, words
        assert {n[:2] for n in found} == {"nl", "en"}, words


def outage(**kw) -> OutageReport:
    base = dict(ticket="INC1", kind="storing", status="nieuw", subject="s",
                places=("Ermelo",), start=T0, sent_at=T0)
    return OutageReport(**{**base, **kw})


def test_a_full_outage_has_no_doubt():
    assert doubt(outage(), None, T0 + timedelta(minutes=5)) is None


@pytest.mark.parametrize("kw", [
    {"places": ("Ermelo",)}, {"postcodes": ("3851",)}, {"services": ("internet",)},
    {"start": T0}, {"end": T0 + timedelta(hours=2)}, {"end_unknown": True},
    {"downtime_minutes": 30},
])
def test_one_named_fact_is_enough(kw):
    bare = dict(places=(), start=None)
    assert doubt(outage(status="update", **{**bare, **kw}), None, None) is None
    assert doubt(outage(status="nieuw", **{**bare, **kw}), None, None) is None


def test_a_thin_update_passes_only_with_a_new_description():
    prev = outage(description="Kabelbreuk.")
    thin = outage(status="update", places=(), start=None)
    assert "says nothing new" in doubt(thin, prev, None)
    same = dataclasses.replace(thin, description="  Kabelbreuk. ")
    assert "says nothing new" in doubt(same, prev, None)
    assert doubt(dataclasses.replace(thin, description="Monteur ter plaatse."), prev, None) is None


def test_a_thin_resolved_or_cancelled_outage_is_not_in_doubt():
    for status in ("opgelost", "geannuleerd"):
        assert doubt(outage(status=status, places=(), start=None), None, None) is None


def test_maintenance_window_rules():
    mnt = OutageReport(ticket="CT1", kind="onderhoud", status="aangekondigd", subject="s",
                       places=("Zwolle",), start=T0 + timedelta(days=3),
                       end=T0 + timedelta(days=3, hours=6), sent_at=T0)
    assert doubt(mnt, None, T0) is None
    assert window_end(mnt) == mnt.end
    no_window = dataclasses.replace(mnt, start=None, end=None)
    assert "without a window" in doubt(no_window, None, T0)
    # only an end, or only a start, is a window of sorts
    assert doubt(dataclasses.replace(mnt, start=None), None, T0) is None
    assert doubt(dataclasses.replace(mnt, end=None), None, T0) is None
    # finished or cancelled maintenance needs no window
    for status in ("opgelost", "geannuleerd"):
        assert doubt(dataclasses.replace(no_window, status=status), None, T0) is None
    # start plus downtime is the end when no end is given
    by_downtime = dataclasses.replace(mnt, end=None, downtime_minutes=90)
    assert window_end(by_downtime) == mnt.start + timedelta(minutes=90)
    assert window_end(dataclasses.replace(mnt, end=None)) is None


def test_customer_signals_and_their_config():
    r = extract_report(_mail("Ticketnummer: INC000012345678\nStatus: Nieuw\n"
                             "Plaats: Ermelo\nAansluitnummer: 0341-123456\n"))
    assert r.customer_signals == ('label "Aansluitnummer"',)
    # an empty value is no sign
    r = extract_report(_mail("Ticketnummer: INC000012345678\nStatus: Nieuw\nPlaats: Ermelo\n"
                             "Klantnaam: -\n"))
    assert r.customer_signals == ()
    # lists from config replace the defaults; empty lists switch the signs off
    rules = rules_from_config({"customer_labels": ["Abonneenummer"],
                               "customer_phrases": ["uw abonnement"]})
    r = extract_report(_mail("Status: Nieuw\nAbonneenummer: 123\nOver uw abonnement.\n"
                             "Aansluitnummer: 0341-123456\n"), rules)
    assert r.customer_signals == ('label "Abonneenummer"', 'phrase "uw abonnement"')
    off = rules_from_config({"customer_labels": [], "customer_phrases": [],
                             "address_pattern": "(?!)"})
    r = extract_report(_mail("Klantnaam: J. Jansen\nUw melding\nDorpsstraat 1, 1234 AB X\n"), off)
    assert r.customer_signals == ()


@pytest.mark.parametrize("line,sign", [
    ("Dorpsstraat 12, 3811 AB Amersfoort", True),
    ("Van Beuningenstraat 3 A, 1234AB Amsterdam", True),
    ("Adres: Laan van Meerdervoort 120-2, 2517 AV Den Haag", True),
    ("- Kerkplein 1\n  3851 CD Ermelo", True),
    ("Omschrijving: kabel geraakt bij Stationsplein 5, 3841 AB.", False),  # in a sentence
    ("Postcodes: 3811 AB, 3812 CD", False),  # no house number
    ("Starttijd: 28-11-2026 09:42", False),
])
def test_a_street_address_is_a_sign_only_as_an_address_line(line, sign):
    r = extract_report(_mail("Status: Nieuw\n" + line + "\n"))
    assert ("a street address with house number and postcode" in r.customer_signals) is sign


def test_the_signature_is_not_searched():
    r = extract_report(_mail("Status: Nieuw\nPlaats: Ermelo\n\nMet vriendelijke groet,\n"
                             "KPN\nWilhelminakade 123, 3072 AP Rotterdam\nKlantnaam: x\n"))
    assert r.customer_signals == ()


def test_signals_are_in_the_json_only_when_there_are_any():
    assert "customer_signals" not in outage().to_json()
    r = outage(customer_signals=('label "Klantnaam"',))
    assert r.to_json()["customer_signals"] == ['label "Klantnaam"']
    assert OutageReport.from_json(r.to_json()) == r


def test_duplicates_and_outdated_reports_are_not_sent_to_review():
    """The threading checks come first: a repeat of a thin or late report is not put in
    front of an operator again."""
    first = outage(status="update", places=(), start=None)
    known = IncidentState(1, "update", first)
    assert decide(first, known, now=T0 + timedelta(days=2)).action == "duplicate"
    newer = outage(status="opgelost", sent_at=T0 + timedelta(hours=2))
    assert decide(outage(), IncidentState(1, "opgelost", newer),
                  now=T0 + timedelta(days=2)).action == "outdated"


def test_review_rules_are_frozen_and_default_to_six_hours():
    assert ReviewRules().max_mail_age_hours == 6.0
    with pytest.raises(Exception):
        ReviewRules().max_mail_age_hours = 1  # type: ignore[misc]


def test_default_rules_are_unchanged_by_the_signals():
    # the customer labels fill no report field
    r = extract_report(_mail("Status: Nieuw\nKlantnaam: J.\nPlaats: Ermelo\n"), DEFAULT_RULES)
    assert r.places == ("Ermelo",) and r.description == ""


def test_carry_over_fills_only_what_an_update_leaves_out():
    from bridge.core.incidents import carry_over

    prev = outage(services=("internet",), postcodes=("3851",), end=T0 + timedelta(hours=4),
                  end_expected=True, description="Kabelbreuk.")
    thin = outage(status="update", places=(), start=None, description="Monteur ter plaatse.",
                  sent_at=T0 + timedelta(hours=1))
    full = carry_over(thin, prev)
    assert (full.places, full.postcodes, full.services, full.start, full.end, full.end_expected) == (
        prev.places, prev.postcodes, prev.services, prev.start, prev.end, True)
    assert full.description == "Monteur ter plaatse." and full.sent_at == thin.sent_at
    # what the update names stays; "end unknown" is news, not a gap
    own = dataclasses.replace(thin, places=("Putten",), end_unknown=True)
    kept = carry_over(own, prev)
    assert kept.places == ("Putten",) and kept.postcodes == () and kept.end is None
    # a resolved report does not inherit an expected end; another kind inherits nothing
    assert carry_over(dataclasses.replace(thin, status="opgelost"), prev).end is None
    mnt = dataclasses.replace(thin, kind="onderhoud")
    assert carry_over(mnt, prev) is mnt
    # a moved window (a new start, no end) does not keep the old end
    moved = dataclasses.replace(thin, start=T0 + timedelta(days=7))
    assert carry_over(moved, prev).end is None


def test_an_update_with_news_keeps_the_incidents_facts_in_its_notice():
    prev = outage(services=("internet",), end=T0 + timedelta(hours=4), end_expected=True)
    thin = outage(status="update", places=(), start=None, description="Monteur ter plaatse.",
                  sent_at=T0 + timedelta(hours=1))
    d = decide(thin, IncidentState(7, "nieuw", prev), now=T0 + timedelta(hours=1, minutes=5))
    assert d.action == "notice" and d.report is not None
    assert d.report.places == ("Ermelo",) and d.report.end == prev.end
    # the same news again (another mail, same facts) is a duplicate of the stored update
    again = decide(thin, IncidentState(7, "update", d.report),
                   now=T0 + timedelta(hours=1, minutes=10))
    assert again.action == "duplicate"


# --- approval mode: every notice waits for a person -------------------------------------------


def test_approval_mode_holds_a_report_the_bridge_could_vouch_for():
    from bridge.core.confidence import APPROVAL_REASON

    report = OutageReport(ticket="INC1", kind="storing", status="nieuw", subject="s",
                          places=("Amersfoort",), sent_at=T0)
    assert decide(report, None, now=T0, rules=ReviewRules()).action == "notice"
    held = decide(report, None, now=T0, rules=ReviewRules(approval_mode=True))
    assert held.action == "review" and held.reason == APPROVAL_REASON
    # a real doubt is named before it, and a duplicate stays a duplicate
    thin = dataclasses.replace(report, places=())
    assert "names no place" in decide(thin, None, now=T0,
                                      rules=ReviewRules(approval_mode=True)).reason
    known = IncidentState(id=1, status="nieuw", report=report)
    assert decide(report, known, now=T0, rules=ReviewRules(approval_mode=True)).action == \
        "duplicate"
    # an update that only adds news still waits
    news = dataclasses.replace(report, status="update", places=(), description="Monteur is er.")
    assert decide(news, known, now=T0,
                  rules=ReviewRules(approval_mode=True)).reason == APPROVAL_REASON
