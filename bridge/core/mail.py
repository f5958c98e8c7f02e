"""Raw mail bytes -> ParsedMail: headers, plain text of the report's body, forwards unwrapped.

Pure: no I/O, no asyncio. Forgiving: any charset (also wrong or unknown declarations, decoded
by core.mime with a note where it had to guess), HTML-only mails and an HTML alternative to a
plain part that holds no report (converted by core.text), winmail.dat (TNEF), forwards as
``message/rfc822``, ``*.eml`` or ``application/octet-stream`` attachments and inline forwards
in the shapes of Outlook (Dutch and English), Gmail, Apple Mail and Thunderbird, also nested
and quoted with ``> `` (core.forwards).

Which forwards are followed depends on who sent the mail (``senders``): only a listed
forwarder's mail is unwrapped, and a KPN mail, as received or forwarded, is read from its own
text (quoted history below it left out). The mail inside a bounce or receipt
(``multipart/report``) is never unwrapped. An iCalendar part gives ``calendar`` facts; a
body with no readable text gives ``unreadable`` (why). Only input that is not a mail at all
(empty bytes) raises :class:`MailError`.
"""

from __future__ import annotations

import dataclasses
import email
import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import EmailMessage, Message
from zoneinfo import ZoneInfo

from bridge.core import forwards, mime
from bridge.core.calendar import read_calendar
from bridge.core.models import CalendarFacts, Envelope, ParsedMail
from bridge.core.parts import (Parts, bytes_message, decode_8bit, looks_like_mail, part_bytes,
                               part_charset, raw_header, sort_parts)
from bridge.core.dates import parse_datetime
from bridge.core.senders import SenderRules, listed
from bridge.core.text import html_to_text, normalise_text

__all__ = ["MailError", "parse_mail", "header_problem", "html_to_text", "normalise_text",
           "clean_subject"]

DEFAULT_TZ = "Europe/Amsterdam"


class MailError(ValueError):
    """The input cannot be read as a mail at all."""


_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|doorst|tr|wg|aw|antw|sv|vs|fyi)\s*(?:\[\d+\])?\s*:\s*)+",
    re.IGNORECASE,
)


def clean_subject(subject: str) -> str:
    """Subject without reply/forward prefixes ("FW:", "Doorst:", "RE: TR:", ...)."""
    return _PREFIX.sub("", subject).strip()


