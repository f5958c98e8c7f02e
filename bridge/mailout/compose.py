"""Our outgoing mails as RFC 5322 bytes, and our Message-IDs (pure: time and randomness
come in as arguments).

Our Message-IDs carry a keyed hash, so any mail that mentions one (its own Message-ID, or
In-Reply-To) is known to be ours, or an answer to ours, for ever and without a lookup:
``<sb.{token}.{mac}@{domain}>`` with ``mac`` the first 16 hex digits of
HMAC-SHA256(key, token). That is how mail back never answers itself (no mail loops).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

MAX_REFERENCES = 20  # ids kept in References: the first one and the newest ones
_OURS = re.compile(r"^sb\.([0-9a-z]+)\.([0-9a-f]{16})@(.+)$")
_REPLY_PREFIX = re.compile(r"^\s*(re|antw|aw|sv|vs)\s*:", re.IGNORECASE)


def make_message_id(key: bytes, token: str, domain: str) -> str:
    """Our Message-ID (without ``<>``) for ``token`` (lower-case letters and digits)."""
    mac = hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:16]
    return f"sb.{token}.{mac}@{domain}"


def is_ours(message_id: str | None, key: bytes) -> bool:
    """True when ``message_id`` (with or without ``<>``) was made by :func:`make_message_id`
    with ``key`` (on any domain: the From may have changed since)."""
    if not message_id:
        return False
    m = _OURS.match(message_id.strip().strip("<>").lower())
    if not m:
        return False
    mac = hmac.new(key, m.group(1).encode(), hashlib.sha256).hexdigest()[:16]
    return hmac.compare_digest(mac, m.group(2))


def reply_subject(subject: str) -> str:
    """``"Re: "`` + ``subject``, unless it already starts with a reply prefix (RFC 5322
    section 3.6.5; Re, and Antw/AW/SV as Dutch, German and Nordic mail clients write it)."""
    subject = " ".join(subject.split())
    if _REPLY_PREFIX.match(subject):
        return subject
    return f"Re: {subject}" if subject else "Re: (geen onderwerp)"


def thread_references(references: tuple[str, ...], message_id: str | None,
                      *more: str) -> tuple[str, ...]:
    """The References of a reply (RFC 5322 section 3.6.4): the parent's References (or its
    In-Reply-To), then its Message-ID, then ``more``; duplicates dropped, at most
    :data:`MAX_REFERENCES` ids (the first and the newest)."""
    out: list[str] = []
    for i in (*references, message_id, *more):
        if i and i not in out:
            out.append(i)
    if len(out) > MAX_REFERENCES:
        out = out[:1] + out[-(MAX_REFERENCES - 1):]
    return tuple(out)


@dataclass(frozen=True)
class Letter:
    """One mail to compose. ``auto_submitted``: ``auto-replied`` for a receipt (an answer
    to a mail), ``auto-generated`` for an alert (RFC 3834 section 5)."""

    from_addr: str
    from_name: str
    to: tuple[str, ...]
    subject: str
    body: str
    message_id: str  # without <>
    date: datetime  # aware
    auto_submitted: str = "auto-generated"
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


def compose(letter: Letter) -> bytes:
    """The message as bytes with CRLF line ends, 7-bit clean (quoted-printable UTF-8 body,
    RFC 2047 encoded words in headers), so any relay takes it without SMTPUTF8/8BITMIME.

    Besides ``Auto-Submitted`` it carries ``X-Auto-Response-Suppress: All`` (asks Microsoft
    Exchange/Outlook not to send out-of-office or read receipts back).
    """
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((letter.from_name, letter.from_addr)) if letter.from_name \
        else letter.from_addr
    msg["To"] = ", ".join(letter.to)
    msg["Subject"] = " ".join(letter.subject.split())
    msg["Date"] = format_datetime(letter.date)
    msg["Message-ID"] = f"<{letter.message_id}>"
    if letter.in_reply_to:
        msg["In-Reply-To"] = f"<{letter.in_reply_to}>"
    if letter.references:
        msg["References"] = " ".join(f"<{r}>" for r in letter.references)
    msg["Auto-Submitted"] = letter.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    body = letter.body if letter.body.endswith("\n") else letter.body + "\n"
    msg.set_content(body, charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = "nl"  # after set_content, which replaces Content-* fields
    return msg.as_bytes()
