"""Everywhere a report can be: the HTML alternative when the plain part holds no report
(Gmail's plain part with only the forward header lines), an attached mail typed
application/octet-stream or named *.eml opened like message/rfc822, and winmail.dat (Outlook
TNEF) read with tnefparse.

Golden cases: tests/golden/sources/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

import base64

import pytest

from bridge.core.mail import parse_mail
from bridge.core.models import RawMail
from mail_golden import CONFIG, cases, check, dated_now, golden_mail

NUMBERS = ["+31611111111", "+31622222222"]


@pytest.mark.parametrize("case", cases("sources"))
def test_golden(case):
    check("sources", case)


@pytest.mark.parametrize("case, forward", [
    ("f06-gmail-doorgestuurd-html", "inline"),
    ("f09-bijlage-octet-stream", "attachment"),
    ("s01-attached-eml-octet-stream-en", "attachment"),
    ("s02-bijlage-eml-als-text-plain", "attachment"),
    ("s03-gmail-html-forward-en", "inline"),
    ("s04-winmail-dat-leesbaar", "inline"),
    ("s05-winmail-dat-attached-eml-en", "attachment"),
])
def test_each_source_gives_the_kpn_report(case, forward):
    got = check("sources", case)
    assert got["outcome"] == "queued" and got["forward"] == forward, got
    assert got["report"]["places"] and got["report"]["start"] and got["report"]["status"]


def test_f06_reads_the_html_and_leaves_the_forwarders_comment_out():
    parsed = parse_mail(golden_mail("sources", "f06-gmail-doorgestuurd-html"),
                        senders=CONFIG.senders)
    assert "Harderwijk, Hierden" in parsed.text
    assert "Graag doorzetten" in parsed.forward_comment and "doorzetten" not in parsed.text


def test_an_octet_stream_that_is_no_mail_stays_an_attachment():
    pdf = base64.encodebytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n").decode()
    raw = ("From: support@cbgconnect.example\nSubject: FW: x\nMIME-Version: 1.0\n"
           'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
           "Zie bijlage.\n--b\nContent-Type: application/octet-stream; name=\"x.pdf\"\n"
           "Content-Transfer-Encoding: base64\nContent-Disposition: attachment\n\n"
           f"{pdf}\n--b--\n").encode()
    parsed = parse_mail(raw, senders=CONFIG.senders)
    assert parsed.original is None and parsed.text == "Zie bijlage."


def test_an_attached_mail_of_a_kpn_sender_is_not_unwrapped():
    """Only a listed forwarder's attachments are forwards: KPN's own mail is its own text."""
    raw = golden_mail("sources", "f09-bijlage-octet-stream").replace(
        b"From: Support CBG Connect <support@cbgconnect.example>",
        b"From: KPN <pieter.jansen@kpn.example>")
    parsed = parse_mail(raw, senders=CONFIG.senders)
    assert parsed.original is None and parsed.text == "Zie bijlage, graag doorzetten."


@pytest.mark.parametrize("first, second", [
    ("f06-gmail-doorgestuurd-html", "f09-bijlage-octet-stream"),
])
def test_the_forwards_of_f01_are_duplicates_of_it(app, first, second):
    """f06 and f09 forward f01: after f01 they add nothing (duplicate), before it one queues."""
    for n in NUMBERS:
        app.store.subscribers.add(n, "console", "cli:test")
    ids = [app.store.mails.add(RawMail(dated_now(golden_mail(subject, case)), "cli"))
           for subject, case in (("automatic", "f01-storing-nieuw"), ("sources", first),
                                 ("sources", second))]
    outcomes = [app.pipeline.process(i).outcome for i in ids]
    assert outcomes == ["queued", "duplicate", "duplicate"]
    assert app.store.deliveries.counts() == {"pending": 2}