def _collapse(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


# ---------------------------------------------------------------------------------------------
# Decoding (the primitives are in core.mime)


@dataclass
class _Ctx:
    """What one :func:`parse_mail` call carries along: the zone of zone-less dates, the
    charsets detection chooses among, the sender rules that decide which forwards are
    followed (None: all), and the notes of header decoding."""

    tz: str
    charsets: tuple[str, ...]
    senders: SenderRules | None
    notes: list[str] = field(default_factory=list)


def _part_text(part: Message, ctx: _Ctx) -> tuple[str, tuple[str, ...]]:
    """A text part as plain text (HTML converted), and the notes of its decoding."""
    notes: list[str] = []
    text = mime.decode_text(part_bytes(part), part_charset(part), notes, "body", ctx.charsets)
    if part.get_content_type() == "text/html":
        return html_to_text(text), tuple(notes)
    return normalise_text(text), tuple(notes)


# A line that looks like a report's "Label: value" (or html2text's "Label| value" table row);
# a colon between digits (09:42) is not a label's colon. Bounded: linear on any line.
_LABEL_LINE = re.compile(r"^[ \t>]*[^\W\d_][^:|\n]{0,40}(?<!\d)[ \t]*(?::(?!\d)|\|)[ \t]*\S",
                         re.MULTILINE)


def _label_lines(text: str) -> int:
    """How many lines of ``text`` look like ``Label: value``: a measure of how much of a
    report a body carries, independent of the parser's configured labels."""
    return sum(1 for _ in _LABEL_LINE.finditer(text))


_STUB_MAX_LABELS = 2  # a plain part with fewer label lines is a stub ...
_HTML_MIN_LABELS = 3  # ... that loses to an HTML part with at least this many


def _first_text(parts: list[Message], ctx: _Ctx) -> tuple[str, tuple[str, ...]]:
    for part in parts:
        text, notes = _part_text(part, ctx)
        if text.strip():
            return text, notes
    return "", ()


def _body_text(parts: Parts, ctx: _Ctx) -> tuple[str, tuple[str, ...]]:
    """The message's own body text and the notes of its decoding: the first non-empty
    text/plain part, else text/html as text.

    The HTML alternative wins when the plain part holds no report: nothing but the
    separator and header lines of a forward (Gmail's plain part of an HTML forward), or a
    stub ("View this mail in your browser: https://...") with (almost) no ``Label: value``
    lines where the HTML has several; forward header lines do not count as labels. Counting
    is crude (a footer's "Tel:", "KvK:" count too), so a plain part that carries a report is
    never outvoted by a longer HTML part.
    """
    plain = _first_text(parts.plain, ctx)
    if not parts.html:
        return plain
    html = _first_text(parts.html, ctx)
    if not plain[0].strip():
        return html
    plain_content = forwards.without_forward_headers(plain[0])
    html_content = forwards.without_forward_headers(html[0])
    if not plain_content.strip() and html_content.strip():
        return html
    if (_label_lines(plain_content) < _STUB_MAX_LABELS
            and _label_lines(html_content) >= _HTML_MIN_LABELS):
        return html
    return plain


@dataclass
class _Body:
    """What one message's own MIME tree gives."""

    text: str
    notes: tuple[str, ...] = ()
    calendar: CalendarFacts | None = None
    messages: list[Message] = field(default_factory=list)
    unreadable: str | None = None  # why ``text`` is empty
    report_type: str | None = None


def _names(items: list[str]) -> str:
    shown = ", ".join(i.split(" ", 1)[-1] for i in items[:3])
    return shown + (f" and {len(items) - 3} more" if len(items) > 3 else "")


_EMPTY = "the body is empty"


def _read_body(msg: Message, ctx: _Ctx) -> _Body:
    parts = sort_parts(msg)
    text, notes = _body_text(parts, ctx)
    notes_list = list(notes)
    problem = None
    messages = list(parts.messages)
    if not text.strip():
        for part in parts.tnef:
            tnef = mime.read_tnef(part_bytes(part), notes_list)
            for name, data in tnef.attachments:
                if str(name).lower().endswith(".eml") or looks_like_mail(data):
                    inner = bytes_message(data)
                    if inner is not None:
                        messages.append(inner)
            if tnef.text or tnef.html:
                text = normalise_text(tnef.text) if tnef.text else html_to_text(tnef.html)
                break
            problem = problem or tnef.problem
    calendar = None
    for part in parts.calendars:
        cal_notes: list[str] = []
        calendar = read_calendar(mime.decode_text(part_bytes(part), part_charset(part), cal_notes,
                                                  "calendar", ctx.charsets), ctx.tz)
        if calendar is not None:
            notes_list.extend(cal_notes)
            break
    unreadable = None
    if not text.strip() and calendar is None:
        images = [o for o in parts.others if o.startswith("image ")]
        unreadable = (problem or parts.encrypted
                      or (f"the body has no text, only an image ({_names(images)}); a report"
                          " in an image cannot be read" if images else None)
                      or ("the body has no text, only an attached mail" if messages else None)
                      or (f"the body has no text, only attachments ({_names(parts.others)})"
                          if parts.others else None)
                      or _EMPTY)
    return _Body(text, tuple(notes_list), calendar, messages, unreadable, parts.report_type)


# ---------------------------------------------------------------------------------------------
# Headers


_HEADER_BLOCK_MAX = 256 * 1024  # bytes of a mail read for its header block alone
_HEADER_MAX = 2000  # longer headers are cut before parsing: the stdlib header parser is
# super-linear (a 100k-character From: took over a minute)


def _header(msg: Message, name: str, notes: list[str] | None = None) -> str:
    """A header's text, RFC 2047 encoded words decoded. Where the standard library leaves
    an encoded word undecoded (malformed: a blank inside, bad padding) or meets raw 8-bit
    bytes, the source value is decoded tolerantly (core.mime.decode_words); guesses are
    noted in ``notes``."""
    raw = raw_header(msg, name)
    if raw is None:
        return ""
    what = name.lower()
    if len(raw) > _HEADER_MAX:
        return mime.decode_words(raw[:_HEADER_MAX], notes if notes is not None else [], what)
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception:
        text = "\ufffd"
    if "\ufffd" in text or ("=?" in text and mime.has_encoded_word(text)):
        if "=?" in raw:
            return mime.decode_words(raw, notes if notes is not None else [], what)
        return raw  # raw 8-bit bytes in a header (no encoded words), decoded by raw_header
    return text


def _address(value: str) -> tuple[str, str]:
    """(lower-cased address, display name) from ``Name <a@b>``, ``Name [mailto:a@b]``, ``a@b``."""
    value = _collapse(value[:_HEADER_MAX])  # no real address field is longer
    if not value:
        return "", ""
    value = re.sub(r"\[\s*+mailto:\s*+([^\[\]\s]++)\s*+\]", r"<\1>", value, flags=re.IGNORECASE)
    value = re.sub(r"<\s*mailto:\s*", "<", value, flags=re.IGNORECASE)
    try:  # the stdlib parser recurses on nested "((((": never let that escape

        name, addr = email.utils.parseaddr(value)
    except (RecursionError, ValueError, IndexError):
        name, addr = "", ""
    if not addr or "@" not in addr:
        m = re.search(r"(?<![\w.+'-])[\w.+'-]++@[\w-]++(?:\.[\w-]++)+", value)
        if m:
            addr = m.group(0)
            name = name or _collapse(value.replace(addr, "").strip(" <>[]\"'()"))
        else:
            return "", _collapse(value.strip("\"'"))
    name = _collapse(name.strip("\"'"))
    if name.lower() == addr.lower():
        name = ""
    return addr.lower(), name


def _header_date(value: str, tz: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        dt = None
    if dt is None:
        return parse_datetime(value, tz)
    try:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=ZoneInfo(tz))
        return dt.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _message_id(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    m = re.search(r"<([^<>]+)>", value)
    mid = (m.group(1) if m else value.split()[0]).strip().strip("<>")
    return mid or None


_AUTH_RESULTS_HEADERS_MAX = 20  # how many Authentication-Results headers are kept (topmost)


def _auth_results(msg: Message) -> tuple[str, ...]:
    """The Authentication-Results header values as in the source, in order (topmost first),
    unfolded and with whitespace collapsed; read by core.senders."""
    out: list[str] = []
    for key, raw in getattr(msg, "_headers", []):
        if key.lower() != "authentication-results":
            continue
        raw = str(raw)[:4 * _HEADER_MAX]
        try:
            raw = decode_8bit(raw.encode("utf-8", errors="surrogateescape"))
        except UnicodeEncodeError:
            pass
        out.append(_collapse(raw))
        if len(out) >= _AUTH_RESULTS_HEADERS_MAX:
            break
    return tuple(out)


def _from_count(msg: Message) -> int:
    return sum(1 for key, _ in getattr(msg, "_headers", []) if key.lower() == "from")


_HEADER_FIELDS_MAX = 100  # header fields kept per message for core.automatic
_HEADER_FIELD_CHARS = 500  # characters kept of each


def _header_fields(msg: Message) -> tuple[tuple[str, str], ...]:
    """(lower-case name, unfolded value) of a message's header fields, bounded."""
    out = []
    for key, raw in getattr(msg, "_headers", [])[:_HEADER_FIELDS_MAX]:
        value = str(raw)[:_HEADER_FIELD_CHARS]
        if not value.isascii():
            try:
                value = decode_8bit(value.encode("utf-8", errors="surrogateescape"))
            except UnicodeEncodeError:
                pass
        out.append((str(key).strip().lower(), _collapse(value)))
    return tuple(out)


def _envelope(msg: Message, ctx: _Ctx, clean: bool = False,
              report_type: str | None = None) -> Envelope:
    addr, name = _address(_header(msg, "From", ctx.notes))
    subject = _collapse(_header(msg, "Subject", ctx.notes))
    return Envelope(
        from_addr=addr,
        from_name=name,
        subject=clean_subject(subject) if clean else subject,
        date=_header_date(_header(msg, "Date"), ctx.tz),
        message_id=_message_id(_header(msg, "Message-ID")),
        auth_results=_auth_results(msg),
        from_count=_from_count(msg),
        headers=_header_fields(msg),
        report_type=report_type,
    )


def _inline_envelope(headers: dict, tz: str) -> Envelope:
    addr, name = _address(headers.get("from", ""))
    return Envelope(
        from_addr=addr,
        from_name=name,
        subject=clean_subject(_collapse(headers.get("subject", ""))),
        date=parse_datetime(headers.get("date", ""), tz) if headers.get("date") else None,
        message_id=None,
    )


# ---------------------------------------------------------------------------------------------
# Unwrapping


@dataclass
class _Level:
    envelope: Envelope
    text: str
    kind: str | None  # how this level was reached: None (outer), "attachment", "inline"
    comment: str = ""
    calendar: CalendarFacts | None = None
    unreadable: str | None = None
    notes: tuple[str, ...] = ()


def _is_kpn(env: Envelope, ctx: _Ctx) -> bool:
    return ctx.senders is not None and listed(env.from_addr, ctx.senders.kpn)


def _follows(env: Envelope, ctx: _Ctx, outer: bool) -> bool:
    """Whether forwards in this message are unwrapped: with sender rules, the mail as
    received only when it is from a listed forwarder, a forwarded message unless it is from
    KPN (a KPN mail is the report, whatever it quotes); without rules, always."""
    if ctx.senders is None:
        return True
    if outer:
        return listed(env.from_addr, ctx.senders.forwarders)
    return not _is_kpn(env, ctx)


_NOT_FOLLOWED = "only forwards from a listed forwarder are unwrapped"


def _own_level(env: Envelope, body: _Body, kind: str | None, comment: str = "") -> _Level:
    """A message read from its own text: quoted history below it (an earlier mail under
    "-----Original Message-----", an Outlook or Gmail quote) is left out."""
    own, cut = forwards.own_text(body.text) if body.text else ("", False)
    unreadable = body.unreadable
    if cut and unreadable is None and body.calendar is None:
        if not own.strip():
            unreadable = ("the mail's own text is empty; the earlier mail quoted or forwarded"
                          f" below it is not read ({_NOT_FOLLOWED})")
        elif _label_lines(own) == 0:
            unreadable = ("the mail's own text holds no report (no 'Label: value' lines); the"
                          " earlier mail quoted below it is not read")
    elif unreadable is not None and body.messages and not body.text.strip():
        unreadable = f"the body has no text, only an attached mail ({_NOT_FOLLOWED})"
    return _Level(env, own, kind, comment, body.calendar, unreadable, body.notes)


def _unwrap_text(env: Envelope, body: _Body, ctx: _Ctx, limit: int = 8) -> _Level:
    """Follow inline forwards inside the body text as deep as they go (bounded by
    ``limit``), stopping at a KPN mail, which is read from its own text.

    The comment kept is the outermost forwarder's (the text above the first separator).
    """
    level = _Level(env, body.text, None, "", body.calendar, body.unreadable, body.notes)
    for _ in range(limit):
        found = forwards.find_inline(level.text)
        if found is None or not found.body.strip():
            break
        comment = found.comment if level.kind is None else level.comment
        inner = _inline_envelope(found.headers, ctx.tz)
        inner_body = _Body(found.body, body.notes, body.calendar)
        if _is_kpn(inner, ctx):
            return _own_level(inner, inner_body, "inline", comment)
        level = _Level(inner, found.body, "inline", comment, body.calendar, None, body.notes)
    return level


def _unwrap_message(msg: Message, ctx: _Ctx, depth: int = 0) -> tuple[_Level, Envelope]:
    """Unwrap one message: attached originals first, then inline forwards in its body; a
    message whose forwards are not followed (see :func:`_follows`) is read from its own
    text. Returns the level that carries the report and this message's envelope.

    ``kind`` of the level is None when no forward was followed, else the shape of the
    outermost forward step ("attachment" or "inline").
    """
    body = _read_body(msg, ctx)
    env = _envelope(msg, ctx, clean=depth > 0, report_type=body.report_type)
    if not _follows(env, ctx, outer=depth == 0):
        return _own_level(env, body, None), env
    unreadable_inner = None
    if depth < 8:
        for inner in body.messages:
            level, _ = _unwrap_message(inner, ctx, depth + 1)
            if level.text.strip() or level.calendar is not None:
                return dataclasses.replace(level, kind="attachment", comment=body.text.strip()), env
            if unreadable_inner is None and level.unreadable not in (None, _EMPTY):
                unreadable_inner = dataclasses.replace(level, kind="attachment",
                                                       comment=body.text.strip())
    level = _unwrap_text(env, body, ctx)
    if level.kind is None and unreadable_inner is not None:
        return unreadable_inner, env  # the attached mail is the report, and it is unreadable
    return level, env


def parse_mail(raw: bytes, *, tz: str = DEFAULT_TZ, senders: SenderRules | None = None,
               charsets: tuple[str, ...] = mime.DEFAULT_CHARSETS) -> ParsedMail:
    """Parse raw mail bytes into a :class:`ParsedMail`.

    ``outer`` has the headers of the mail as received. When the mail is a forward (an
    attached ``message/rfc822`` or ``*.eml``, an inline forward, possibly nested)
    ``original`` has the headers of the innermost forwarded message that has a body,
    ``text`` that message's body and ``forward_comment`` what the (outermost) forwarder
    wrote above it. With ``senders`` only a mail from a listed forwarder is unwrapped, and
    a KPN mail (as received or forwarded) is read from its own text: quoted history below
    it is left out; without, every forward is unwrapped. A mail inside a bounce or receipt
    (``multipart/report``) is never unwrapped. ``unreadable`` says why the body gave no
    text, ``notes`` where decoding guessed (charsets from ``charsets``), ``calendar`` what
    an iCalendar part says. Zone-less dates are read in ``tz``. Raises :class:`MailError`
    only for input that is not a mail at all.
    """
    if raw is None or not isinstance(raw, (bytes, bytearray)):
        raise MailError(f"mail must be bytes, got {type(raw).__name__}")
    if not bytes(raw).strip():
        raise MailError("empty mail (no bytes)")
    try:
        msg = email.message_from_bytes(bytes(raw), policy=mime.READING_POLICY)
    except Exception as exc:  # the stdlib parser is very lenient; this is a last resort
        raise MailError(f"unreadable mail: {exc}") from exc
    if not isinstance(msg, (EmailMessage, Message)):
        raise MailError("unreadable mail")

    ctx = _Ctx(tz, tuple(charsets), senders)
    level, outer = _unwrap_message(msg, ctx)
    notes = tuple(dict.fromkeys([*ctx.notes, *level.notes]))
    common = dict(text=level.text, unreadable=level.unreadable, notes=notes,
                  calendar=level.calendar)
    if level.kind is None:
        return ParsedMail(outer=outer, original=None, forward=None, **common)
    return ParsedMail(outer=outer, original=level.envelope,
                      forward=level.kind,  # type: ignore[arg-type]
                      forward_comment=level.comment, **common)


# The first bytes of files people hand to `bridge ingest` by mistake, with what they are.
_FILE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Outlook .msg or other Office file (save the "
                                          "mail as .eml)"),
    (b"PK\x03\x04", "a ZIP archive (or a Word/Excel file)"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip file"),
)
# "Name:" at the start of a line (RFC 5322 2.2: printable ASCII but colon; obsolete
# syntax allows blanks before the colon), an mbox separator line, a mail's own fields.
_FIELD_NAME = re.compile(rb"^([!-9;-~]{1,76})[ \t]*:")
_MBOX_FROM = re.compile(rb"^From \S")
_MAIL_FIELDS = frozenset((b"from", b"sender", b"date", b"subject", b"message-id", b"received",
                          b"return-path", b"to", b"delivered-to", b"reply-to"))


def not_a_mail(raw: bytes) -> str | None:
    """Why ``raw`` is not a mail at all, or None (then :func:`parse_mail` reads it).

    A mail (RFC 5322 2.1) starts with header fields. Judged on the header block only (the
    lines up to the first blank line, at most 256 kB): an empty file; a known other file
    type by its first bytes (PDF, an Outlook .msg, ZIP, RTF, images); binary data (NUL
    bytes); a first line that is not a header field ("Name: value"; an mbox "From " line
    before it is allowed); or header fields none of which a mail has (From, Date, Subject,
    Message-ID, Received, To, ...). Malformed mails with headers pass: they are judged by
    what the pipeline reads in them.
    """
    data = bytes(raw[:_HEADER_BLOCK_MAX])
    if not data.strip():
        return "an empty file"
    head = data.lstrip(b"\r\n\t \xef\xbb\xbf")  # blank lines, a UTF-8 byte order mark
    for signature, what in _FILE_SIGNATURES:
        if head.startswith(signature):
            return what
    block = re.split(rb"\r?\n[ \t]*\r?\n", head, maxsplit=1)[0]
    if b"\0" in block:
        return "binary data, not text"
    lines = block.splitlines()
    if lines and _MBOX_FROM.match(lines[0]):
        lines = lines[1:]
    if not lines or not _FIELD_NAME.match(lines[0]):
        return "it does not start with header fields (\"From: ...\", RFC 5322)"
    names = {m.group(1).lower() for ln in lines if (m := _FIELD_NAME.match(ln))}
    if not names & _MAIL_FIELDS:
        return "none of a mail's header fields (From, Date, Subject, Message-ID, Received)"
    return None


def header_problem(raw: bytes) -> str | None:
    """Why ``raw`` cannot be a mail the bridge accepts, judged from its header block alone
    (for an SMTP answer at the end of DATA), or None: it has no From header, or more than
    one (RFC 5322 3.6: exactly one; a second is a classic spoof)."""
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
            bytes(raw[:_HEADER_BLOCK_MAX]))
        count = len(msg.get_all("From") or [])
    except Exception:
        count = 0
    if count == 0:
        return "no From header (RFC 5322 3.6 requires one)"
    if count > 1:
        return f"{count} From headers (RFC 5322 3.6 allows one)"
    return None
