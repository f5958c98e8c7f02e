"""Decoding that does not lose or garble (core.mime): tolerant RFC 2047 encoded words,
base64 in separately padded chunks, sloppy Content-Transfer-Encoding values, and a body whose
declared charset does not fit its bytes decoded by detection (charset-normalizer), only when
needed, with a note in the mail's record.

Golden cases: tests/golden/decoding/<case>.eml -> <case>.json (mail_golden.py).
"""

from __future__ import annotations

import base64

import pytest

from bridge.config import ConfigError, parse
from bridge.core import mime
from bridge.core.mail import parse_mail
from bridge.core.models import RawMail
from mail_golden import cases, check, dated_now, golden_mail


@pytest.mark.parametrize("case", cases("decoding"))
def test_golden(case):
    check("decoding", case)


def test_f07_place_is_decoded_never_a_raw_encoded_word():
    got = check("decoding", "f07-encoded-word-tab")
    assert got["outcome"] == "queued"
    assert "Earnewâld" in got["report"]["subject"] and got["report"]["places"] == ["Earnewâld"]
    assert "=?" not in got["report"]["subject"]


def test_f10_every_fact_of_the_chunked_base64_body():
    report = check("decoding", "f10-base64-blokken")["report"]
    assert report["places"] == ["Harderwijk", "Hierden", "Ermelo"]
    assert report["start"] == "2026-11-28T06:10:00+00:00"  # 07:10
    assert report["end"] == "2026-11-28T11:00:00+00:00"  # 12:00
    assert report["services"] == ["internet", "voip"]


def test_utf8_labelled_latin1_is_read_as_utf8_and_says_so():
    got = check("decoding", "d01-utf8-als-latin1-gelabeld")
    assert got["report"]["places"] == ["Earnewâld", "Wâlterswâld"]
    assert got["notes"] == ["body charset guessed as utf-8 (declared iso-8859-1)"]


# --- transfer encodings ---------------------------------------------------------------------------


def test_base64_chunks_each_padded_are_all_decoded():
    parts = [b"eerste stuk, ", b"tweede stuk ", b"en het einde"]
    data = b"\n".join(base64.b64encode(p) for p in parts)
    assert mime.b64decode_chunks(data) == b"".join(parts)


@pytest.mark.parametrize("data, want", [
    (b"aGFsbG8=", b"hallo"),
    (b"aGFsbG8", b"hallo"),  # padding missing
    (b"aGFs\r\nbG8=\r\n", b"hallo"),
    (b"aGFs bG8=!!", b"hallo"),  # noise
    (b"aGFsbG8=\naGFsbG8=", b"hallohallo"),
    (b"", b""),
])
def test_base64_tolerant(data, want):
    assert mime.b64decode_chunks(data) == want


@pytest.mark.parametrize("value, want", [
    ("base64", "base64"), (" Base64 ", "base64"), ('"BASE64"', "base64"), ("base 64", "base64"),
    ("base64; x=y", "base64"), ("Quoted-Printable", "quoted-printable"),
    ("quoted-printable\t", "quoted-printable"), ("8bit", "8bit"), ("x-weird", "8bit"),
    (None, "7bit"),
])
def test_transfer_encoding_values_normalised(value, want):
    assert mime.transfer_encoding(value) == want


# --- charsets: detection only when needed -----------------------------------------------------------


@pytest.fixture
def detections(monkeypatch):
    calls = []
    real = mime.charset_normalizer.from_bytes

    def counting(*a, **kw):
        calls.append(a[0][:40])
        return real(*a, **kw)

    monkeypatch.setattr(mime.charset_normalizer, "from_bytes", counting)
    return calls


