"""Mail decoding: envelopes, charsets, body parts, HTML to text.

Forwards (inline, attached, nested, quoted) are in test_forwards.py."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.core.mail import MailError, clean_subject, html_to_text, parse_mail
from bridge.core.report import extract_report, read_labels
from helpers import alternative, mail, raw_mail

UTC = timezone.utc


# --- unusable input --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n  ", None, "text, not bytes"])
def test_unusable_input_raises_mail_error(raw):
    with pytest.raises(MailError):
        parse_mail(raw)  # type: ignore[arg-type]


def test_mail_error_is_value_error():
    assert issubclass(MailError, ValueError)


@pytest.mark.parametrize("raw", [
    b"this is not a mail at all",
    b"\xff\xfe\x00garbage\x00\r\n\r\n\x80\x81",
    b"Subject: =?utf-8?B?broken?=\r\nDate: yesterday\r\nFrom: <<<>>>\r\n\r\nhi",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nno end",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64###",
    b"Content-Type: message/rfc822\r\n\r\n",
])
def test_odd_input_parses_without_crashing(raw):
    parsed = parse_mail(raw)
    extract_report(parsed)


# --- envelope --------------------------------------------------------------------------------


def test_envelope_fields():
    raw = mail("x", subject="Storingsmelding\r\n   KPN:\tInternet  -  Amersfoort",
               from_='"KPN Wholesale" <Storingen@KPN.Example>')
    env = parse_mail(raw).outer
    assert env.from_addr == "storingen@kpn.example"
    assert env.from_name == "KPN Wholesale"
    assert env.subject == "Storingsmelding KPN: Internet - Amersfoort"
    assert env.date == datetime(2026, 11, 28, 8, 45, tzinfo=UTC)
    assert env.message_id == "m1@example.nl"


def test_envelope_naive_and_bad_dates_and_missing_headers():
    assert parse_mail(mail("x", date="Wed, 15 Jul 2026 10:00:00")).outer.date == datetime(
        2026, 7, 15, 8, 0, tzinfo=UTC)
    assert parse_mail(mail("x", date="Wed, 15 Jul 2026 10:00:00 -0000")).outer.date == datetime(
        2026, 7, 15, 8, 0, tzinfo=UTC)  # "-0000" means "zone unknown": local time
    assert parse_mail(mail("x", date="gisteren rond koffietijd")).outer.date is None
    env = parse_mail(b"\r\nbody only").outer
    assert (env.from_addr, env.from_name, env.subject, env.date, env.message_id) == (
        "", "", "", None, None)


def test_encoded_word_subject_and_name():
    raw = mail("x", subject="=?utf-8?Q?Storing_Zo=C3=ABtermeer?=",
               from_="=?iso-8859-1?Q?Ren=E9?= <rene@example.nl>")
    env = parse_mail(raw).outer
    assert env.subject == "Storing Zoëtermeer"
    assert env.from_name == "René"


# --- body and charsets -----------------------------------------------------------------------


def test_newlines_and_nbsp_normalised():
    parsed = parse_mail(mail("Status:\u00a0Nieuw\r\nGebied:\u00a0Ede\rEinde\n"))
    assert parsed.text == "Status: Nieuw\nGebied: Ede\nEinde"


@pytest.mark.parametrize("charset", ["windows-1252", "iso-8859-1", "latin1", "cp1252"])
def test_latin_charsets(charset):
    raw = mail("Omschrijving: Beëindiging bij het café – excuses\n".encode("cp1252"),
               ctype=f'text/plain; charset="{charset}"',
               headers="Content-Transfer-Encoding: 8bit\r\n")
    assert parse_mail(raw).text == "Omschrijving: Beëindiging bij het café – excuses"


def test_wrong_and_unknown_charset_declarations_fall_back():
    latin = "Gebied: Zoëtermeer\n".encode("latin-1")
    for ctype in ('text/plain; charset="utf-8"', 'text/plain; charset="x-nonsense"',
                  "text/plain"):
        text = parse_mail(mail(latin, ctype=ctype)).text
        assert text == "Gebied: Zoëtermeer", ctype
    # utf-8 bytes declared as us-ascii
    assert parse_mail(mail("Gebied: Zoëtermeer", ctype="text/plain; charset=us-ascii")).text == (
        "Gebied: Zoëtermeer")


def test_plain_text_preferred_over_html():
    body = ("--b\r\nContent-Type: text/html\r\n\r\n<p>HTML versie</p>\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nPlatte versie\r\n--b--\r\n")
    assert parse_mail(mail(body, ctype='multipart/alternative; boundary="b"')).text == (
        "Platte versie")


def test_html_only_tables_become_label_rows():
    html = ("<p>Beste partner,</p><table><tr><td><b>Ticketnummer</b></td><td>INC000012345678"
            "</td></tr><tr><td>Gebied</td><td>Zo&euml;termeer&nbsp;Noord</td></tr></table>"
            '<p><a href="https://x.example">link</a><img src="cid:1" alt="logo"> <em>klaar</em></p>')
    text = parse_mail(mail(html, ctype="text/html; charset=utf-8")).text
    assert "Ticketnummer| INC000012345678" in text
    assert "Gebied| Zoëtermeer Noord" in text
    assert "https://" not in text and "*" not in text and "_klaar_" not in text
    assert "\u00a0" not in text


def test_html_to_text_never_crashes_on_broken_markup():
    assert "tekst" in html_to_text("<table><tr><td>tekst<td><<</table></tr>&#xZZ;")


def test_attachments_are_not_body():
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nDe tekst\r\n"
            "--b\r\nContent-Type: text/plain; name=log.txt\r\nContent-Disposition: attachment;"
            " filename=log.txt\r\n\r\nStatus: Opgelost\r\n--b--\r\n")
    assert parse_mail(mail(body, ctype='multipart/mixed; boundary="b"')).text == "De tekst"


# --- text/plain or text/html: a stub plain part loses to the HTML with the labels -------------

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


# --- HTML to text: one label per line, the paragraphs of a value cell one value ---------------


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


# --- subject prefixes and raw 8-bit headers --------------------------------------------------


@pytest.mark.parametrize("subject, clean", [
    ("FW: Storing", "Storing"), ("Fwd: RE: Storing", "Storing"), ("Doorst: Storing", "Storing"),
    ("TR: WG: AW: Storing", "Storing"), ("RE[2]: Storing", "Storing"), ("Storing: FW", "Storing: FW"),
    ("Forward planning", "Forward planning"),
])
def test_clean_subject(subject, clean):
    assert clean_subject(subject) == clean


def test_raw_8bit_headers_are_decoded():
    raw = (b"From: Ren\xe9 <r@x.nl>\r\nSubject: Storing Zo\xc3\xabtermeer\r\n"
           b"Date: Sat, 28 Nov 2026 09:45:00 +0100\r\n\r\nx")
    env = parse_mail(raw).outer
    assert (env.from_name, env.subject) == ("René", "Storing Zoëtermeer")
