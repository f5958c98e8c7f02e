"""Review findings on mail reading, sender checks and resolved notices.

4  a resolved notice states a repair time only when the mail gives an actual end;
11 a stub text/plain part loses to the text/html alternative that carries the labels;
12 Thunderbird forwards (HTML header table, plain "Onderwerp: \\tX" lines), Dutch and English;
14 HTML -> text keeps labels one per line (paragraphs in table cells, cells with a label
   each, a table right after text, no Markdown escapes), while the paragraphs of a value cell
   stay one value;
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


# =============================================================================================
# 11: a stub text/plain part loses to the HTML alternative with the labels
# =============================================================================================

KPN_HTML = ("<p>Beste partner,</p><table>"
            "<tr><td>Ticketnummer</td><td>INC000012345678</td></tr>"
            "<tr><td>Status</td><td>Nieuw</td></tr>"
            "<tr><td>Getroffen gebied</td><td>Amersfoort</td></tr></table>"
            "<p>Met vriendelijke groet,<br>KPN</p>")


@pytest.mark.parametrize("plain", [
    "View this mail in your browser: https://kpn.example/view/123",
    "Bekijk deze e-mail in je browser.",
    "",
    "   \r\n  ",
])
def test_stub_plain_part_loses_to_html_with_labels(plain):
    parsed = parse_mail(alternative(plain, KPN_HTML))
    assert "Ticketnummer| INC000012345678" in parsed.text
    report = extract_report(parsed)
    assert (report.ticket, report.status, report.places) == (
        "INC000012345678", "nieuw", ("Amersfoort",))


def test_plain_part_with_the_labels_is_still_preferred():
    plain = "Ticketnummer: INC000012345678\r\nStatus: Nieuw\r\nGetroffen gebied: Amersfoort\r\n"
    assert parse_mail(alternative(plain, KPN_HTML)).text.startswith("Ticketnummer: INC")


def test_neither_part_has_labels_plain_wins():
    parsed = parse_mail(alternative("Platte versie", "<p>HTML versie</p>"))
    assert parsed.text == "Platte versie"


def test_plain_report_is_not_outvoted_by_an_html_footer():
    plain = ("Ticketnummer: INC000012345678\r\nStatus: Nieuw\r\nGetroffen gebied: Amersfoort\r\n"
             "Starttijd: 28-11-2026 09:42\r\nVerwachte eindtijd: 28-11-2026 14:00\r\n")
    rows = [("Ticketnummer", "INC000012345678"), ("Status", "Nieuw"),
            ("Getroffen gebied", "Amersfoort"), ("Starttijd", "28-11-2026 09:42"),
            ("Verwachte eindtijd", "28-11-2026 12:00")]
    footer = ["Tel: 0800-0402", "Web: kpn.com", "KvK: 27124701", "Adres: Wilhelminakade 123",
              "Postbus: 30000", "Plaats: Rotterdam", "Fax: n.v.t.", "Mail: x@kpn.com",
              "Twitter: @kpn", "BTW: NL00"]
    html = ("<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
            + "</table>" + "".join(f"<p>{line}</p>" for line in footer))
    parsed = parse_mail(alternative(plain, html))
    assert parsed.text.startswith("Ticketnummer: INC")
    assert "14:00" in parsed.text and "KvK" not in parsed.text


def test_html_with_few_labels_does_not_beat_a_plain_part():
    html = "<table><tr><td>Status</td><td>Nieuw</td></tr></table><p>Tel: 0800-0402</p>"
    assert parse_mail(alternative("Zie de HTML-versie.", html)).text == "Zie de HTML-versie."


# =============================================================================================
# 12: Thunderbird forwards
# =============================================================================================

TB_HEADERS = {
    "nl": ("-------- Doorgestuurd bericht --------", "Onderwerp:", "Datum:", "Van:", "Aan:"),
    "en": ("-------- Forwarded Message --------", "Subject:", "Date:", "From:", "To:"),
}
TB_SUBJECT = "Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Nieuw"
TB_DATE = "Sat, 28 Nov 2026 09:45:00 +0100"


def thunderbird_html(lang: str) -> str:
    sep, subj, date, frm, to = TB_HEADERS[lang]
    return f"""<html>
  <head>
    <meta http-equiv="content-type" content="text/html; charset=UTF-8">
  </head>
  <body>
    <p>Graag doorzetten naar de klanten.<br>
      Groet, Sanne<br>
    </p>
    <div class="moz-forward-container"><br>
      <br>
      {sep}
      <table class="moz-email-headers-table" cellspacing="0"
        cellpadding="0" border="0">
        <tbody>
          <tr>
            <th valign="BASELINE" nowrap="nowrap" align="RIGHT">{subj}
            </th>
            <td>{TB_SUBJECT}</td>
          </tr>
          <tr>
            <th valign="BASELINE" nowrap="nowrap" align="RIGHT">{date} </th>
            <td>{TB_DATE}</td>
          </tr>
          <tr>
            <th valign="BASELINE" nowrap="nowrap" align="RIGHT">{frm} </th>
            <td>KPN Wholesale Storingsdienst <a class="moz-txt-link-rfc2396E"
                href="mailto:storingsmeldingen@wholesale.kpn.example">&lt;storingsmeldingen@wholesale.kpn.example&gt;</a></td>
          </tr>
          <tr>
            <th valign="BASELINE" nowrap="nowrap" align="RIGHT">{to} </th>
            <td><a class="moz-txt-link-abbreviated moz-txt-link-freetext"
                href="mailto:noc@cbgconnect.example">noc@cbgconnect.example</a></td>
          </tr>
        </tbody>
      </table>
      <br>
      <br>
      <meta http-equiv="content-type" content="text/html; charset=UTF-8">
      <p>Beste partner,</p>
      <p>Ticketnummer: INC000012345678<br>
        Status: Nieuw<br>
        Omschrijving: Kabelbreuk.</p>
      <p>Met vriendelijke groet,<br>
        KPN</p>
    </div>
  </body>
