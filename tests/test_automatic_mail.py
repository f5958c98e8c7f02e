"""Automatic mail never becomes a notice: out-of-office replies, read receipts (MDN),
delivery-status bounces (DSN) and other machine-generated mail, recognised by every signal
mail software uses (core.automatic), rejected before any incident or supersede work.

Golden cases: tests/golden/automatic/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, parse
from bridge.core.automatic import DEFAULT_RULES, AutomaticRules, detect, rules_from_config
from bridge.core.mail import parse_mail
from bridge.core.models import RawMail
from mail_golden import CONFIG, cases, check, dated_now, golden_mail, judge

NUMBERS = ["+31611111111", "+31622222222"]


@pytest.mark.parametrize("case", cases("automatic"))
def test_golden(case):
    check("automatic", case)


def test_the_field_cases_are_rejected_naming_what_they_are():
    expect = {"f02-afwezigheidsbericht": "out-of-office reply",
              "f03-leesbevestiging": "read receipt",
              "f04-bounce": "delivery-status bounce"}
    for case, what in expect.items():
        got = judge(golden_mail("automatic", case))
        assert got["outcome"] == "rejected" and got["reason"].startswith(what), got


@pytest.mark.parametrize("kind", ["out-of-office", "read-receipt", "bounce"])
def test_at_least_three_cases_of_each_kind_in_dutch_and_english(kind):
    words = {"out-of-office": "out-of-office reply", "read-receipt": "read receipt",
             "bounce": "delivery-status bounce"}[kind]
    found = [c for c in cases("automatic")
             if (judge(golden_mail("automatic", c)).get("reason") or "")
             .removeprefix("a forwarded ").startswith(words)]
    assert len(found) >= 3, found


# --- signals, one at a time ---------------------------------------------------------------------


def mail(headers: str = "", subject: str = "Storingsmelding KPN: Internet - Ede (INC1) - Nieuw",
         from_: str = "storingsmeldingen@kpn.example", ctype: str = "text/plain",
         body: str = "Status: Nieuw\n") -> bytes:
    return (f"From: {from_}\nTo: noc@cbgconnect.example\nSubject: {subject}\n{headers}"
            f"MIME-Version: 1.0\nContent-Type: {ctype}\n\n{body}").encode()


def reason(raw: bytes, rules: AutomaticRules = DEFAULT_RULES) -> str | None:
    found = detect(parse_mail(raw, senders=CONFIG.senders), rules)
    return found.reason if found else None


@pytest.mark.parametrize("headers, what", [
    ("Auto-Submitted: auto-replied\n", "out-of-office reply"),
    ("Auto-Submitted: auto-replied; owner-email=\"x@kpn.example\"\n", "out-of-office reply"),
    ("Auto-Submitted: auto-generated\n", "automatic mail"),
    ("Auto-Submitted: auto-notified\n", "automatic mail"),
    ("Auto-Submitted: Auto-Replied\n", "out-of-office reply"),
    ("Precedence: auto_reply\n", "out-of-office reply"),
    ("Precedence: bulk\n", "automatic mail"),
    ("Precedence: junk\n", "automatic mail"),
    ("X-Autoreply: yes\n", "out-of-office reply"),
    ("X-Autorespond: on\n", "out-of-office reply"),
    ("X-Failed-Recipients: a@b.example\n", "delivery-status bounce"),
    ("X-MS-Exchange-Message-Is-Ndr:\n", "delivery-status bounce"),
    ("Return-Path: <>\n", "automatic mail"),
    ("In-Reply-To: <x@y>\nX-Auto-Response-Suppress: All\n", "out-of-office reply"),
    ("X-MS-Exchange-Inbox-Rules-Loop: a@kpn.example\nX-Auto-Response-Suppress: OOF\n",
     "out-of-office reply"),
])
def test_each_header_signal(headers, what):
    assert (reason(mail(headers)) or "").startswith(what)


@pytest.mark.parametrize("headers", [
    "Auto-Submitted: no\n",  # RFC 3834: sent by a person
    "X-Auto-Response-Suppress: All\n",  # a sender asking not to be answered, not a reply
    "Precedence: first-class\n",
    "Return-Path: <storingsmeldingen@kpn.example>\n",
])
def test_a_report_with_harmless_headers_is_no_automatic_mail(headers):
    assert reason(mail(headers)) is None


@pytest.mark.parametrize("subject, what", [
    ("Automatisch antwoord: RE: Storing", "out-of-office reply"),
    ("Afwezig: Storingsmelding", "out-of-office reply"),
    ("Out of Office: Storing", "out-of-office reply"),
    ("Automatic reply: Storing", "out-of-office reply"),
    ("Autoreply: Storing", "out-of-office reply"),
    ("Gelezen: RE: Storing", "read receipt"),
    ("Read: Storing", "read receipt"),
    ("Onbestelbaar: Storing", "delivery-status bounce"),
    ("Undeliverable: Storing", "delivery-status bounce"),
    ("Delivery Status Notification (Failure)", "delivery-status bounce"),
    ("Undelivered Mail Returned to Sender", "delivery-status bounce"),
    ("FW: Automatisch antwoord: Storing", "out-of-office reply"),  # forwarded by support
])
def test_subject_prefixes_dutch_and_english(subject, what):
    assert (reason(mail(subject=subject)) or "").startswith(what)


@pytest.mark.parametrize("subject", [
    "Storingsmelding KPN: Internet - Readington (INC1) - Nieuw",  # "Read" inside a word
    "Storing opgelost: Afwezigheid van stroom in Ede",  # not at the start
    "RE: Storingsmelding KPN: Internet - Ede (INC1) - Opgelost",
])
def test_subjects_that_only_look_alike_are_no_signal(subject):
    assert reason(mail(subject=subject)) is None


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx1.kpn.example", "postmaster@kpn.example"])
def test_bounce_senders(sender):
    assert (reason(mail(from_=sender)) or "").startswith("delivery-status bounce")


def test_a_report_type_alone_names_the_kind():
    raw = mail(ctype='multipart/report; report-type=delivery-status; boundary="b"',
               body="--b\nContent-Type: text/plain\n\nfailed\n--b--\n")
    assert reason(raw).startswith("delivery-status bounce (multipart/report")
    raw = mail(ctype='multipart/report; report-type=feedback-report; boundary="b"',
               body="--b\nContent-Type: text/plain\n\nabuse\n--b--\n")
    assert reason(raw).startswith("automatic mail (multipart/report; report-type=feedback")


def test_a_bounce_is_never_unwrapped_as_a_forward_whatever_the_rules():
    """The mail inside a bounce is no report, not even without sender rules."""
    raw = golden_mail("automatic", "f04-bounce")
    for senders in (None, CONFIG.senders):
        parsed = parse_mail(raw, senders=senders)
        assert parsed.original is None and parsed.forward is None
        assert "Hierden" not in parsed.text  # only the bounce's own text


def test_the_lists_come_from_config():
    raw = mail("Auto-Submitted: auto-generated\nPrecedence: bulk\n")
    assert reason(raw) is not None
    rules = rules_from_config({"auto_submitted_except": ["no", "auto-generated"],
                               "precedence": ["auto_reply"]})
    assert reason(raw, rules) is None
    rules = rules_from_config({"headers": {"X-Storing-Bot": "automatic"},
                               "out_of_office_subjects": ["Vakantie:"]})
    assert reason(mail("X-Storing-Bot: 1\n"), rules).startswith("automatic mail (header")
    assert reason(mail(subject="Vakantie: weg"), rules).startswith("out-of-office reply")
    assert reason(mail("X-Autoreply: yes\n"), rules) is None  # the table replaced the default


@pytest.mark.parametrize("table, error", [
    ({"precedence": "bulk"}, "automatic.precedence: must be a list"),
    ({"headers": {"X-A": "holiday"}}, "automatic.headers.X-A: kind must be one of"),
    ({"null_return_path": "yes"}, "automatic.null_return_path: must be true or false"),
    ({"subjects": []}, "automatic.subjects: unknown key"),
])
def test_config_errors_name_the_key(table, error, tmp_path):
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        parse({"automatic": table}, tmp_path / "config.toml")


# --- through the pipeline: a rejected mail never supersedes a pending notice ----------------------


@pytest.mark.parametrize("case", ["f02-afwezigheidsbericht", "f03-leesbevestiging",
                                  "f04-bounce"])
def test_an_automatic_mail_after_a_report_leaves_its_notice_untouched(app, case):
    """f01 queues a notice for every subscriber; the automatic mail about the same ticket
    (its subject repeats ticket and status) is rejected before any incident work, so f01's
    pending deliveries are not superseded."""
    for n in NUMBERS:
        app.store.subscribers.add(n, "console", "cli:test")
    first = app.store.mails.add(RawMail(dated_now(golden_mail("automatic", "f01-storing-nieuw")),
                                        "cli"))
    assert app.pipeline.process(first).outcome == "queued"
    before = app.store.deliveries.counts()
    assert before == {"pending": 2}
    second = app.store.mails.add(RawMail(dated_now(golden_mail("automatic", case)), "cli"))
    out = app.pipeline.process(second)
    assert out.outcome == "rejected" and out.incident_id is None and out.notice_id is None
    assert app.store.deliveries.counts() == before
    assert app.store.mails.outcome(second)["reason"] == out.reason


def test_a_bounce_forwarded_by_support_is_a_forwarded_bounce():
    raw = (b"From: Support CBG Connect <support@cbgconnect.example>\nTo: x@cbgconnect.example\n"
           b"Subject: FW: Undelivered\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="o"\n\n--o\nContent-Type: text/plain\n\n'
           b"Kijk hier eens naar.\n--o\nContent-Type: message/rfc822\n\n"
           + golden_mail("automatic", "f04-bounce") + b"\n--o--\n")
    got = judge(raw)
    assert got["outcome"] == "rejected"
    assert got["reason"].startswith("a forwarded delivery-status bounce (multipart/report")


def test_preview_says_what_ingest_would(app):
    preview = app.pipeline.preview(dated_now(golden_mail("automatic", "f02-afwezigheidsbericht")))
    assert preview.outcome == "rejected" and preview.reason.startswith("out-of-office reply")
    assert preview.text is None
