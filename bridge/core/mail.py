"""Raw mail bytes -> ParsedMail: headers, plain text of the body, forwards unwrapped.

Pure: no I/O, no asyncio. Forgiving: any charset (also wrong or unknown declarations), HTML-only
mails and HTML alternatives to a stub plain part (converted with html2text), forwards as
``message/rfc822`` attachments and inline forwards in the shapes of Outlook (Dutch and English),
Gmail, Apple Mail and Thunderbird (also its HTML header table), also nested and quoted with
``> ``. Only input that is not a mail at all (empty bytes) raises :class:`MailError`.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage, Message
from zoneinfo import ZoneInfo

import html2text

from bridge.core.models import Envelope, ParsedMail
from bridge.core.dates import parse_datetime

__all__ = ["MailError", "parse_mail", "html_to_text", "normalise_text", "clean_subject"]

DEFAULT_TZ = "Europe/Amsterdam"


class MailError(ValueError):
    """The input cannot be read as a mail at all."""


# ---------------------------------------------------------------------------------------------
# Text helpers

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u2009\u200a"), " ")


def normalise_text(text: str) -> str:
    """Newlines to ``\\n``, non-breaking and odd spaces to spaces, trailing blanks removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_INVISIBLE).translate(_SPACES)
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# A table cell that holds a whole "Label: value" (a colon between digits, as in 09:42, is not
# a label's colon). Bounded: linear on any cell.
_CELL_LABEL = re.compile(r"^\s*[^\W\d_][^:\n]{0,40}(?<!\d):(?!\d)\s*\S")
# Text that would be read as the start of a "Label: value" line (the value may follow in a
# later piece of text, as in "<b>Status:</b> Nieuw").
_LABEL_START = re.compile(r"^\s*[^\W\d_][^:\n]{0,40}(?<!\d):(?!\d)")
# A cell that holds only a label ("Omschrijving", "Getroffen gebied:"): the first cell of a
# "Label | value" row.
_BARE_LABEL = re.compile(r"^\s*[^\W\d_][^:|\n]{0,60}:?\s*$")
_NBSP = "&nbsp_place_holder;"  # how html2text holds &nbsp; until the end


