"""Which mails may become a report (pure): the checks on a parsed mail before its report is
read, in the order the pipeline applies them.

1. An automatic mail (out-of-office reply, read receipt, bounce, ...; core.automatic) is
   rejected, whoever sent it: it is never a report, so it never reaches the incident and
   supersede work either.
2. The allow-list (core.senders): a mail not from a KPN sender, nor a KPN mail forwarded by
   a listed forwarder, is rejected.
3. A mail whose body gave no readable report (only an image, encrypted, an unreadable
   winmail.dat, empty; ``ParsedMail.unreadable``) goes to review, never to a notice built
   from its subject.
4. A listed forwarder's mail without a forwarded KPN mail (support writing in their own
   words) goes to review: a trusted person, but an operator decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.core.automatic import AutomaticRules, detect
from bridge.core.models import ParsedMail
from bridge.core.senders import SenderRules, authorise

__all__ = ["Admission", "admit"]


@dataclass(frozen=True)
class Admission:
    """``accept`` (read the report), ``review`` or ``rejected``, with the reason in words an
    operator understands; ``forwarded_by`` is the forwarder of an accepted forward."""

    outcome: Literal["accept", "review", "rejected"]
    reason: str
    forwarded_by: str | None = None


def admit(mail: ParsedMail, senders: SenderRules, automatic: AutomaticRules) -> Admission:
    """Decide whether ``mail``'s report is read (see the module docstring for the order)."""
    auto = detect(mail, automatic)
    if auto is not None:
        return Admission("rejected", auto.reason)
    verdict = authorise(mail, senders)
    if not verdict.allowed and not verdict.review:
        return Admission("rejected", verdict.reason)
    if mail.unreadable:
        where = " in the forwarded mail" if mail.original is not None else ""
        sender = mail.outer.from_addr or "(no sender)"
        return Admission("review", f"no readable report{where}: {mail.unreadable}"
                                   f" (mail from {sender})")
    if verdict.review:
        return Admission("review", verdict.reason)
    return Admission("accept", verdict.reason, verdict.forwarded_by)
