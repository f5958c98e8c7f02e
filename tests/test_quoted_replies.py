"""A reply that quotes history is read from its own text; only a mail from a listed
forwarder is unwrapped as a forward, and a forwarder's comment never reaches a notice.

A KPN mail that quotes earlier mails below "-----Original Message-----", an Outlook
"Van:/Verzonden:" (or "From:/Sent:") block or a Gmail "Op ... schreef ...:" / "On ...
wrote:" line is not a forward: its report is the text above the quote. A KPN reply whose own
text holds no report goes to review; so does a forwarder writing in their own words.

Golden cases: tests/golden/replies/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

import pytest

from bridge.core import forwards
from bridge.core.mail import parse_mail
from bridge.core.models import RawMail
from mail_golden import CONFIG, cases, check, dated_now, golden_mail

NUMBERS = ["+31611111111", "+31622222222"]


@pytest.mark.parametrize("case", cases("replies"))
def test_golden(case):
    check("replies", case)


def test_f05_is_the_resolved_report_of_its_own_text():
    got = check("replies", "f05-opgelost-met-citaat")
    report = got["report"]
    assert got["outcome"] == "queued" and got["forward"] is None
    assert report["status"] == "opgelost"
    assert report["end"] == "2026-11-28T10:02:00+00:00" and not report["end_expected"]  # 11:02


@pytest.mark.parametrize("case, status", [
    ("r01-outlook-van-verzonden", "opgelost"),
    ("r02-gmail-schreef", "opgelost"),
    ("r03-on-wrote-en", "opgelost"),
    ("r04-original-message-en-from-sent", "update"),
    ("r07-support-stuurt-kpn-antwoord-met-citaat-door", "opgelost"),
])
def test_each_quote_shape_gives_the_replys_own_report(case, status):
    got = check("replies", case)
    assert got["outcome"] == "queued" and got["report"]["status"] == status


def test_a_forward_by_support_of_a_kpn_reply_stops_at_the_kpn_mail():
    """support -> KPN's resolved reply (which quotes the 'Nieuw' mail): the report is the
    KPN reply's own text, and support's comment ("Status: dringend") is nowhere in it."""
    parsed = parse_mail(golden_mail("replies", "r07-support-stuurt-kpn-antwoord-met-citaat-door"),
                        senders=CONFIG.senders)
    assert parsed.forward == "inline"
    assert parsed.original.from_addr == "storingsmeldingen@wholesale.kpn.example"
    assert "Opgelost" in parsed.text and "Nieuw" not in parsed.text
    assert "dringend" in parsed.forward_comment and "dringend" not in parsed.text


@pytest.mark.parametrize("case, why", [
    ("r05-alleen-tekst-boven-citaat", "own text holds no report"),
    ("r06-kpn-medewerker-stuurt-door", "own text is empty"),
])
def test_a_kpn_reply_without_a_report_of_its_own_goes_to_review(case, why):
    got = check("replies", case)
    assert got["outcome"] == "review" and why in got["reason"], got


@pytest.mark.parametrize("case", ["r08-support-eigen-woorden", "r09-support-own-words-en"])
def test_a_forwarder_writing_in_their_own_words_goes_to_review(case):
    got = check("replies", case)
    assert got["outcome"] == "review"
    assert "sent no forwarded KPN mail" in got["reason"] and "operator decides" in got["reason"]


def test_without_sender_rules_every_forward_is_still_unwrapped():
    """parse_mail without rules (tools, the report golden files) keeps the old reading."""
    parsed = parse_mail(golden_mail("replies", "f05-opgelost-met-citaat"))
    assert parsed.forward == "inline" and "Nieuw" in parsed.text


# --- the quote finder -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, own", [
    ("Status: Opgelost\n\n-----Original Message-----\nFrom: a@b\nSubject: x\n\nold",
     "Status: Opgelost"),
    ("Status: Opgelost\n\n________________________________\nVan: a@b\nVerzonden: nu\n"
     "Onderwerp: x\n\nold", "Status: Opgelost"),
    ("Status: Opgelost\n\nOp za 28 nov 2026 om 07:20 schreef KPN <a@b>:\n\n> old",
     "Status: Opgelost"),
    ("Status: Opgelost\nOn Sat, Nov 28, 2026 at 7:20 AM KPN <\na@b> wrote:\n> old",
     "Status: Opgelost"),
    ("Status: Opgelost\nOp 28 nov 2026, om 07:20 heeft KPN het volgende geschreven:\n\n> old",
     "Status: Opgelost"),
    ("Status: Opgelost\nKPN schreef op 28-11-2026 07:20:\n> old", "Status: Opgelost"),
])
def test_own_text_is_what_is_above_the_quote(text, own):
    assert forwards.own_text(text) == (own, True)


@pytest.mark.parametrize("text", [
    "Status: Opgelost\nOmschrijving: Op 28-11 schreef de monteur: kabel vervangen.",
    "Status: Opgelost\n\n> een regel die met > begint, zonder kop erboven",
    "Status: Opgelost\n---------\nGetroffen gebied: Ede",
])
def test_text_without_quoted_history_is_kept_whole(text):
    assert forwards.own_text(text) == (text, False)


# --- through the pipeline ---------------------------------------------------------------------------


def test_f05_after_f01_resolves_the_incident(app):
    from datetime import timedelta

    from helpers import mail_date

    for n in NUMBERS:
        app.store.subscribers.add(n, "console", "cli:test")
    f01 = golden_mail("automatic", "f01-storing-nieuw")
    f05 = golden_mail("replies", "f05-opgelost-met-citaat")
    first = app.store.mails.add(RawMail(f01, "cli"))
    second = app.store.mails.add(RawMail(f05, "cli"))
    # each decided five minutes after it was sent, as the daemon would have
    assert app.pipeline.process(first, now=mail_date(f01) + timedelta(minutes=5)).outcome == "queued"
    out = app.pipeline.process(second, now=mail_date(f05) + timedelta(minutes=5))
    assert out.outcome == "queued", out.reason
    assert "status nieuw -> opgelost" in out.reason
    notice = app.store.db.one("SELECT status, text FROM notices WHERE id=?", (out.notice_id,))
    assert notice["status"] == "opgelost" and "11:02" in notice["text"]


@pytest.mark.parametrize("line", [
    "on " + "wrote on " * 77, "op " + "schreef op " * 40 + ":", "On a wrote:" * 60,
    "Op " + "a " * 340 + "schreef:",
])
def test_the_quote_finder_is_linear_on_hostile_lines(line):
    """Thousands of look-alike attribution lines, each followed by a quote (ReDoS guard; a
    generous bound: a safety test, not a benchmark)."""
    import time

    text = "\n".join([line, "> q"] * 3000)
    t0 = time.perf_counter()
    forwards.own_text(text)
    assert time.perf_counter() - t0 < 2.0
