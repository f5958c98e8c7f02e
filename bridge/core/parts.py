"""One message's own MIME tree, sorted into what the mail reader needs (pure): its text
parts, calendar parts, winmail.dat parts, attached mails (``message/rfc822``, ``*.eml``, an
``application/octet-stream`` attachment that holds a mail; never the mail inside a
``multipart/report``), what is sealed (S/MIME, OpenPGP) and what else is attached; and each
leaf part's bytes, transfer-decoded in full (core.mime).
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.message import Message

from bridge.core import mime

__all__ = ["Parts", "bytes_message", "decode_8bit", "looks_like_mail", "part_bytes", "part_charset",
           "raw_header", "sort_parts"]


def decode_8bit(data: bytes) -> str:
    """8-bit header bytes (no charset to go by): utf-8, else windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def part_bytes(part: Message) -> bytes:
    """A leaf part's body, transfer-decoded in full (core.mime.transfer_decode): base64 and
    quoted-printable by core.mime (also with a sloppy Content-Transfer-Encoding value), the
    8-bit bytes of other parts as they came."""
    cte = mime.transfer_encoding(raw_header(part, "Content-Transfer-Encoding"))
    try:
        if cte in ("base64", "quoted-printable", "x-uuencode"):
            payload = part.get_payload()
        else:
            payload = part.get_payload(decode=True)
    except Exception:
        return b""
    if not isinstance(payload, (str, bytes)):
        return b""
    return mime.transfer_decode(payload, cte) if isinstance(payload, str) else payload


def part_charset(part: Message) -> str | None:
    """The part's declared charset (lower case), or None when absent or unparsable."""
    try:
        return part.get_content_charset()
    except Exception:
        return None


def raw_header(msg: Message, name: str) -> str | None:
    """The header as it was in the source, 8-bit bytes decoded (utf-8, else windows-1252)."""
    for key, raw in getattr(msg, "_headers", []):
        if key.lower() == name.lower():
            raw = str(raw)
            try:
                data = raw.encode("utf-8", errors="surrogateescape")
            except UnicodeEncodeError:
                return raw
            return decode_8bit(data)
    return None


def _filename(part: Message) -> str:
    try:
        return (part.get_filename() or "").strip()
    except Exception:
        return ""


def _is_attachment(part: Message) -> bool:
    try:
        disp = (part.get_content_disposition() or "").lower()
    except Exception:
        disp = ""
    return disp == "attachment" or (disp != "inline" and bool(_filename(part))
                                    and part.get_content_type() not in ("text/plain",
                                                                        "text/html"))


# A header block at the start of bytes: "Name: value" lines (and folded continuations) up
# to a blank line. Bounded: looks at the first 16 kB only.
_HEADER_FIELD = re.compile(rb"^[!-9;-~]{1,76}:")


def looks_like_mail(data: bytes) -> bool:
    """Whether bytes are an RFC 5322 message: a header block with a From field first."""
    head = data[:16384].lstrip(b"\r\n")
    block = re.split(rb"\r?\n\r?\n", head, maxsplit=1)[0]
    lines = block.splitlines()
    if not lines or not _HEADER_FIELD.match(lines[0]):
        return False
    if not all(_HEADER_FIELD.match(x) or x[:1] in (b" ", b"\t") for x in lines):
        return False
    return any(x[:5].lower() == b"from:" for x in lines)


_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar")
_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")


@dataclass
class Parts:
    """The leaf parts of one message's own MIME tree (attached messages not entered)."""

    plain: list[Message] = field(default_factory=list)
    html: list[Message] = field(default_factory=list)
    calendars: list[Message] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # attached mails, in order
    tnef: list[Message] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # "image melding.png", ...
    encrypted: str | None = None  # why the content is sealed, when it is
    report_type: str | None = None


def _inner_message(part: Message) -> Message | None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    return inner if isinstance(inner, Message) else None


def sort_parts(msg: Message) -> Parts:
    """Sort ``msg``'s parts. A ``message/rfc822`` part, an attachment named ``*.eml`` and an
    ``application/octet-stream`` attachment that holds a mail are attached mails, except in
    a ``multipart/report``: the mail a bounce or receipt carries is no report (RFC 6522)."""
    found = Parts()

    def walk(part: Message, in_report: bool, depth: int) -> None:
        ctype = part.get_content_type()
        name = _filename(part)
        if ctype == "message/rfc822":
            inner = _inner_message(part)
            if inner is not None and not in_report:
                found.messages.append(inner)
            return
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            found.report_type = found.report_type or "delivery-status"
            return
        if ctype in ("message/disposition-notification",
                     "message/global-disposition-notification"):
            found.report_type = found.report_type or "disposition-notification"
            return
        if part.is_multipart():
            if ctype == "multipart/report":
                found.report_type = (str(part.get_param("report-type") or "").lower()
                                     or found.report_type or "unknown")
            if ctype == "multipart/encrypted":
                protocol = str(part.get_param("protocol") or "").lower()
                found.encrypted = ("the mail is encrypted (OpenPGP) and cannot be read"
                                   if "pgp" in protocol else
                                   "the mail is encrypted and cannot be read")
                return
            if depth < 50:
                for sub in part.get_payload() or []:
                    if isinstance(sub, Message):
                        walk(sub, in_report or ctype == "multipart/report", depth + 1)
            return
        lname = name.lower()
        if ctype in _SMIME_TYPES or lname.endswith(".p7m"):
            smime = str(part.get_param("smime-type") or "").lower()
            found.encrypted = ("the text is inside an S/MIME signature (opaque signed),"
                               " which the bridge does not read" if smime == "signed-data"
                               else "the mail is encrypted (S/MIME) and cannot be read")
        elif ctype in _TNEF_TYPES or lname == "winmail.dat":
            found.tnef.append(part)
        elif ctype in _CALENDAR_TYPES or lname.endswith(".ics"):
            found.calendars.append(part)
        elif not in_report and (lname.endswith(".eml") or (
                ctype == "application/octet-stream" and _is_attachment(part)
                and _may_be_mail(lname) and looks_like_mail(part_bytes(part)))):
            inner = bytes_message(part_bytes(part))
            if inner is not None:
                found.messages.append(inner)
        elif ctype == "text/plain" and not _is_attachment(part):
            found.plain.append(part)
        elif ctype == "text/html" and not _is_attachment(part):
            found.html.append(part)
        else:
            found.others.append(f"{ctype.split('/')[0]} {name or ctype}")

    walk(msg, False, 0)
    if (not msg.is_multipart() and not found.plain and not found.html
            and msg.get_content_maintype() == "text" and not found.calendars):
        found.plain.append(msg)  # e.g. text/x-unknown: read it as plain text
    return found


_MAIL_EXTENSIONS = (".eml", ".mail", ".mime", ".txt", ".dat")


def _may_be_mail(name: str) -> bool:
    """Whether an octet-stream attachment of this (lower-case) name is worth opening to see
    if it holds a mail: no name, no extension, or one a saved mail may have (not .pdf)."""
    stem = name.rsplit("/", 1)[-1]
    return "." not in stem or stem.endswith(_MAIL_EXTENSIONS)


def bytes_message(data: bytes) -> Message | None:
    """Bytes of an attached mail (an ``*.eml`` file) parsed as a message, or None."""
    try:
        return email.message_from_bytes(data, policy=mime.READING_POLICY)
    except Exception:
        return None
