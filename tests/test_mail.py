"""Mail decoding: envelopes, charsets, body parts, HTML to text.

Forwards (inline, attached, nested, quoted) are in test_forwards.py."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.core.mail import MailError, clean_subject, html_to_text, parse_mail
from bridge.core.report import extract_report
from helpers import mail

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
