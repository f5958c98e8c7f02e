"""Forward and quote shapes in a mail's text (pure): inline forwards as Outlook (Dutch and
English), Gmail, Apple Mail and Thunderbird write them (also nested and quoted with ``> ``),
and the start of quoted history in a reply ("-----Original Message-----", an Outlook
"Van:/Verzonden:" block, a Gmail "Op ... schreef ...:" or "On ... wrote:" line).

Only text: no MIME, no dates (core.mail reads the header values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Inline", "find_inline", "quote_start", "own_text", "without_forward_headers"]


def _collapse(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


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
class Inline:
    """An inline forward: what was above it, its header block (keys from, date, subject,
    to, cc, other) and the forwarded body (unquoted); ``start`` is the index of its first
    line (separator or header line) in the text."""

    comment: str
    headers: dict
    body: str
    start: int = 0


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


def find_inline(text: str) -> Inline | None:
    """The first inline forward in ``text`` (a separator line followed by a header block,
    or a header block of From with Date or Subject), or None."""
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
        return Inline(comment=comment.strip(), headers=headers,
                      body="\n".join(body_lines).strip("\n"), start=i)
    return None


# ---------------------------------------------------------------------------------------------
# Quoted history in a reply

# A reply's attribution line above the quoted mail: Gmail/Thunderbird/Apple in Dutch and
# English ("Op za 28 nov 2026 om 07:20 schreef KPN <...>:", "On Sat, Nov 28, 2026 at 7:20 AM
# KPN <...> wrote:", "Op 28 nov 2026, om 07:20 heeft KPN het volgende geschreven:"), German
# too. Bounded: linear on any line.
_ATTRIBUTION = re.compile(
    r"^\s*(?:(?:on|op|am)\b.{3,300}?\b(?:wrote|schreef|schrieb)\b.{0,300}?"
    r"|.{3,300}?\b(?:schreef|wrote|schrieb)\s+(?:op|on|am)\b.{3,300}?"
    r"|(?:op|on)\b.{3,300}?\bhet volgende geschreven)\s*:\s*$",
    re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^\s*(?:on|op|am)\b", re.IGNORECASE)


_ATTRIBUTION_MAX = 400  # characters of an attribution line (real ones are about 150)


def _quoted_after(lines: list[str], j: int) -> bool:
    while j < len(lines) and not lines[j].strip():
        j += 1
    return j < len(lines) and lines[j].lstrip().startswith(">")


def _attribution(lines: list[str]) -> int | None:
    """The index of the first attribution line ("... schreef ...:", "... wrote:") that is
    followed by quoted ("> ") lines; a line wrapped over two is found at its first line.
    Cheap checks (followed by a quote, ends in a colon, not too long) come before the
    pattern, so a mail of many look-alike lines stays linear."""
    for i, line in enumerate(lines):
        if len(line) > _ATTRIBUTION_MAX or not line.strip():
            continue
        if line.rstrip().endswith(":") and _quoted_after(lines, i + 1):
            if _ATTRIBUTION.match(line):
                return i
        elif (i + 1 < len(lines) and len(lines[i + 1]) <= _ATTRIBUTION_MAX
              and lines[i + 1].rstrip().endswith(":") and _ATTRIBUTION_START.match(line)
              and _quoted_after(lines, i + 2)
              and _ATTRIBUTION.match(f"{line} {lines[i + 1].strip()}")):
            return i
    return None


def quote_start(text: str) -> int | None:
    """The index of the line where quoted history starts in a reply: an inline forward or
    reply block ("-----Original Message-----", "Van:/Verzonden:", "From:/Sent:") or an
    attribution line followed by quoted lines; None when the text quotes nothing."""
    lines = text.split("\n")
    found = find_inline(text)
    at = _attribution(lines)
    starts = [x for x in (found.start if found else None, at) if x is not None]
    return min(starts) if starts else None


def own_text(text: str) -> tuple[str, bool]:
    """A reply's own text: what is above its quoted history, and whether any was cut."""
    start = quote_start(text)
    if start is None:
        return text, False
    return "\n".join(text.split("\n")[:start]).strip("\n"), True


def without_forward_headers(text: str, limit: int = 8) -> str:
    """``text`` with the separator and header lines of its inline forwards left out (what a
    forward's plain part holds besides them: the comment and the forwarded body)."""
    out: list[str] = []
    for _ in range(limit):
        found = find_inline(text)
        if found is None:
            break
        out.append(found.comment)
        text = found.body
    out.append(text)
    return "\n".join(x for x in out if x.strip())
