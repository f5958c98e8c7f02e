"""Review findings on mail reading, sender checks and resolved notices.

4  a resolved notice states a repair time only when the mail gives an actual end;
11 a stub text/plain part loses to the text/html alternative that carries the labels;
12 Thunderbird forwards (HTML header table, plain "Onderwerp: \\tX" lines), Dutch and English;
14 HTML -> text keeps labels one per line (paragraphs in table cells, cells with a label
   each, a table right after text, no Markdown escapes);
15 opt-in Authentication-Results check (senders.require_dmarc_pass).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.config import ConfigError, parse
from bridge.core.mail import html_to_text, parse_mail
from bridge.core.models import Envelope, Organisation, OutageReport, ParsedMail
from bridge.core.render import Renderer, default_notice_text
from bridge.core.report import extract_report, read_labels
from bridge.core import senders
from bridge.core.senders import SenderRules, authorise

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
UTC = timezone.utc
ORG = Organisation()


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def raw_mail(body: str, *, ctype: str = 'text/plain; charset="utf-8"', subject: str = "Test",
             from_: str = "KPN <storingen@kpn.example>", headers: str = "") -> bytes:
    head = (f"{headers}From: {from_}\r\nTo: noc@cbgconnect.example\r\nSubject: {subject}\r\n"
            "Date: Sat, 28 Nov 2026 16:58:00 +0100\r\nMessage-ID: <m1@example.nl>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n\r\n")
    return (head + body).encode("utf-8")


def alternative(plain: str, html: str, **kw) -> bytes:
    body = ("--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + plain + "\r\n"
            "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--alt--\r\n")
    return raw_mail(body, ctype='multipart/alternative; boundary="alt"', **kw)


# =============================================================================================
# 4: a resolved notice presents only an actual end as the repair time
# =============================================================================================

RESOLVED = OutageReport(
    ticket="INC000012345678",
    kind="storing",
    status="opgelost",
    subject="Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Opgelost",
    services=("internet",),
    places=("Amersfoort",),
    start=utc(2026, 11, 28, 8, 42),
    end=utc(2026, 11, 28, 15, 51),
    end_expected=False,
    description="De storing is verholpen.",
    sent_at=utc(2026, 11, 28, 15, 58),
)
EXPECTED_ONLY = dataclasses.replace(RESOLVED, end=utc(2026, 11, 28, 13, 0), end_expected=True)
END_AFTER_MAIL = dataclasses.replace(RESOLVED, end=utc(2026, 11, 28, 17, 0))
MAINTENANCE_DONE = OutageReport(
    ticket="CT00012345678",
    kind="onderhoud",
    status="opgelost",
    subject="Onderhoudsmelding KPN: Internet - Zwolle (CT00012345678) - Afgerond",
    services=("internet",),
    places=("Zwolle",),
    start=utc(2026, 12, 2, 23, 0),
    end=utc(2026, 12, 3, 5, 0),  # "Eindtijd": the end of the planned window
    sent_at=utc(2026, 12, 3, 5, 20),
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES, ORG)


def test_resolved_outage_with_an_actual_end_states_it(renderer):
    for text in (renderer.render_notice(RESOLVED).text, default_notice_text(RESOLVED, ORG)):
        assert "om 16:51" in text


@pytest.mark.parametrize("report", [EXPECTED_ONLY, END_AFTER_MAIL], ids=["expected", "after-mail"])
def test_resolved_outage_never_presents_an_expected_end_as_the_repair_time(renderer, report):
    out = renderer.render_notice(report)
    assert out.template == "notices/storing_opgelost.j2" and not out.fallback
    local = "14:00" if report is EXPECTED_ONLY else "18:00"
    for text in (out.text, default_notice_text(report, ORG)):
        assert local not in text
        assert " om " not in text
        assert "opgelost" in text


def test_resolved_outage_fallback_template_does_not_call_an_expected_end_the_end(renderer, tmp_path):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "notices" / "storing_opgelost.j2").unlink()
    out = Renderer(templates, ORG).render_notice(EXPECTED_ONLY)
    assert out.template == "notices/fallback.j2" and not out.fallback
    assert "14:00" not in out.text and "Einde" not in out.text


def test_finished_maintenance_does_not_present_the_planned_end_as_the_finish_time(renderer):
    out = renderer.render_notice(MAINTENANCE_DONE)
    assert out.template == "notices/onderhoud_opgelost.j2" and not out.fallback
    for text in (out.text, default_notice_text(MAINTENANCE_DONE, ORG)):
        assert "06:00" not in text and " om " not in text
        assert "klaar" in text or "voorbij" in text


def test_resolved_mail_with_only_an_expected_end_gives_no_repair_time(renderer):
    body = ("Beste partner,\r\n\r\nTicketnummer: INC000012345678\r\nStatus: Opgelost\r\n"
            "Starttijd: 28-11-2026 09:42\r\nVerwachte eindtijd: 28-11-2026 14:00\r\n\r\n"
            "Met vriendelijke groet,\r\nKPN\r\n")
    report = extract_report(parse_mail(raw_mail(body, subject="Storing opgelost")))
    assert report.status == "opgelost" and report.end_expected
    text = renderer.render_notice(report).text
    assert "14:00" not in text and "verholpen" in text
