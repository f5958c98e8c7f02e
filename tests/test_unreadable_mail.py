"""When in doubt, review: a mail whose body gave no readable report (only an image,
encrypted S/MIME or OpenPGP, an unreadable winmail.dat, an empty body) goes to review with a
reason an operator understands, never to a notice built from its subject.

Golden cases: tests/golden/unreadable/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

import pytest

from bridge.core import mime
from bridge.core.models import RawMail
from mail_golden import cases, check, dated_now, golden_mail


@pytest.mark.parametrize("case", cases("unreadable"))
def test_golden(case):
    check("unreadable", case)


@pytest.mark.parametrize("case, words", [
    ("f11-alleen-afbeelding", "only an image (melding.png)"),
    ("f12-winmail-dat", "winmail.dat"),
    ("u01-smime-versleuteld", "encrypted (S/MIME)"),
    ("u02-pgp-encrypted-en", "encrypted (OpenPGP)"),
    ("u03-lege-body", "the body is empty"),
    ("u04-image-only-alternative-en", "only an image (outage.png)"),
    ("u05-doorgestuurde-afbeelding", "in the forwarded mail"),
    ("u06-winmail-dat-geen-tnef", "winmail.dat"),
])
def test_review_with_a_reason_an_operator_understands(case, words):
    got = check("unreadable", case)
    assert got["outcome"] == "review" and got["report"] is None
    assert got["reason"].startswith("no readable report") and words in got["reason"], got


def test_read_tnef_problems_name_winmail_dat():
    assert "winmail.dat" in mime.read_tnef(b"not tnef", []).problem
    assert "winmail.dat" in mime.read_tnef(b"", []).problem
    damaged = mime.read_tnef(b"\x78\x9f\x3e\x22" + b"\x00" * 40, [])
    assert damaged.problem and "winmail.dat" in damaged.problem


def test_f11_goes_to_the_review_queue_not_to_customers(app):
    app.store.subscribers.add("+31611111111", "console", "cli:test")
    mail_id = app.store.mails.add(RawMail(dated_now(golden_mail("unreadable",
                                                                "f11-alleen-afbeelding")),
                                          "cli"))
    out = app.pipeline.process(mail_id)
    assert out.outcome == "review" and out.notice_id is None
    assert "only an image" in out.reason
    assert app.store.deliveries.counts() == {}
    review = app.store.db.one("SELECT reason, state FROM review WHERE raw_mail_id=?",
                              (mail_id,))
    assert review["state"] == "open" and review["reason"] == out.reason


def test_preview_sends_f11_to_review(app):
    preview = app.pipeline.preview(dated_now(golden_mail("unreadable", "f11-alleen-afbeelding")))
    assert preview.outcome == "review" and "only an image" in preview.reason
