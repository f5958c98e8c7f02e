"""Who may send: the allow-list decision for one parsed mail (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models import ParsedMail


@dataclass(frozen=True)
class SenderRules:
    """Allow-list entries are full addresses ("a@b.nl") or domains ("kpn.com" or "@kpn.com",
    which also cover subdomains such as "wholesale.kpn.com")."""

    kpn: tuple[str, ...] = ("kpn.com", "kpn.nl")
    forwarders: tuple[str, ...] = ()
    source: str = "kpn"  # the name incidents are threaded under, with the ticket id


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    forwarded_by: str | None = None


def listed(address: str, entries: tuple[str, ...]) -> bool:
    address = address.strip().lower()
    if "@" not in address:
        return False
    domain = address.rsplit("@", 1)[1]
    for e in entries:
        if "@" in e.strip("@"):
            if address == e:
                return True
        else:
            d = e.lstrip("@")
            if domain == d or domain.endswith("." + d):
                return True
    return False


def authorise(mail: ParsedMail, rules: SenderRules) -> Verdict:
    """A KPN sender is allowed as is; a listed forwarder only with a KPN original inside."""
    sender = mail.outer.from_addr or "(no sender)"
    if mail.outer.from_addr and listed(mail.outer.from_addr, rules.kpn):
        return Verdict(True, f"from KPN sender {sender}")
    if mail.outer.from_addr and listed(mail.outer.from_addr, rules.forwarders):
        if mail.original is None:
            return Verdict(False, f"forwarder {sender} sent no forwarded KPN mail")
        orig = mail.original.from_addr or "(unknown sender)"
        if listed(orig, rules.kpn):
            return Verdict(True, f"forwarded by {sender} from KPN sender {orig}", sender)
        return Verdict(False, f"forwarded by {sender}, but the original is from {orig},"
                              " not a listed KPN sender")
    return Verdict(False, f"sender {sender} is not on the allow-list")


def envelope_allowed(address: str, rules: SenderRules) -> bool:
    """SMTP MAIL FROM check: a KPN sender or a listed forwarder."""
    return listed(address, rules.kpn) or listed(address, rules.forwarders)
