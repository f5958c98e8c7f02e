"""The whole pure chain per golden case: raw mail -> report JSON -> notice text.

tests/golden/mail/<case>.eml -> <case>.json (checked in test_report.py too) ->
tests/golden/chain/<case>.txt, the exact notice the shipped templates make, decided and
rendered as of a fixed moment: five minutes after the mail's Date (the bridge decides and
writes a notice as of when it processes a mail). Mails that would not reach customers (review)
have no .txt. REGEN=1 rewrites the texts; read every changed text before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.core.incidents import decide
from bridge.core.mail import parse_mail
from bridge.core.models import OutageReport
from bridge.core.report import extract_report
from helpers import MAILS

CHAIN = Path(__file__).parent / "golden" / "chain"
CASES = sorted(p.stem for p in MAILS.glob("*.eml"))


@pytest.mark.parametrize("case", CASES)
def test_chain(case, renderer):
    report = extract_report(parse_mail((MAILS / f"{case}.eml").read_bytes()))
    expected_json = json.loads((MAILS / f"{case}.json").read_text())
    assert report.to_json() == expected_json
    assert OutageReport.from_json(expected_json) == report  # the JSON round-trips

    golden = CHAIN / f"{case}.txt"
    now = report.sent_at + timedelta(minutes=5) if report.sent_at else None
    if decide(report, None, now=now).action == "review":
        assert not golden.exists(), f"{case} goes to review; it has no notice"
        return
    rendered = renderer.render_notice(report, now=now)
    assert not rendered.fallback, rendered.error
    assert len(rendered.text) <= 700
    if os.environ.get("REGEN"):
        CHAIN.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered.text + "\n")
    assert rendered.text + "\n" == golden.read_text()