</html>
"""


def thunderbird_plain(lang: str) -> str:
    sep, subj, date, frm, to = TB_HEADERS[lang]
    return (f"Graag doorzetten naar de klanten.\r\nGroet, Sanne\r\n\r\n\r\n{sep}\r\n"
            f"{subj} \t{TB_SUBJECT}\r\n{date} \t{TB_DATE}\r\n"
            f"{frm} \tKPN Wholesale Storingsdienst <storingsmeldingen@wholesale.kpn.example>\r\n"
            f"{to} \tnoc@cbgconnect.example\r\n\r\n\r\n\r\nBeste partner,\r\n\r\n"
            "Ticketnummer: INC000012345678\r\nStatus: Nieuw\r\nOmschrijving: Kabelbreuk.\r\n\r\n"
            "Met vriendelijke groet,\r\nKPN\r\n")


def check_thunderbird(parsed) -> None:
    assert parsed.forward == "inline"
    assert parsed.original is not None
    assert parsed.original.from_addr == "storingsmeldingen@wholesale.kpn.example"
    assert parsed.original.from_name == "KPN Wholesale Storingsdienst"
    assert parsed.original.subject == TB_SUBJECT
    assert parsed.original.date == utc(2026, 11, 28, 8, 45)
    assert parsed.text.startswith("Beste partner,")
    assert "Sanne" in parsed.forward_comment and "Sanne" not in parsed.text
    for word in ("Onderwerp", "Subject", "Doorgestuurd", "Forwarded", "noc@"):
        assert word not in parsed.text
    report = extract_report(parsed)
    assert (report.ticket, report.status, report.description) == (
        "INC000012345678", "nieuw", "Kabelbreuk.")
    assert authorise(parsed, SenderRules(kpn=("kpn.example",),
                                         forwarders=("support@cbgconnect.example",))).allowed


SANNE = "Sanne <support@cbgconnect.example>"


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_thunderbird_html_forward(lang):
    check_thunderbird(parse_mail(raw_mail(thunderbird_html(lang), from_=SANNE,
                                          ctype="text/html; charset=utf-8",
                                          subject=f"Fwd: {TB_SUBJECT}")))


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_thunderbird_plain_forward_subject_first(lang):
    check_thunderbird(parse_mail(raw_mail(thunderbird_plain(lang), from_=SANNE,
                                          subject=f"Fwd: {TB_SUBJECT}")))


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_thunderbird_html_and_plain_alternative(lang):
    check_thunderbird(parse_mail(alternative(thunderbird_plain(lang), thunderbird_html(lang),
                                             from_=SANNE, subject=f"Fwd: {TB_SUBJECT}")))


# =============================================================================================
# 14: HTML -> text keeps labels one per line
# =============================================================================================


def test_paragraphs_in_a_table_cell_are_lines():
    html = ("<table><tr><td><p>Status: Nieuw</p><p>Gebied: Ede</p></td></tr>"
            "<tr><td><div>Omschrijving: kabel</div><div>Oorzaak: graafwerk</div>Extra</td></tr>"
            "</table>")
    text = html_to_text(html)
    for line in ("Status: Nieuw", "Gebied: Ede", "Omschrijving: kabel", "Oorzaak: graafwerk",
                 "Extra"):
        assert line in text.split("\n"), text
    assert read_labels(text)["places"] == "Ede"


def test_cells_that_each_hold_a_label_are_lines():
    html = ("<table><tr><td>Status: Nieuw</td><td>Gebied: Ede</td></tr>"
            "<tr><td>Starttijd: 28-11-2026 09:42</td><td>Einde: 28-11-2026 14:00</td></tr></table>")
    lines = html_to_text(html).split("\n")
    for line in ("Status: Nieuw", "Gebied: Ede", "Starttijd: 28-11-2026 09:42",
                 "Einde: 28-11-2026 14:00"):
        assert line in lines, lines
    labels = read_labels("\n".join(lines))
    assert (labels["status"], labels["places"]) == ("Nieuw", "Ede")


def test_label_and_value_cells_stay_one_row():
    # Outlook wraps every cell's text in <p class=MsoNormal>: still "Label| value"
    html = ('<table><tr><td><p class="MsoNormal">Status</p></td><td><p class="MsoNormal">Nieuw'
            '</p></td></tr><tr><td><p>Gebied</p></td><td><p>Amersfoort</p></td></tr>'
            "<tr><td>Starttijd</td><td>28-11-2026 09:42</td></tr></table>")
    lines = html_to_text(html).split("\n")
    assert "Status| Nieuw" in lines and "Gebied| Amersfoort" in lines
    assert "Starttijd| 28-11-2026 09:42" in lines


KPN_SUBJECT = "Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Nieuw"


def test_paragraphs_in_a_value_cell_stay_one_value():
    # Outlook: every paragraph a <p class=MsoNormal>, an empty one (&nbsp;) between them
    html = ('<table><tr><td><p class="MsoNormal">Ticketnummer</p></td><td><p class="MsoNormal">'
            'INC000012345678</p></td></tr>'
            '<tr><td><p class="MsoNormal">Status</p></td><td><p class="MsoNormal">Nieuw</p></td></tr>'
            '<tr><td><p class="MsoNormal">Getroffen gebied</p></td><td><p class="MsoNormal">'
            'Amersfoort<o:p></o:p></p><p class="MsoNormal">Leusden<o:p></o:p></p></td></tr>'
            '<tr><td><p class="MsoNormal">Omschrijving</p></td><td><p class="MsoNormal">Kabel '
            'beschadigd.<o:p></o:p></p><p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
            '<p class="MsoNormal">Let op: herstart het modem na herstel.<o:p></o:p></p></td></tr>'
            "</table>")
    lines = html_to_text(html).split("\n")
    assert "Omschrijving| Kabel beschadigd. Let op: herstart het modem na herstel." in lines
    report = extract_report(parse_mail(raw_mail(html, ctype="text/html; charset=utf-8",
                                                subject=KPN_SUBJECT)))
    assert report.description == "Kabel beschadigd. Let op: herstart het modem na herstel."
    assert report.places == ("Amersfoort", "Leusden")  # one paragraph a place


def test_a_label_inside_a_value_cell_is_not_a_label_of_the_mail():
    html = ("<table><tr><td>Ticketnummer</td><td>INC000012345678</td></tr>"
            "<tr><td>Omschrijving</td><td><div>Kabel beschadigd.</div>"
            "<div>Status: monteur onderweg</div></td></tr>"
            "<tr><td>Status</td><td>Opgelost</td></tr></table>")
    lines = html_to_text(html).split("\n")
    assert "Omschrijving| Kabel beschadigd. Status: monteur onderweg" in lines
    report = extract_report(parse_mail(raw_mail(html, ctype="text/html; charset=utf-8",
                                                subject=KPN_SUBJECT)))
    assert report.status == "opgelost"
    assert report.description == "Kabel beschadigd. Status: monteur onderweg"


def test_line_breaks_in_a_value_cell_still_give_one_place_each():
    html = ("<table><tr><td>Plaatsen</td><td>Zwolle<br>Hattem<br>Heino</td></tr>"
            "<tr><td>Omschrijving</td><td>Kabel beschadigd.<br>Let op: herstart het modem.</td>"
            "</tr></table>")
    lines = html_to_text(html).split("\n")
    assert lines[:3] == ["Plaatsen| Zwolle", "Hattem", "Heino"]
    assert "Omschrijving| Kabel beschadigd. Let op: herstart het modem." in lines


def test_a_table_after_text_starts_on_its_own_line():
    text = html_to_text("Zie hieronder:<table><tr><td>Status</td><td>Nieuw</td></tr></table>"
                        "Einde tekst")
    lines = text.split("\n")
    assert "Zie hieronder:" in lines and "Status| Nieuw" in lines and "Einde tekst" in lines


def test_no_markdown_escapes_in_the_text():
    text = html_to_text("<p>-------- Doorgestuurd bericht --------</p><p>1. Herstart het modem"
                        "</p><p>+ 31 procent</p><p>- streepje</p><p>C:\\pad\\naar</p>")
    assert "\\" not in text.replace("C:\\pad\\naar", "")
    assert "-------- Doorgestuurd bericht --------" in text
    assert "1. Herstart het modem" in text


# =============================================================================================
# 15: opt-in Authentication-Results check
# =============================================================================================

OUR_MX = "mx.cbgconnect.nl"


def checked() -> SenderRules:
    return SenderRules(kpn=("kpn.com",), forwarders=("support@cbgconnect.nl",),
                       require_dmarc_pass=True, authserv_id=(OUR_MX,))


def env(addr: str, *auth: str) -> Envelope:
    e = Envelope(from_addr=addr, from_name="", subject="s", date=None, message_id=None)
    return dataclasses.replace(e, auth_results=tuple(auth)) if auth else e


def direct(addr: str, *auth: str) -> ParsedMail:
    return ParsedMail(outer=env(addr, *auth), original=None, forward=None, text="")


def forwarded(forwarder: str, auth: tuple[str, ...], inner_auth: tuple[str, ...] = ()) -> ParsedMail:
    return ParsedMail(outer=env(forwarder, *auth), original=env("storingen@kpn.com", *inner_auth),
                      forward="attachment", text="")


PASS = f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com; dkim=pass header.d=kpn.com; dmarc=pass (p=reject dis=none) header.from=kpn.com"


def test_check_is_off_by_default():
    rules = SenderRules(kpn=("kpn.com",))
    assert rules.require_dmarc_pass is False
    assert authorise(direct("storingen@kpn.com"), rules).allowed


@pytest.mark.parametrize("header", [
    PASS,
    f"{OUR_MX};\r\n\tdmarc=pass header.from=kpn.com",
    f"{OUR_MX} 1; dmarc=PASS (policy=reject) header.from=\"kpn.com\"",
    f"{OUR_MX.upper()}; dkim=pass (2048-bit key) header.d=kpn.com header.s=sel; dmarc=none",
    f"{OUR_MX}; dkim=pass header.d=mail.kpn.com header.i=@mail.kpn.com",  # relaxed alignment
])
def test_pass_from_our_server_allows(header):
    assert senders.authentication_problem(env("storingen@kpn.com", header), checked()) is None
    assert authorise(direct("storingen@kpn.com", header), checked()).allowed


@pytest.mark.parametrize("headers, why", [
    ((), "no Authentication-Results"),
    ((PASS.replace(OUR_MX, "mx.attacker.example"),), "no Authentication-Results"),
    ((f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com; dkim=fail header.d=kpn.com; dmarc=fail "
      "header.from=kpn.com",), "dmarc=fail"),
    ((f"{OUR_MX}; dkim=pass header.d=attacker.example; dmarc=fail header.from=kpn.com",),
     "dmarc=fail"),
    ((f"{OUR_MX}; dmarc=pass header.from=attacker.example",), "dmarc=pass"),
    ((f"{OUR_MX}; dkim=pass header.d=evilkpn.com",), "dkim=pass"),
    ((f"{OUR_MX}; none",), "none"),
    ((f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com",), "spf=pass"),
    # dmarc=pass only inside a comment or a quoted value is no pass
    ((f"{OUR_MX}; dmarc=fail (dmarc=pass) reason=\"dmarc=pass\" header.from=kpn.com",),
     "dmarc=fail"),
    # the topmost header of our server counts; a forged "pass" further down does not
    ((f"{OUR_MX}; dmarc=fail header.from=kpn.com", PASS), "dmarc=fail"),
])
def test_missing_or_failed_authentication_is_rejected(headers, why):
    problem = senders.authentication_problem(env("storingen@kpn.com", *headers), checked())
    assert problem is not None and why in problem
    verdict = authorise(direct("storingen@kpn.com", *headers), checked())
    assert not verdict.allowed
    assert OUR_MX in verdict.reason and "storingen@kpn.com" in verdict.reason


def test_only_our_block_at_the_top_counts():
    # a header of another server on top: ours below it may be forged (list every receiving
    # server's authserv-id in authserv_id)
    verdict = authorise(direct("storingen@kpn.com", "imap.cbgconnect.nl; none", PASS), checked())
    assert not verdict.allowed and "topmost" in verdict.reason and "authserv_id" in verdict.reason
    # ours, then another server, then a "pass" naming ours: the block ends at the other one
    headers = (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com", "relay.example; none", PASS)
    assert not authorise(direct("storingen@kpn.com", *headers), checked()).allowed
    # listing the other server makes it part of the block
    rules = dataclasses.replace(checked(), authserv_id=(OUR_MX, "imap.cbgconnect.nl"))
    assert authorise(direct("storingen@kpn.com", "imap.cbgconnect.nl; none", PASS), rules).allowed


@pytest.mark.parametrize("headers", [
    # Postfix with separate milters: one header each, SPF on top
    (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com",
     f"{OUR_MX}; dkim=pass header.d=kpn.com header.s=sel",
     f"{OUR_MX}; dmarc=pass (p=reject dis=none) header.from=kpn.com"),
    (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
    (f"mx2.cbgconnect.nl; spf=pass smtp.mailfrom=kpn.com",
     f"{OUR_MX}; dmarc=pass header.from=kpn.com"),
])
def test_every_header_of_our_block_counts(headers):
    rules = dataclasses.replace(checked(), authserv_id=(OUR_MX, "mx2.cbgconnect.nl"))
    assert authorise(direct("storingen@kpn.com", *headers), rules).allowed


@pytest.mark.parametrize("headers, why", [
    # our dmarc=fail on top is not overruled by a forged pass below it, DKIM or DMARC
    ((f"{OUR_MX}; dmarc=fail header.from=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
     "dmarc=fail"),
    ((f"{OUR_MX}; dkim=fail header.d=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
     "dkim=fail"),
    # dmarc=pass counts only with header.from naming the From domain
    ((f"{OUR_MX}; dmarc=pass",), "dmarc=pass"),
    ((f"{OUR_MX}; dmarc=pass header.from=kpn.com.attacker.example",), "dmarc=pass"),
])
def test_our_block_is_read_per_method(headers, why):
    problem = senders.authentication_problem(env("storingen@kpn.com", *headers), checked())
    assert problem is not None and why in problem, problem


def test_dmarc_pass_without_header_from_needs_an_aligned_dkim_pass():
    header = f"{OUR_MX}; dkim=pass header.d=kpn.com; dmarc=pass"
    assert authorise(direct("storingen@kpn.com", header), checked()).allowed


def test_a_second_from_header_is_rejected():
    raw = raw_mail("Ticketnummer: INC000012345678\r\n", from_="storingen@kpn.com",
                   headers=f"Authentication-Results: {OUR_MX}; dmarc=pass header.from=kpn.com\r\n"
                           "From: a@attacker.example\r\n")
    parsed = parse_mail(raw)
    assert parsed.outer.from_count == 2
    for rules in (checked(), SenderRules(kpn=("kpn.com",))):
        verdict = authorise(parsed, rules)
        assert not verdict.allowed and "2 From headers" in verdict.reason
    assert parse_mail(raw_mail("x", from_="storingen@kpn.com")).outer.from_count == 1


def test_forward_is_checked_on_the_forwarder():
    ours = f"{OUR_MX}; dkim=pass header.d=cbgconnect.nl; dmarc=pass header.from=cbgconnect.nl"
    ok = authorise(forwarded("support@cbgconnect.nl", (ours,)), checked())
    assert ok.allowed and ok.forwarded_by == "support@cbgconnect.nl"
    # a forged forwarder: no pass for cbgconnect.nl, even with a KPN "pass" inside
    v = authorise(forwarded("support@cbgconnect.nl", (), inner_auth=(PASS,)), checked())
    assert not v.allowed and "support@cbgconnect.nl" in v.reason
    # the original inside is not checked: its headers are whatever the forwarder sent
    assert authorise(forwarded("support@cbgconnect.nl", (ours,), inner_auth=()), checked()).allowed


def test_parse_mail_keeps_authentication_results_of_real_headers():
    inner = ("Authentication-Results: mx.kpn-side.example; dmarc=pass header.from=kpn.com\r\n"
             "From: KPN <storingen@kpn.com>\r\nSubject: Storing\r\n\r\nTicketnummer: INC000012345678\r\n")
    body = ("--o\r\nContent-Type: text/plain\r\n\r\nZie bijlage.\r\n"
            "--o\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--o--\r\n")
    raw = raw_mail(body, ctype='multipart/mixed; boundary="o"', from_="support@cbgconnect.nl",
                   headers=(f"Authentication-Results: {OUR_MX};\r\n\tdmarc=pass header.from=cbgconnect.nl\r\n"
                            "Authentication-Results: other.example; none\r\n"))
    parsed = parse_mail(raw)
    assert parsed.outer.auth_results == (
        f"{OUR_MX}; dmarc=pass header.from=cbgconnect.nl", "other.example; none")
    assert parsed.original.auth_results == ("mx.kpn-side.example; dmarc=pass header.from=kpn.com",)
    # inline forwards have no real headers
    inline = parse_mail(raw_mail(thunderbird_plain("nl"), from_=SANNE))
    assert inline.original.auth_results == ()


def _config(senders: dict):
    return parse({"senders": {"kpn": ["kpn.com"], **senders}}, Path("/tmp/config.toml")).senders


def test_config_keys():
    s = _config({})
    assert (s.require_dmarc_pass, s.authserv_id) == (False, ())
    s = _config({"require_dmarc_pass": True, "authserv_id": "MX.cbgconnect.nl"})
    assert (s.require_dmarc_pass, s.authserv_id) == (True, ("mx.cbgconnect.nl",))
    s = _config({"require_dmarc_pass": True, "authserv_id": ["mx1.cbgconnect.nl", "mx2.cbgconnect.nl"]})
    assert s.authserv_id == ("mx1.cbgconnect.nl", "mx2.cbgconnect.nl")
    with pytest.raises(ConfigError, match="senders.authserv_id"):
        _config({"require_dmarc_pass": True})
    with pytest.raises(ConfigError, match="senders.authserv_id"):
        _config({"authserv_id": 5})
    with pytest.raises(ConfigError, match="senders.require_dmarc_pass"):
        _config({"require_dmarc_pass": "yes"})
