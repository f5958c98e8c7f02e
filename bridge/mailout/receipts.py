"""Who gets a receipt for a mail, or why nobody does (pure).

A receipt answers the person who sent us the mail, so the rules of RFC 3834 (automatic
responses) apply, and a few of our own against backscatter:

- only a listed forwarder (``[senders] forwarders``) gets one: never a KPN address (even
  one that is also listed as a forwarder), never an unknown sender, never a mail with more
  than one From; with ``require_dmarc_pass`` only a From our own mail server vouched for;
- never an automatic mail (RFC 3834 section 2): ``Auto-Submitted`` other than ``no``, a
  delivery or disposition report (DSN, RFC 3464; MDN, RFC 8098; ``multipart/report``,
  RFC 6522), the null reverse-path (RFC 5321 section 4.5.5), ``Precedence: bulk/junk/list``,
  a mailing list (``List-Id``), ``X-Autoreply``-style headers, a sender asking for no
  automatic answers (``X-Auto-Response-Suppress``), or an out-of-office subject;
- never our own mail, or an answer to ours (our Message-IDs are keyed, see
  :mod:`bridge.mailout.compose`), nor a mail from our own From address;
- never a mail taken in by hand (``bridge ingest``): the operator saw the outcome.

``receipts_copy_to`` (optional) gets a copy of every receipt and a receipt for every other
mail too, whoever sent it: it is our own address, so only loops and hand-ingested mails
are excluded there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from bridge.core.models import Envelope
from bridge.core.senders import SenderRules, authentication_problem, listed
from bridge.mailout.headers import MailHeaders

# Subjects of out-of-office and other automatic replies, as mail clients write them
# (Outlook in Dutch and English, Gmail/Apple vacation replies, German and French clients).
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatisch antwoord|automatisch bericht|automatic reply|auto[- ]?reply|autoreply"
    r"|out of (the )?office|afwezigheidsbericht|afwezig|niet aanwezig|abwesenheitsnotiz"
    r"|automatische antwort|r[ée]ponse automatique|auto:)", re.IGNORECASE)
_SUPPRESS = {"all", "oof", "autoreply"}  # X-Auto-Response-Suppress values that cover us
# A report (RFC 6522), or a bare delivery/disposition/feedback report as the whole mail
_REPORTS = ("multipart/report", "message/delivery-status", "message/disposition-notification",
            "message/feedback-report")


def automatic_reason(h: MailHeaders, envelope_from: str | None) -> str | None:
    """Why the mail is itself an automatic one (never answered), or None.

    ``envelope_from``: the SMTP MAIL FROM as received ('' for ``<>``), None when unknown
    (IMAP: then ``Return-Path`` tells, when the mail server wrote one).
    """
    if h.auto_submitted and h.auto_submitted.split(";")[0].strip().lower() != "no":
        return f"it is an automatic mail (Auto-Submitted: {h.auto_submitted})"
    if h.content_type in _REPORTS:
        kind = {"delivery-status": "a delivery status notification (DSN)",
                "disposition-notification": "a read receipt (MDN)"}.get(
            h.report_type or h.content_type.partition("/")[2],
            f"a report ({h.content_type})")
        return f"it is {kind}"
    if envelope_from == "" or h.return_path == "":
        return "it was sent with the null reverse-path (a bounce or notification)"
    if h.precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"it is bulk mail (Precedence: {h.precedence})"
    if h.list_id:
        return "it came through a mailing list (List-Id)"
    if h.x_autoreply:
        return "it is an automatic reply (X-Autoreply)"
    if h.auto_response_suppress and {v.strip().lower() for v in
                                     h.auto_response_suppress.split(",")} & _SUPPRESS:
        return f"the sender asks for no automatic replies (X-Auto-Response-Suppress:" \
               f" {h.auto_response_suppress})"
    if _AUTO_SUBJECT.match(h.subject):
        return "it is an out-of-office or automatic reply (subject)"
    return None


def own_mail_reason(h: MailHeaders, is_ours: Callable[[str | None], bool],
                    our_from: str) -> str | None:
    """Why the mail is one of ours or an answer to one of ours, or None."""
    if is_ours(h.message_id):
        return "it is one of our own mails (Message-ID)"
    if any(is_ours(i) for i in h.in_reply_to):
        return "it answers one of our own mails (In-Reply-To)"
    if our_from and our_from in h.from_addrs:
        return f"it is from our own address {our_from}"
    return None


@dataclass(frozen=True)
class ReceiptTo:
    """Who gets the receipt: ``to`` (the forwarder, or the copy address when the
    forwarder gets none), ``bcc`` (the copy address besides the forwarder), and why the
    sender gets none (None when they do)."""

    to: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    why_not: str | None = None

    @property
    def anyone(self) -> bool:
        return bool(self.to)


def receipt_to(h: MailHeaders, *, source: str, envelope_from: str | None,
               senders: SenderRules, is_ours: Callable[[str | None], bool], our_from: str,
               copy_to: str | None = None, forwarders_too: bool = True) -> ReceiptTo:
    """Who gets a receipt for the mail with header ``h`` (see the module doc).

    ``source``: where the mail came from (smtp, imap, cli); ``forwarders_too=False`` sends
    receipts only to ``copy_to`` (``[mail_out] receipts = false``).
    """
    if source == "cli":
        return ReceiptTo(why_not="it was taken in by hand (bridge ingest)")
    own = own_mail_reason(h, is_ours, our_from)
    if own:
        return ReceiptTo(why_not=own)
    why = _why_not_forwarder(h, envelope_from, senders) if forwarders_too \
        else "receipts to forwarders are off"
    copy = (copy_to,) if copy_to else ()
    if why is None:
        return ReceiptTo(to=(h.sender,), bcc=tuple(c for c in copy if c != h.sender))
    return ReceiptTo(to=copy, why_not=why)


def _why_not_forwarder(h: MailHeaders, envelope_from: str | None,
                       senders: SenderRules) -> str | None:
    if h.from_count != 1 or len(h.from_addrs) != 1:
        return f"it has {h.from_count} From headers and {len(h.from_addrs)} addresses in them"
    sender = h.sender
    if listed(sender, senders.kpn):
        return f"{sender} is a KPN address (never answered)"
    if not listed(sender, senders.forwarders):
        return f"{sender} is not a listed forwarder"
    auto = automatic_reason(h, envelope_from)
    if auto:
        return auto
    if senders.require_dmarc_pass:
        env = Envelope(from_addr=sender, from_name="", subject=h.subject, date=None,
                       message_id=h.message_id, auth_results=h.auth_results,
                       from_count=h.from_count)
        problem = authentication_problem(env, senders)
        if problem:
            return f"the sender is not vouched for: {problem}"
    return None
