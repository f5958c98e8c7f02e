"""Decoding that does not lose or garble: transfer encodings, charsets, RFC 2047 encoded
words, winmail.dat (pure).

What mail software sends in the wild, read in full:

* ``Content-Transfer-Encoding`` values with stray blanks, quotes or case (``" Base64 "``);
  base64 sent in separately padded chunks (the standard library stops at the first ``=``
  padding and drops the rest), with missing padding or with line noise.
* A body whose declared charset does not fit its bytes (UTF-8 labelled ISO-8859-1 is the
  usual case; also an unknown label, or bytes that do not decode) is decoded by detection
  with charset-normalizer, among the charsets mail in this country uses. Detection runs
  only then, never on a body whose declared charset fits.
* Encoded words (RFC 2047) with the malformations seen in the wild: blanks inside
  (``=?ISO-8859-1?Q<TAB>?...?=``), missing base64 padding, a multibyte character split over
  two words, unknown charsets.
* winmail.dat (TNEF, Outlook's rich-text container) read with tnefparse.
* :data:`READING_POLICY`: the standard library's modern policy (``email.policy.default``),
  with each header value parsed once per mail instead of at every look-up.

Where decoding had to guess, a note in words an operator understands is added to the
``notes`` list the caller passes in; the mail's record keeps them.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from dataclasses import dataclass
from email.policy import EmailPolicy

import charset_normalizer
import tnefparse

__all__ = [
    "DEFAULT_CHARSETS",
    "Tnef",
    "b64decode_chunks",
    "decode_text",
    "decode_words",
    "has_encoded_word",
    "read_tnef",
    "transfer_decode",
    "transfer_encoding",
]

# Charsets detection chooses among (the ones mail in the Netherlands is written in), in the
# order charset-normalizer prefers on a tie.
class _ReadingPolicy(EmailPolicy):
    """``email.policy.default`` that parses a header value once: ``get_content_type()``,
    ``get_param()``, ``get_filename()`` and ``msg[name]`` each parse the header they read
    anew through the header registry (~0.1 ms a time), and reading one mail asks for its
    Content-Type header half a dozen times. The parsed header objects are immutable; the
    cache is keyed by (name, value) and bounded, and safe across threads."""

    def header_fetch_parse(self, name, value):  # type: ignore[no-untyped-def]
        if hasattr(value, "name"):
            return value
        return _parsed_header(self.header_factory, name, value)


@functools.lru_cache(maxsize=1024)
def _parsed_header(factory, name: str, value: str):  # type: ignore[no-untyped-def]
    # as EmailPolicy.header_fetch_parse: the value unfolded, then parsed
    return factory(name, "".join(_LINESEP.split(value)))


_LINESEP = re.compile(r"\n|\r")
READING_POLICY = _ReadingPolicy()
"""The policy the bridge parses mails with: ``email.policy.default``, header values
parsed once."""

DEFAULT_CHARSETS = ("utf-8", "windows-1252", "iso-8859-15", "utf-16")

# Mails labelled latin-1 are nearly always windows-1252 (quotes, euro sign in 0x80-0x9f);
# 8-bit bytes in "ascii" parts are usually utf-8.
_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
_DISPLAY = {"utf_8": "utf-8", "utf-8": "utf-8", "cp1252": "windows-1252",
            "latin_1": "iso-8859-1", "iso8859_15": "iso-8859-15", "utf_16": "utf-16"}
# Codecs in which any byte string decodes: whether the text is right cannot be told from a
# decoding error, only from valid UTF-8 where these would give mojibake.
_SINGLE_BYTE = re.compile(r"^(?:cp\d+|latin|iso8859|mac|windows|koi8|tis|hp|ptcp|kz)",
                          re.IGNORECASE)
_DETECT_MAX = 512 * 1024  # bytes detection looks at; beyond, the rest follows the guess


def _codec(label: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None when unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def _display(codec: str) -> str:
    return _DISPLAY.get(codec, codec.replace("_", "-"))


def _detect(data: bytes, candidates: tuple[str, ...]) -> str | None:
    """The charset charset-normalizer finds most coherent for ``data`` among ``candidates``,
    or None."""
    isolation = [c for c in (_codec(x) for x in candidates) if c]
    try:
        best = charset_normalizer.from_bytes(data[:_DETECT_MAX], cp_isolation=isolation).best()
    except Exception:  # the detector on odd input: fall back like an unknown charset
        return None
    return best.encoding if best is not None else None


def decode_text(data: bytes, charset: str | None, notes: list[str], what: str = "body",
                candidates: tuple[str, ...] = DEFAULT_CHARSETS) -> str:
    """Bytes -> text in the declared ``charset`` when it fits, else by detection.

    The declared charset does not fit when it is unknown, when the bytes do not decode in
    it, or when it is a single-byte charset (latin-1, windows-1252, ...) while the bytes are
    valid UTF-8 with non-ASCII characters (decoded as declared they would be mojibake). Then
    charset-normalizer chooses among ``candidates`` (and the declared one), and a note
    "<what> charset guessed as X (declared Y)" is appended to ``notes``. Bytes nothing
    decodes are read as windows-1252 with replacement characters, noted too. Never raises.
    """
    declared = (charset or "").strip().strip("\"'").lower() or None
    codec = _codec(declared)
    text = None
    if codec is not None:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            text = None
        if text is not None and (data.isascii() or not _SINGLE_BYTE.match(codec)):
            return text
        if text is not None:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return text  # 8-bit bytes that are no UTF-8: the declaration fits
    elif declared is None and data.isascii():
        return data.decode("ascii")
    guessed = _detect(data, candidates + ((declared,) if codec else ()))
    if declared is None:
        why = "none declared"
    elif codec is None:
        why = f"declared {declared}, unknown"
    else:
        why = f"declared {declared}"
    if guessed is not None:
        try:
            out = data.decode(guessed)
        except (UnicodeDecodeError, LookupError):
            out = None
        if out is not None:
            if declared is not None or not _is_utf8(guessed):
                notes.append(f"{what} charset guessed as {_display(guessed)} ({why})")
            return out
    notes.append(f"{what}: bytes that fit no charset replaced ({why})")
    return data.decode("cp1252", errors="replace")


def _is_utf8(codec: str) -> bool:
    return codec.replace("_", "-") == "utf-8"


# ---------------------------------------------------------------------------------------------
# Transfer encodings

_B64_NOISE = re.compile(rb"[^A-Za-z0-9+/=]+")
_B64_CHUNK = re.compile(rb"[A-Za-z0-9+/]+=*")
_CTE_ALIASES = {"base64": "base64", "base-64": "base64", "b64": "base64",
                "quoted-printable": "quoted-printable", "quotedprintable": "quoted-printable",
                "qp": "quoted-printable", "7bit": "7bit", "8bit": "8bit", "binary": "binary",
                "x-uuencode": "x-uuencode", "uuencode": "x-uuencode", "x-uue": "x-uuencode",
                "uue": "x-uuencode"}


def b64decode_chunks(data: bytes) -> bytes:
    """Base64 -> bytes, in full: characters outside the alphabet are skipped, and data after
    a ``=`` padding (separately padded chunks, as some mailers send) is decoded too; a chunk
    with missing padding is padded. Never raises."""
    clean = _B64_NOISE.sub(b"", data)
    head = clean.rstrip(b"=")
    if b"=" not in head and len(head) % 4 != 1:
        return binascii.a2b_base64(head + b"=" * (-len(head) % 4))
    out = []
    for m in _B64_CHUNK.finditer(clean):
        seg = m.group(0).rstrip(b"=")
        if len(seg) % 4 == 1:
            seg = seg[:-1]  # a lone trailing character holds no whole byte
        if seg:
            out.append(binascii.a2b_base64(seg + b"=" * (-len(seg) % 4)))
    return b"".join(out)


def transfer_encoding(value: str | None) -> str:
    """A Content-Transfer-Encoding header value, normalised: blanks, quotes, case and
    parameters removed ("' Base64 ;'" -> "base64"); unknown values give "8bit" (the bytes
    as they are, RFC 2045 6.4)."""
    if not value:
        return "7bit"
    v = re.sub(r"[\s\"']+", "", str(value)).lower().split(";", 1)[0]
    return _CTE_ALIASES.get(v, "8bit")


def transfer_decode(payload: str | bytes, cte: str | None) -> bytes:
    """A part's payload as the parser holds it (text with 8-bit bytes surrogate-escaped, or
    bytes) -> the decoded bytes, per :func:`transfer_encoding` of ``cte``. Never raises."""
    if isinstance(payload, str):
        try:
            data = payload.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            data = payload.encode("utf-8", "surrogateescape")
    else:
        data = bytes(payload)
    kind = transfer_encoding(cte)
    try:
        if kind == "base64":
            return b64decode_chunks(data)
        if kind == "quoted-printable":
            return binascii.a2b_qp(data)
        if kind == "x-uuencode":
            return _uudecode(data)
    except (binascii.Error, ValueError):
        pass
    return data


def _uudecode(data: bytes) -> bytes:
    out = []
    for line in data.splitlines():
        if line.startswith((b"begin ", b"end")) or not line.strip():
            continue
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            continue
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# RFC 2047 encoded words, tolerantly

# charset (an RFC 2231 language suffix allowed), encoding, text; blanks around the "?"s as
# some mailers fold or paste them. Bounded: linear on any header.
_WORD = re.compile(r"=\?([^?\s*]{1,40})(?:\*[^?\s]{0,20})?\s*\?\s*([QqBb])\s*\?(.{0,2000}?)\?=",
                   re.DOTALL)
_HAS_WORD = re.compile(r"=\?[^?\s]{1,40}\s*\?\s*[QqBb]\s*\?")


def has_encoded_word(text: str) -> bool:
    """Whether ``text`` still holds something like an RFC 2047 encoded word."""
    return bool(_HAS_WORD.search(text))


def decode_words(raw: str, notes: list[str], what: str = "header",
                 candidates: tuple[str, ...] = DEFAULT_CHARSETS) -> str:
    """Decode the RFC 2047 encoded words in a header value, tolerating what strict decoders
    refuse: blanks inside a word, missing base64 padding, lower-case encodings, a character
    split over adjacent words (their bytes are joined before decoding), unknown or wrong
    charsets (decoded by :func:`decode_text`, with a note). Blanks between adjacent encoded
    words are dropped (RFC 2047 6.2); other text is kept as it is. Never raises."""
    parts: list[tuple[str | None, bytes | str]] = []  # (charset, bytes) or (None, text)
    pos = 0
    for m in _WORD.finditer(raw):
        between = raw[pos:m.start()]
        if between and not (between.isspace() and parts and parts[-1][0] is not None):
            parts.append((None, between))
        charset, enc, text = m.group(1), m.group(2).upper(), m.group(3)
        if enc == "B":
            data = b64decode_chunks(text.encode("ascii", "ignore"))
        else:
            data = binascii.a2b_qp(re.sub(r"\s+", "_", text.strip()).encode("utf-8"),
                                   header=True)
        if parts and parts[-1][0] is not None and parts[-1][0].lower() == charset.lower():
            parts[-1] = (parts[-1][0], parts[-1][1] + data)  # type: ignore[operator]
        else:
            parts.append((charset, data))
        pos = m.end()
    if pos < len(raw):
        parts.append((None, raw[pos:]))
    out = []
    for charset, value in parts:
        if charset is None:
            out.append(value)  # type: ignore[arg-type]
        else:
            out.append(decode_text(value, charset, notes, what, candidates))  # type: ignore[arg-type]
    return "".join(out)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# winmail.dat (TNEF)


@dataclass(frozen=True)
class Tnef:
    """What a winmail.dat holds that the bridge can read: its plain or HTML body (as text),
    its attachments as (file name, bytes), and ``problem`` when there is no readable body."""

    text: str = ""
    html: str = ""
    attachments: tuple[tuple[str, bytes], ...] = ()
    problem: str | None = None


def _tnef_str(value, notes: list[str]) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return decode_text(value.rstrip(b"\x00"), None, notes, "winmail.dat")
    return str(value).rstrip("\x00")


def read_tnef(data: bytes, notes: list[str]) -> Tnef:
    """Read a winmail.dat (MS-TNEF) with tnefparse.

    ``problem`` says why nothing can be read: not TNEF data or damaged (tnefparse fails, or
    finds neither a body nor an attachment), or a body only in compressed RTF, which the
    bridge does not read. Never raises.
    """
    try:
        tnef = tnefparse.TNEF(data, do_checksum=False)
        text = _tnef_str(tnef.body, notes).strip()
        html = _tnef_str(tnef.htmlbody, notes).strip()
        attachments = tuple((str(a.long_filename() or a.name or ""), bytes(a.data or b""))
                            for a in tnef.attachments)
        rtf_only = tnef.has_body() and not text and not html
    except Exception as e:  # tnefparse raises ValueError, struct errors, IndexError, ...
        return Tnef(problem=f"winmail.dat (Outlook TNEF) could not be read; damaged or not"
                            f" TNEF data ({type(e).__name__})")
    if text or html:
        return Tnef(text, html, attachments)
    if rtf_only:
        return Tnef(attachments=attachments,
                    problem="winmail.dat (Outlook TNEF) holds the text only as rich text"
                            " (RTF), which the bridge does not read")
    if not attachments:
        return Tnef(problem="winmail.dat (Outlook TNEF) could not be read; it holds no text"
                            " (damaged or empty)")
    return Tnef(attachments=attachments)
