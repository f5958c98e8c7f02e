"""Forward unwrapping: a mail support staff forwarded by hand (inline from Outlook, Gmail,
Apple Mail or Thunderbird, Dutch or English; quoted; as an attached message/rfc822, nested)
gives the original's envelope and text, with the forwarder's comment kept apart."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.core.mail import clean_subject, parse_mail
from bridge.core.report import extract_report
from bridge.core.senders import SenderRules, authorise
from helpers import KPN_BODY, MAILS, OUR_MX, alternative, mail, raw_mail, utc

GOLDEN = MAILS
UTC = timezone.utc


# --- the golden forwards ---------------------------------------------------------------------

FORWARDS = {
    # case: (forward shape, a phrase that is only in the forwarder's comment)
    "06-doorgestuurd-outlook": ("inline", "Graag doorzetten"),
    "11-gmail-forward-en": ("inline", "FYI"),
    "12-outlook-forward-en": ("inline", "INC000099999999"),
    "13-rfc822-attachment": ("attachment", "CT99999999999"),
    "14-apple-forward": ("inline", "iPad"),
    "22-nested-forward": ("inline", "INC000000000001"),
    "23-outlook-html-forward": ("inline", "spoed"),
}


@pytest.mark.parametrize("case", sorted(FORWARDS))
def test_forward_comment_never_in_text(case):
    shape, phrase = FORWARDS[case]
    parsed = parse_mail((GOLDEN / f"{case}.eml").read_bytes())
    assert parsed.forward == shape
    assert parsed.original is not None
    assert phrase not in parsed.text
    if case != "22-nested-forward":  # there the phrase is in the middle forwarder's comment
        assert phrase in parsed.forward_comment
    assert parsed.original.from_addr == "storingsmeldingen@wholesale.kpn.example"
    assert parsed.original.subject == clean_subject(parsed.original.subject)
    assert parsed.outer.subject != parsed.original.subject  # outer keeps its "FW:" prefix
    for word in ("Van:", "From:", "Onderwerp:", "Subject:", "Forwarded", "Original Message"):
        assert word not in parsed.text
    assert parsed.text.startswith(("Beste partner", "Ticketnummer"))


def test_nested_forward_keeps_outermost_comment_and_drops_the_middle_one():
    parsed = parse_mail((GOLDEN / "22-nested-forward.eml").read_bytes())
    assert parsed.forward_comment.startswith("Zie hieronder")
    assert "INC000000000001" not in parsed.forward_comment + parsed.text
    assert parsed.original.date == datetime(2026, 11, 28, 11, 5, tzinfo=UTC)


def test_not_forwarded_mail():
    parsed = parse_mail((GOLDEN / "01-storing-nieuw.eml").read_bytes())
    assert parsed.forward is None and parsed.original is None and parsed.forward_comment == ""
    assert parsed.effective is parsed.outer


# --- inline forwards ------------------------------------------------------------------------


def _inline(block: str, comment: str = "Graag versturen.\r\n\r\nGroet, Sanne\r\n\r\n") -> bytes:
    return mail(comment + block + KPN_BODY, subject="FW: Storing")


@pytest.mark.parametrize(
    "block, date",
    [
        ("________________________________\r\nVan: KPN <kpn@example.nl>\r\n"
         "Verzonden: zaterdag 28 november 2026 09:45\r\nAan: noc@example.nl\r\n"
         "CC: iemand@example.nl\r\nOnderwerp: Storing\r\n\r\n", "2026-11-28T08:45"),
        ("-----Oorspronkelijk bericht-----\r\nVan: KPN [mailto:kpn@example.nl]\r\n"
         "Verzonden: vrijdag 27 november 2026 23:15\r\nAan: noc@example.nl\r\n"
         "Onderwerp: Storing\r\n\r\n", "2026-11-27T22:15"),
        ("-----Original Message-----\r\nFrom: KPN <kpn@example.nl>\r\n"
         "Sent: Saturday, November 28, 2026 9:45 AM\r\nTo: noc@example.nl\r\n"
         "Subject: Storing\r\n\r\n", "2026-11-28T08:45"),
        ("---------- Doorgestuurd bericht ---------\r\nVan: KPN <kpn@example.nl>\r\n"
         "Date: za 28 nov. 2026 om 09:45\r\nSubject: Storing\r\nTo: <noc@example.nl>\r\n\r\n\r\n",
         "2026-11-28T08:45"),
        ("---------- Forwarded message ---------\r\nFrom: KPN <kpn@example.nl>\r\n"
         "Date: Sat, Nov 28, 2026 at 9:45 AM\r\nSubject: Storing\r\nTo: noc@example.nl\r\n\r\n",
         "2026-11-28T08:45"),
        ("Begin forwarded message:\r\n\r\nFrom: KPN <kpn@example.nl>\r\nSubject: Storing\r\n"
         "Date: 28 November 2026 at 09:45:00 CET\r\nTo: noc@example.nl\r\n\r\n",
         "2026-11-28T08:45"),
        # Outlook without a separator line: a header block on its own
        ("Van: KPN <kpn@example.nl>\r\nVerzonden: zaterdag 28 november 2026 09:45\r\n"
         "Aan: noc@example.nl\r\nOnderwerp: Storing\r\n\r\n", "2026-11-28T08:45"),
        # RFC 2822 date and a bare address
        ("-----Original Message-----\r\nFrom: kpn@example.nl\r\n"
         "Sent: Sat, 28 Nov 2026 09:45:00 +0100\r\nSubject: Storing\r\n\r\n", "2026-11-28T08:45"),
        # summer time
        ("-----Original Message-----\r\nFrom: KPN <kpn@example.nl>\r\n"
         "Sent: Wednesday, July 15, 2026 9:45 AM\r\nSubject: Storing\r\n\r\n", "2026-07-15T07:45"),
    ],
)
def test_inline_forward_shapes(block, date):
    parsed = parse_mail(_inline(block))
    assert parsed.forward == "inline"
    assert parsed.original.from_addr == "kpn@example.nl"
    assert parsed.original.subject == "Storing"
    assert parsed.original.date.isoformat().startswith(date)
    assert parsed.original.message_id is None
    assert parsed.forward_comment == "Graag versturen.\n\nGroet, Sanne"
    assert parsed.text == KPN_BODY.replace("\r\n", "\n").strip()
    report = extract_report(parsed)
    assert (report.ticket, report.status, report.description) == (
        "INC000012345678", "nieuw", "Kabelbreuk.")


def test_inline_subject_wrapped_on_two_lines_and_unparsable_date():
    block = ("-----Original Message-----\r\nFrom: KPN <kpn@example.nl>\r\nSent: ergens gisteren\r\n"
             "To: noc@example.nl\r\nSubject: Storingsmelding KPN: Internet - Amersfoort\r\n"
             "    (INC000012345678) - Nieuw\r\n\r\n")
    parsed = parse_mail(_inline(block))
    assert parsed.original.subject == (
        "Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Nieuw")
    assert parsed.original.date is None
    assert parsed.text.startswith("Beste partner,")


def test_inline_from_name_only():
    block = ("________________________________\r\nVan: KPN Storingsdienst\r\n"
             "Verzonden: zaterdag 28 november 2026 09:45\r\nOnderwerp: Storing\r\n\r\n")
    parsed = parse_mail(_inline(block))
    assert (parsed.original.from_addr, parsed.original.from_name) == ("", "KPN Storingsdienst")


def test_quoted_forward_is_unquoted():
    quoted = "\r\n".join(("> " + line) if line else ">" for line in (
        "Van: KPN <kpn@example.nl>\r\nOnderwerp: Storing\r\nDatum: 28-11-2026 09:45\r\n\r\n"
        + KPN_BODY).split("\r\n"))
    parsed = parse_mail(mail("Zie onder.\r\n\r\nBegin doorgestuurd bericht:\r\n\r\n" + quoted))
    assert parsed.forward == "inline"
    assert parsed.text == KPN_BODY.replace("\r\n", "\n").strip()
    assert parsed.forward_comment == "Zie onder."


def test_underscore_signature_line_is_not_a_forward():
    body = "Status: Nieuw\r\n\r\n______________________________\r\nKPN Wholesale, Den Haag\r\n"
    parsed = parse_mail(mail(body))
    assert parsed.forward is None and parsed.original is None
    assert "Status: Nieuw" in parsed.text


def test_forward_with_empty_original_body_is_not_unwrapped():
    body = "Kijk hier eens naar.\r\n\r\n-----Original Message-----\r\nFrom: a@b.nl\r\nSubject: x\r\n"
    parsed = parse_mail(mail(body))
    assert parsed.forward is None
    assert "Kijk hier eens naar." in parsed.text


# --- attached forwards (message/rfc822) --------------------------------------------------------


def _attached(inner: str, comment: str = "Zie bijlage.") -> bytes:
    body = (f"--o\r\nContent-Type: text/plain\r\n\r\n{comment}\r\n"
            "--o\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--o--\r\n")
    return mail(body, subject="Doorst: Storing", ctype='multipart/mixed; boundary="o"')


def test_rfc822_attachment():
    inner = ("From: KPN <KPN@Example.nl>\r\nSubject: TR: Storing KPN\r\n"
             "Date: Sat, 28 Nov 2026 09:45:00 +0100\r\nMessage-ID: <orig-1@kpn>\r\n\r\n" + KPN_BODY)
    parsed = parse_mail(_attached(inner))
    assert parsed.forward == "attachment"
    assert parsed.original.from_addr == "kpn@example.nl"
    assert parsed.original.subject == "Storing KPN"  # prefixes removed from the original
    assert parsed.original.message_id == "orig-1@kpn"
    assert parsed.outer.subject == "Doorst: Storing"
    assert parsed.forward_comment == "Zie bijlage."
    assert "Zie bijlage" not in parsed.text
    assert extract_report(parsed).ticket == "INC000012345678"


def test_rfc822_attachment_nested_and_with_inline_forward_inside():
    innermost = ("From: KPN <kpn@example.nl>\r\nSubject: Storing KPN\r\n"
                 "Date: Sat, 28 Nov 2026 09:45:00 +0100\r\n\r\n" + KPN_BODY)
    middle = ("From: Jan <jan@example.nl>\r\nSubject: Fwd: Storing KPN\r\n"
              'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
              "--m\r\nContent-Type: text/plain\r\n\r\nZie bijlage, Jan. Ticket: INC000000000002\r\n"
              "--m\r\nContent-Type: message/rfc822\r\n\r\n" + innermost + "\r\n--m--\r\n")
    parsed = parse_mail(_attached(middle))
    assert parsed.original.from_addr == "kpn@example.nl"
    assert "INC000000000002" not in parsed.text
    assert extract_report(parsed).ticket == "INC000012345678"
    # an attached mail that itself holds an inline forward
    inline_inside = ("From: Jan <jan@example.nl>\r\nSubject: FW: Storing\r\n\r\nZie onder, Jan.\r\n\r\n"
                     "-----Original Message-----\r\nFrom: KPN <kpn@example.nl>\r\n"
                     "Sent: Saturday, November 28, 2026 9:45 AM\r\nSubject: Storing KPN\r\n\r\n"
                     + KPN_BODY)
    parsed = parse_mail(_attached(inline_inside))
    assert parsed.forward == "attachment"
    assert parsed.original.from_addr == "kpn@example.nl"
    assert parsed.original.date == datetime(2026, 11, 28, 8, 45, tzinfo=UTC)
    assert "Zie onder" not in parsed.text


def test_empty_rfc822_attachment_is_ignored():
    parsed = parse_mail(_attached("From: x@y.nl\r\nSubject: leeg\r\n\r\n", comment="Alleen tekst."))
    assert parsed.forward is None
    assert parsed.text == "Alleen tekst."


# --- Thunderbird forwards (an HTML header table; plain header lines with a tab), Dutch and English

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


# --- Authentication-Results: kept from real headers only --------------------------------------


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