@pytest.mark.parametrize("data, charset", [
    ("Café ’t Hoekje, Beëindiging".encode("cp1252"), "windows-1252"),
    ("Café ’t Hoekje, Beëindiging".encode("cp1252"), "iso-8859-1"),
    ("Café, Beëindiging".encode("utf-8"), "utf-8"),
    (b"plain ascii text", None),
    (b"plain ascii text", "iso-8859-1"),
])
def test_a_fitting_declaration_needs_no_detection(detections, data, charset):
    notes: list[str] = []
    text = mime.decode_text(data, charset, notes)
    assert detections == [] and notes == []
    assert text == data.decode("cp1252" if charset in ("windows-1252", "iso-8859-1") else "utf-8")


@pytest.mark.parametrize("data, charset, note", [
    ("Gebied: Earnewâld".encode("utf-8"), "iso-8859-1",
     "body charset guessed as utf-8 (declared iso-8859-1)"),
    ("Gebied: Earnewâld, café ’t Hoekje".encode("cp1252"), "utf-8",
     "body charset guessed as windows-1252 (declared utf-8)"),
    ("Gebied: Earnewâld".encode("utf-8"), "x-nonsense",
     "body charset guessed as utf-8 (declared x-nonsense, unknown)"),
    ("Gebied: Earnewâld, café ’t Hoekje".encode("cp1252"), None,
     "body charset guessed as windows-1252 (none declared)"),
])
def test_a_declaration_that_does_not_fit_is_detected_and_noted(detections, data, charset, note):
    notes: list[str] = []
    text = mime.decode_text(data, charset, notes)
    assert "Earnewâld" in text and "Ã" not in text
    assert notes == [note] and len(detections) == 1


def test_plain_utf8_without_a_declaration_is_not_noted(detections):
    notes: list[str] = []
    assert mime.decode_text("Earnewâld".encode(), None, notes) == "Earnewâld"
    assert notes == []


def test_the_golden_report_mails_need_no_detection(detections):
    """The common mails (tests/golden/mail, all declared correctly) never run the detector."""
    from mail_golden import GOLDEN

    for path in sorted((GOLDEN / "mail").glob("*.eml")):
        if path.stem in ("10-unknown-charset",):
            continue  # declared x-mac-unknown: detection is right there
        parse_mail(path.read_bytes())
    assert detections == []


# --- encoded words ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, want", [
    ("=?ISO-8859-1?Q\t?Earnew=E2ld?=", "Earnewâld"),  # f07: a TAB inside
    ("=?utf-8?q?Earnew=C3=A2ld?=", "Earnewâld"),  # lower case q
    ("=?utf-8?B?RWFybmV3w6JsZA?=", "Earnewâld"),  # padding missing
    ("=?utf-8?B?RWFybmV3w6 JsZA==?=", "Earnewâld"),  # a blank inside
    ("=?UTF-8?Q?Sn=C3?= =?UTF-8?Q?=A9ek?=", "Snéek"),  # a character split over two words
    ("=?utf-8?Q?a?=  =?utf-8?Q?b?=", "ab"),  # blanks between words dropped (RFC 2047 6.2)
    ("x =?utf-8?Q?a?= y", "x a y"),  # other text kept
    ("=?utf-8*nl?Q?Ede?=", "Ede"),  # RFC 2231 language
    ("=?utf-8?Q?Ter_Apel?=", "Ter Apel"),
    ("no words here", "no words here"),
])
def test_encoded_words_decoded_tolerantly(raw, want):
    assert mime.decode_words(raw, []) == want


def test_an_unknown_encoded_word_charset_is_guessed_and_noted():
    notes: list[str] = []
    assert mime.decode_words("=?x-unknown?Q?Leeuw=E2rden?=", notes, "subject") == "Leeuwârden"
    assert notes == ["subject charset guessed as windows-1252 (declared x-unknown, unknown)"]


def test_a_well_formed_header_takes_the_standard_path():
    raw = (b"From: =?utf-8?Q?J=C3=A9r=C3=B4me?= <a@kpn.example>\nSubject: =?utf-8?Q?Caf=C3=A9?=\n"
           b"Content-Type: text/plain\n\nStatus: Nieuw\n")
    parsed = parse_mail(raw)
    assert parsed.outer.from_name == "Jérôme" and parsed.outer.subject == "Café"
    assert parsed.notes == ()