class _MailText(html2text.HTML2Text):
    """html2text, tuned to read a mail as lines of text rather than to write Markdown.

    * No Markdown escapes ("\\-------- Doorgestuurd bericht", "1\\. Herstart").
    * A table starts on a line of its own (html2text runs it on after the text before it).
    * Paragraphs and divs inside a table cell are separate lines (html2text joins them:
      "Status: NieuwGebied: Ede").
    * A row whose cells each hold a whole "Label: value" gives one line per cell; a row of a
      label cell and a value cell stays one ``Label| value`` line, as the report reader wants.
    * Inside such a value cell the text stays one value: paragraphs, divs and ``<br>`` give
      lines (a list of places, one per line, as the report reader continues a value), but a
      piece that would read as a label of its own ("Let op: ...", "Status: monteur onderweg")
      is joined to the line before with a space, and empty paragraphs give no blank line
      (which would end the value).
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[list[list]] = []  # per open row: [separator index, start, label?, bare?]
        self._cells: list[list[bool]] = []  # per open cell: [has text, break pending, value?]

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        if self._cells:
            cell = self._cells[-1]
            blank = not data.replace(_NBSP, " ").strip()
            if cell[2] and blank and (cell[1] or not cell[0]):
                return  # an empty paragraph in a value cell: no blank line
            if not blank:
                if cell[1]:
                    if cell[2] and _LABEL_START.match(data.replace(_NBSP, " ")):
                        data = " " + data.lstrip()  # not a label of its own: same line
                    else:
                        self.soft_br()
                cell[0], cell[1] = True, False
        # entity_char=True: html2text then leaves out its Markdown escapes
        super().handle_data(data, entity_char=True)

    def handle_tag(self, tag: str, attrs, start: bool) -> None:  # type: ignore[override]
        if self.ignore_tables or self.bypass_tables:
            return super().handle_tag(tag, attrs, start)
        if tag == "table" and start:
            self.soft_br()
        elif tag in ("p", "div") and self._cells and not self.astack:
            cell = self._cells[-1]
            cell[1] = cell[1] or cell[0]  # a block after text in the same cell: a new line
        elif tag == "br" and self._cells and self._cells[-1][2]:
            cell = self._cells[-1]
            cell[1] = cell[1] or cell[0]  # decided at the next text, as for a paragraph
            return
        elif tag == "tr":
            if start:
                self._rows.append([])
            elif self._rows:
                row = self._rows.pop()
                if sum(1 for c in row if c[2]) >= 2:
                    for sep, *_ in row:
                        if sep is not None:
                            self.outtextlist[sep] = "\n"
        elif tag in ("td", "th"):
            if start:
                before = len(self.outtextlist)
                super().handle_tag(tag, attrs, start)
                sep = None
                if len(self.outtextlist) > before and self.outtextlist[-1] == "| ":
                    sep = len(self.outtextlist) - 1
                row = self._rows[-1] if self._rows else None
                value = bool(row) and row[0][3]  # after a label-only first cell
                if row is not None:
                    row.append([sep, len(self.outtextlist), False, False])
                self._cells.append([False, False, value])
                return
            if self._cells:
                self._cells.pop()
            if self._rows and self._rows[-1]:
                cell = self._rows[-1][-1]
                text = "".join(self.outtextlist[cell[1]:]).replace(_NBSP, " ")
                cell[2] = bool(_CELL_LABEL.match(text))
                cell[3] = bool(text.strip()) and bool(_BARE_LABEL.match(text))
        super().handle_tag(tag, attrs, start)


def html_to_text(html: str) -> str:
    """HTML -> plain text; table rows come out as ``Label| value`` (html2text's table style),
    paragraphs, line breaks and cells that hold a label each as lines of their own."""
    h = _MailText()
    h.body_width = 0
    h.ignore_links = True
    h.ignore_images = True
    h.ignore_emphasis = True
    h.unicode_snob = True  # keep é, ë as they are
    h.single_line_break = False
    try:
        out = h.handle(html)
    except Exception:  # html2text on broken markup: fall back to stripping tags
        out = re.sub(r"<[^>]+>", " ", html)
    return normalise_text(out)


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
# Decoding

_CHARSET_ALIASES = {
    # Mails labelled latin-1 are nearly always windows-1252 (quotes, euro sign in 0x80-0x9f).
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8",  # 8-bit bytes in "ascii" parts are usually utf-8
}


def _decode_bytes(data: bytes, charset: str | None) -> str:
    tried = []
    if charset:
        cs = charset.strip().strip('"').lower()
        tried.append(_CHARSET_ALIASES.get(cs, cs))
    tried.append("utf-8")
    for cs in tried:
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        if isinstance(raw, str):
            payload = raw.encode("utf-8", errors="replace")
        else:
            return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = _decode_bytes(payload, charset)
    if part.get_content_type() == "text/html":
        return html_to_text(text)
    return normalise_text(text)


def _is_attachment(part: Message) -> bool:
    try:
        disp = (part.get_content_disposition() or "").lower()
    except Exception:
        disp = ""
    return disp == "attachment" or (disp != "inline" and part.get_filename() is not None
                                    and part.get_content_type() not in ("text/plain",
                                                                        "text/html"))


def _attached_messages(msg: Message) -> list[Message]:
    """message/rfc822 parts directly inside ``msg`` (not inside another attached message)."""
    found: list[Message] = []

    def walk(part: Message) -> None:
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found.append(inner)
            return
        if part.is_multipart():
            for sub in part.get_payload() or []:
                if isinstance(sub, Message):
                    walk(sub)

    walk(msg)
    return found


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


def _body_text(msg: Message) -> str:
    """The message's own body text: the first non-empty text/plain part, else text/html as
    text. The HTML wins only over a plain part that is a stub ("View this mail in your
    browser: https://..."): one with (almost) no ``Label: value`` lines where the HTML has
    several. Counting is crude (a footer's "Tel:", "KvK:" count too), so a plain part that
    carries a report is never outvoted by a longer HTML part.
    """
    plain: list[str] = []
    html: list[str] = []

    def walk(part: Message) -> None:
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            return
        if part.is_multipart():
            for sub in part.get_payload() or []:
                if isinstance(sub, Message):
                    walk(sub)
            return
        if ctype == "text/plain" and not _is_attachment(part):
            plain.append(part)
        elif ctype == "text/html" and not _is_attachment(part):
            html.append(part)

    walk(msg)
    if not msg.is_multipart() and not plain and not html and msg.get_content_maintype() == "text":
        plain.append(msg)  # e.g. text/x-unknown: read it as plain text
    plain_text = next((t for t in map(_part_text, plain) if t.strip()), "")
    if not html:
        return plain_text
    html_text = next((t for t in map(_part_text, html) if t.strip()), "")
    if not plain_text:
        return html_text
    if (_label_lines(plain_text) < _STUB_MAX_LABELS
            and _label_lines(html_text) >= _HTML_MIN_LABELS):
        return html_text
    return plain_text


# ---------------------------------------------------------------------------------------------
# Headers


def _raw_header(msg: Message, name: str) -> str | None:
    """The header as it was in the source, 8-bit bytes decoded (utf-8, else windows-1252)."""
    for key, raw in getattr(msg, "_headers", []):
        if key.lower() == name.lower():
            raw = str(raw)
            try:
                data = raw.encode("utf-8", errors="surrogateescape")
            except UnicodeEncodeError:
                return raw
            return _decode_bytes(data, None)
    return None


_HEADER_MAX = 2000  # longer headers are cut before parsing: the stdlib header parser is
# super-linear (a 100k-character From: took over a minute)


def _header(msg: Message, name: str) -> str:
    raw = _raw_header(msg, name)
    if raw is not None and len(raw) > _HEADER_MAX:
        raw = raw[:_HEADER_MAX]
        try:
            return str(email.header.make_header(email.header.decode_header(raw)))
        except Exception:
            return raw
    try:
        value = msg.get(name)
        text = "" if value is None else str(value)
    except Exception:
        text = "\ufffd"
    if "\ufffd" in text:
        # raw 8-bit bytes in a header (no encoded words): decode them ourselves
        raw = _raw_header(msg, name)
        if raw is not None and "=?" not in raw:
            return raw
        if raw is not None:
            try:
                return str(email.header.make_header(email.header.decode_header(raw)))
            except Exception:
                return raw
        return text.replace("\ufffd", "") if text != "\ufffd" else ""
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
            raw = _decode_bytes(raw.encode("utf-8", errors="surrogateescape"), None)
        except UnicodeEncodeError:
            pass
        out.append(_collapse(raw))
        if len(out) >= _AUTH_RESULTS_HEADERS_MAX:
            break
    return tuple(out)


def _from_count(msg: Message) -> int:
    return sum(1 for key, _ in getattr(msg, "_headers", []) if key.lower() == "from")


def _envelope(msg: Message, tz: str, clean: bool = False) -> Envelope:
    addr, name = _address(_header(msg, "From"))
    subject = _collapse(_header(msg, "Subject"))
    return Envelope(
        from_addr=addr,
        from_name=name,
        subject=clean_subject(subject) if clean else subject,
        date=_header_date(_header(msg, "Date"), tz),
        message_id=_message_id(_header(msg, "Message-ID")),
        auth_results=_auth_results(msg),
        from_count=_from_count(msg),
    )


# ---------------------------------------------------------------------------------------------
# Inline forwards

_SEPARATOR = re.compile(
    r"^\s*(?:"
    r"_{8,}"
    r"|-{2,}\s*(?:original message|oorspronkelijk bericht|origineel bericht|"
    r"forwarded message|doorgestuurd bericht|doorgestuurde e-?mail|"
    r"weitergeleitete nachricht|urspr\u00fcngliche nachricht|message transf\u00e9r\u00e9|"
    r"message d'origine)\s*-*"
    r"|begin (?:forwarded message|doorgestuurd bericht|doorgestuurde e-?mail)\s*:?"
    r"|(?:\*\s*){3,}|(?:-\s*){3,}"
    r")\s*$",
    re.IGNORECASE,
)
_HEADER_KEYS = {
    "van": "from", "from": "from", "afzender": "from", "von": "from",
    "verzonden": "date", "sent": "date", "datum": "date", "date": "date", "verstuurd": "date",
    "gesendet": "date",
    "onderwerp": "subject", "subject": "subject", "betreft": "subject", "betreff": "subject",
    "aan": "to", "to": "to",
    "cc": "cc", "bcc": "cc", "kopie": "cc",
    "reply-to": "other", "antwoord aan": "other", "beantwoorden aan": "other",
    "belangrijkheid": "other", "prioriteit": "other", "importance": "other",
    "bijlagen": "other", "attachments": "other",
}
_HEADER_LINE = re.compile(r"^\s*(?P<key>[a-z\u00e0-\u00ff][a-z\u00e0-\u00ff -]{0,20}?)\s*:\s*(?P<value>.*)$",
                          re.IGNORECASE)
_QUOTE = re.compile(r"^(?:[ \t]*>)+")


def _depth(line: str) -> int:
    m = _QUOTE.match(line)
    return m.group(0).count(">") if m else 0


def _unquote(line: str, depth: int) -> str:
    for _ in range(depth):
        m = re.match(r"^[ \t]*>[ ]?", line)
        if not m:
            break
        line = line[m.end():]
    return line


def _header_key(line: str) -> tuple[str, str] | None:
    m = _HEADER_LINE.match(line)
    if not m:
        return None
    key = _HEADER_KEYS.get(_collapse(m.group("key")).lower())
    # "Onderwerp: | X": a header block in an HTML table (Thunderbird), as html_to_text gives it
    value = m.group("value").strip()
    if value.startswith("|"):
        value = value[1:].strip()
    return (key, value) if key else None


def _is_html2text_header_rule(line: str) -> bool:
    """html2text's Markdown rule under a table's first row ("---|---", "---|---|---"); not
    any table border (core.report has its own, wider ``_is_table_rule`` for those)."""
    line = line.strip()
    return line.startswith("---") and "|" in line and not line.strip("-|: ")


@dataclass
class _Inline:
    comment: str
    headers: dict
    body: str


def _read_block(lines: list[str], start: int, depth: int) -> tuple[dict, int] | None:
    """Read a forward header block at ``lines[start]``; return (headers, index after it)."""
    headers: dict[str, str] = {}
    last: str | None = None
    continued = 0
    i = start
    while i < len(lines):
        line = _unquote(lines[i], depth)
        if not line.strip():
            break
        if _is_html2text_header_rule(line):  # inside a header table (Thunderbird's HTML forward)
            i += 1
            continue
        hk = _header_key(line)
        if hk:
            key, value = hk
            if key in headers and key != "other":
                break  # a second From:/Subject: -> not part of this block
            headers[key] = value
            last, continued = key, 0
        elif last in ("subject", "to", "cc", "from") and continued < 3 and headers:
            # wrapped header value (a long Subject: continues on the next line)
            headers[last] = f"{headers[last]} {line.strip()}".strip()
            continued += 1
        else:
            break
        i += 1
    if "from" not in headers and "subject" not in headers:
        return None
    return headers, i


def _find_inline(text: str) -> _Inline | None:
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        depth = _depth(raw)
        line = _unquote(raw, depth)
        block_start = None
        if _SEPARATOR.match(line):
            j = i + 1
            while j < len(lines) and not _unquote(lines[j], _depth(lines[j])).strip():
                j += 1
            if j < len(lines):
                block_start = j
        else:
            hk = _header_key(line)
            if hk and hk[0] == "from":
                block_start = i
        if block_start is None:
            continue
        bdepth = _depth(lines[block_start])
        got = _read_block(lines, block_start, bdepth)
        if got is None:
            continue
        headers, end = got
        if block_start == i:
            # no separator line: demand a real header block (From + Date or Subject)
            if not ({"date", "subject"} & headers.keys()) or len(headers) < 2:
                continue
        body_lines = [_unquote(x, bdepth) for x in lines[end:]]
        comment = "\n".join(lines[:i]).strip("\n")
        return _Inline(comment=comment.strip(), headers=headers,
                       body="\n".join(body_lines).strip("\n"))
    return None


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


def _unwrap_text(env: Envelope, text: str, tz: str, limit: int = 8) -> _Level:
    """Follow inline forwards inside ``text`` as deep as they go (bounded by ``limit``).

    The comment kept is the outermost forwarder's (the text above the first separator).
    """
    level = _Level(env, text, None)
    for _ in range(limit):
        found = _find_inline(level.text)
        if found is None or not found.body.strip():
            break
        comment = found.comment if level.kind is None else level.comment
        level = _Level(_inline_envelope(found.headers, tz), found.body, "inline",
                       comment)
    return level


def _unwrap_message(msg: Message, tz: str, depth: int = 0) -> _Level:
    """Unwrap one message: attached originals first, then inline forwards in its body.

    ``kind`` of the result is None when no forward was found, else the shape of the outermost
    forward step ("attachment" or "inline").
    """
    env = _envelope(msg, tz, clean=depth > 0)
    text = _body_text(msg)
    if depth < 8:
        for inner in _attached_messages(msg):
            level = _unwrap_message(inner, tz, depth + 1)
            if level.text.strip():
                return _Level(level.envelope, level.text, "attachment", comment=text.strip())
    level = _unwrap_text(env, text, tz)
    return level


def parse_mail(raw: bytes, *, tz: str = DEFAULT_TZ) -> ParsedMail:
    """Parse raw mail bytes into a :class:`ParsedMail`.

    ``outer`` has the headers of the mail as received. When the mail is a forward (an attached
    ``message/rfc822`` or an inline forward, possibly nested) ``original`` has the headers of the
    innermost forwarded message that has a body, ``text`` that message's body and
    ``forward_comment`` what the (outermost) forwarder wrote above it. Zone-less dates are read
    in ``tz``. Raises :class:`MailError` only for input that is not a mail at all.
    """
    if raw is None or not isinstance(raw, (bytes, bytearray)):
        raise MailError(f"mail must be bytes, got {type(raw).__name__}")
    if not bytes(raw).strip():
        raise MailError("empty mail (no bytes)")
    try:
        msg = email.message_from_bytes(bytes(raw), policy=email.policy.default)
    except Exception as exc:  # the stdlib parser is very lenient; this is a last resort
        raise MailError(f"unreadable mail: {exc}") from exc
    if not isinstance(msg, (EmailMessage, Message)):
        raise MailError("unreadable mail")

    outer = _envelope(msg, tz)
    level = _unwrap_message(msg, tz)
    if level.kind is None:
        return ParsedMail(outer=outer, original=None, forward=None, text=level.text)
    return ParsedMail(
        outer=outer,
        original=level.envelope,
        forward=level.kind,  # type: ignore[arg-type]
        text=level.text,
        forward_comment=level.comment,
    )
