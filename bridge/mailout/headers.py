"""The header facts of a received mail that decide whether, and how, to answer it (pure).

Only the top-level header is read (the mail as it reached us: the forwarder's, not the
forwarded original's): who sent it, how to thread a reply to it, and the signs that it is
itself an automatic mail (RFC 3834 section 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import getaddresses

_MSG_ID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True)
class MailHeaders:
    """Facts of one mail's top-level header; addresses lower case, ids without ``<>``."""

    from_addrs: tuple[str, ...] = ()  # every address in every From header
    from_count: int = 0  # From header fields (RFC 5322 allows one)
    subject: str = ""  # decoded, unfolded, whitespace collapsed
    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    auto_submitted: str | None = None  # RFC 3834 section 5, as written
    content_type: str = "text/plain"  # lower case, without parameters
    report_type: str | None = None  # of a multipart/report (RFC 6522), lower case
    precedence: str | None = None  # lower case (non-standard, widely used: bulk, list, junk)
    list_id: str | None = None  # RFC 2919: mail from a mailing list
    auto_response_suppress: str | None = None  # Microsoft's X-Auto-Response-Suppress
    x_autoreply: bool = False  # X-Autoreply / X-Autorespond / X-Auto-Reply present
    return_path: str | None = None  # "" for the null reverse-path (Return-Path: <>)
    auth_results: tuple[str, ...] = ()  # Authentication-Results, topmost first, unfolded

    @property
    def sender(self) -> str:
        """The From address when there is exactly one, else ''."""
        return self.from_addrs[0] if self.from_count == 1 and len(self.from_addrs) == 1 else ""


def _text(value: object) -> str:
    raw = str(value or "")
    try:
        raw = str(make_header(decode_header(raw)))
    except Exception:  # an undecodable encoded-word stays as written
        pass
    return " ".join(raw.split())


def _ids(value: object) -> tuple[str, ...]:
    return tuple(_MSG_ID.findall(str(value or "")))


def read_headers(data: bytes) -> MailHeaders:
    """The facts of ``data``'s top-level header (at most the first 64 KiB are read).

    Never raises: an unreadable header gives empty facts (no sender: no receipt)."""
    try:
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(data[:65536])
    except Exception:
        return MailHeaders()
    froms = msg.get_all("From") or []
    addrs = tuple(a.strip().lower() for _, a in getaddresses([str(f) for f in froms]) if a.strip())
    ctype = (msg.get_content_type() or "text/plain").lower()
    report = msg.get_param("report-type") if ctype == "multipart/report" else None
    rp = msg.get("Return-Path")
    return_path = None
    if rp is not None:
        inner = str(rp).strip()
        return_path = inner[1:-1].strip().lower() if inner.startswith("<") and inner.endswith(">") \
            else inner.lower()
    mid = _ids(msg.get("Message-ID"))
    return MailHeaders(
        from_addrs=addrs,
        from_count=len(froms),
        subject=_text(msg.get("Subject")),
        message_id=mid[0] if mid else None,
        in_reply_to=_ids(msg.get("In-Reply-To")),
        references=_ids(" ".join(str(r) for r in msg.get_all("References") or [])),
        auto_submitted=_text(msg.get("Auto-Submitted")) or None,
        content_type=ctype,
        report_type=str(report).lower() if isinstance(report, str) else None,
        precedence=_text(msg.get("Precedence")).lower() or None,
        list_id=_text(msg.get("List-Id")) or None,
        auto_response_suppress=_text(msg.get("X-Auto-Response-Suppress")) or None,
        x_autoreply=any(msg.get(h) is not None
                        for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply")),
        return_path=return_path,
        auth_results=tuple(" ".join(str(v).split())
                           for v in msg.get_all("Authentication-Results") or []),
    )