# --- the note reaches the mail's record ----------------------------------------------------------------


def test_the_decoding_note_is_stored_with_the_outcome_reason(app):
    app.store.subscribers.add("+31611111111", "console", "cli:test")
    mail_id = app.store.mails.add(RawMail(dated_now(golden_mail("decoding",
                                                                "d01-utf8-als-latin1-gelabeld")),
                                          "cli"))
    out = app.pipeline.process(mail_id)
    assert out.outcome == "queued"
    assert out.reason.endswith("; decoding: body charset guessed as utf-8 (declared iso-8859-1)")
    assert app.store.mails.outcome(mail_id)["reason"] == out.reason
    text = app.store.db.scalar("SELECT text FROM notices WHERE id=?", (out.notice_id,))
    assert "Earnewâld" in text and "Ã" not in text


def test_charsets_come_from_config(tmp_path):
    cfg = parse({"mail": {"charsets": ["utf-8", "iso-8859-2"]}}, tmp_path / "config.toml")
    assert cfg.mail.charsets == ("utf-8", "iso-8859-2")
    with pytest.raises(ConfigError, match=r"mail\.charsets: unknown charset 'klingon'"):
        parse({"mail": {"charsets": ["klingon"]}}, tmp_path / "config.toml")
    with pytest.raises(ConfigError, match=r"mail\.charset: unknown key"):
        parse({"mail": {"charset": ["utf-8"]}}, tmp_path / "config.toml")


@pytest.mark.parametrize("raw", [
    "=?utf-8?Q?" * 300, "=?a?b?" * 400, "=?utf-8?B?" + "A" * 1990 + "?= x " * 5,
    " =?x?q?" + "=" * 1990,
])
def test_encoded_word_decoding_is_linear_on_hostile_headers(raw):
    """ReDoS guard with a generous bound (a safety test, not a benchmark)."""
    import time

    t0 = time.perf_counter()
    mime.decode_words(raw, [])
    parse_mail(f"From: {raw} <a@kpn.example>\nSubject: {raw}\n\nx".encode())
    assert time.perf_counter() - t0 < 2.0


# -- the reading policy ------------------------------------------------------------------------------
def test_reading_policy_reads_headers_as_the_default_policy_and_parses_each_once():
    import email
    import email.policy

    raw = (b"From: =?utf-8?q?KPN_St=C3=B6ring?= <storing@kpn.example>\r\n"
           b"To: a@example.nl, \"B, C\" <b@example.nl>\r\n"
           b"Subject: Storing\r\n =?iso-8859-1?q?Z=FCrich?=\r\n"
           b"Content-Type: multipart/mixed;\r\n boundary=\"b1\"; charset=\"utf-8\"\r\n\r\n"
           b"--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nhoi\r\n"
           b"--b1\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename*=utf-8''melding%20%C3%A9.eml\r\n\r\nx\r\n"
           b"--b1--\r\n")
    ours = email.message_from_bytes(raw, policy=mime.READING_POLICY)
    std = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("From", "To", "Subject", "Content-Type"):
        assert str(ours[name]) == str(std[name])
        # (the registry makes a class per parse: compare the header kind it derives from)
        assert type(ours[name]).__mro__[1] is type(std[name]).__mro__[1]
    assert ours["To"].addresses == std["To"].addresses
    assert ours.get_content_type() == std.get_content_type() == "multipart/mixed"
    assert ours.get_param("boundary") == "b1"
    for a, b in zip(ours.walk(), std.walk()):
        assert a.get_content_type() == b.get_content_type()
        assert a.get_content_charset() == b.get_content_charset()
        assert a.get_filename() == b.get_filename()
    # parsed once: the same header object at every look-up
    assert ours["Content-Type"] is ours["Content-Type"]
    assert std["Content-Type"] is not std["Content-Type"]
