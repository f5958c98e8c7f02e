"""Who may send: the allow-list decision for one parsed mail (pure).

The allow-list trusts the From header; a mail with more than one From header is rejected.
With ``require_dmarc_pass`` it also asks for proof that the From is not forged: an
``Authentication-Results`` header (RFC 8601) added by our own mail server (``authserv_id``)
with ``dmarc=pass`` and ``header.from`` the From domain, or ``dkim=pass`` with a signing
domain aligned with it. Anyone can write such a header into a mail, so only the block of
headers at the top that all name one of our servers counts (our MTA and its milters add one
each; below the first header of another server anything may be forged), and in it, per
method, the topmost report. For a forward the check is on the forwarder, the From of the
mail we received: the original inside carries only what the forwarder put there.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres

from bridge.core.models import Envelope, ParsedMail


@dataclass(frozen=True)
class SenderRules:
    """Allow-list entries are full addresses ("a@b.nl") or domains ("kpn.com" or "@kpn.com",
    which also cover subdomains such as "wholesale.kpn.com")."""

    kpn: tuple[str, ...] = ("kpn.com", "kpn.nl")
    forwarders: tuple[str, ...] = ()
    source: str = "kpn"  # the name incidents are threaded under, with the ticket id
    # Demand our mail server's Authentication-Results with a DMARC (or aligned DKIM) pass.
    require_dmarc_pass: bool = False
    authserv_id: tuple[str, ...] = ()  # our server's authserv-id(s), lower case


@dataclass(frozen=True)
class Verdict:
    """``allowed``: the mail may carry a report. ``review``: not allowed as a report, but
    from someone we trust (a listed forwarder writing in their own words): a person
    decides."""

    allowed: bool
    reason: str
    forwarded_by: str | None = None
    review: bool = False


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


# ---------------------------------------------------------------------------------------------
# Authentication-Results (RFC 8601)

_AUTH_RESULTS_CHARS_MAX = 8000  # characters of one header read; real ones are far shorter


@dataclass(frozen=True)
class AuthResult:
    """One ``method=result`` of an Authentication-Results header, with its properties."""

    method: str  # "dmarc", "dkim", "spf", ... (lower case, without a /version)
    result: str  # "pass", "fail", "none", ... (lower case)
    props: tuple[tuple[str, str], ...] = ()  # ("header.from", "kpn.com"), keys lower case

    def prop(self, key: str) -> str:
        return next((v for k, v in self.props if k == key), "")

    def __str__(self) -> str:
        shown = [f"{k}={v}" for k, v in self.props if k in ("header.from", "header.d")]
        return f"{self.method}={self.result}" + (f" ({' '.join(shown)})" if shown else "")


def parse_auth_results(value: str) -> tuple[str, tuple[AuthResult, ...]]:
    """(authserv-id in lower case, results) of one Authentication-Results header value,
    parsed by ``authres``.

    ``"mx.example.nl; dkim=pass header.d=kpn.com; dmarc=pass (p=reject) header.from=kpn.com"``
    gives ``("mx.example.nl", (dkim=pass, dmarc=pass))``; ``"mx.example.nl; none"`` no results.
    A header that does not parse gives ``("", ())``: no server of ours, so it ends the block
    of trusted headers and proves nothing.
    """
    try:
        header = authres.AuthenticationResultsHeader.parse(
            "Authentication-Results: " + value[:_AUTH_RESULTS_CHARS_MAX])
    except Exception:  # authres raises its own SyntaxError and others on malformed input
        return "", ()
    results = tuple(
        AuthResult(str(r.method).lower().split("/")[0], str(r.result).lower(),
                   tuple((f"{p.type}.{p.name}".lower(), str(p.value).lower())
                         for p in r.properties))
        for r in header.results)
    return str(header.authserv_id or "").lower(), results


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().strip(".").lower()


def _aligned(d: str, domain: str) -> bool:
    """Relaxed alignment of a DKIM signing domain with the From domain: the same domain, or
    one inside the other (no public-suffix list: a bare top-level domain never aligns)."""
    d = _domain(d)
    if "." not in d or not domain:
        return False
    return d == domain or domain.endswith("." + d) or d.endswith("." + domain)


_Block = list[tuple[str, tuple[AuthResult, ...]]]  # (authserv-id, results) per header


def _our_block(headers: tuple[str, ...], ids: tuple[str, ...]) -> _Block:
    """The parsed headers of the contiguous block at the top whose authserv-id is ours.

    It ends at the first header of another server: what is below that was in the mail before
    it reached a hop we do not know, so it may be forged, even when it names our server.
    """
    block: _Block = []
    for header in headers:
        authserv, results = parse_auth_results(header)
        if authserv not in ids:
            break
        block.append((authserv, results))
    return block


def _topmost(block: _Block, method: str) -> tuple[AuthResult, ...]:
    """The ``method`` results of the topmost header in ``block`` that reports that method.

    Our server adds its headers above what the mail brought along, so for each method the
    topmost report is our server's; one of the same id further down (which our server
    should have removed) cannot overrule it.
    """
    for _, results in block:
        found = tuple(r for r in results if r.method == method)
        if found:
            return found
    return ()


def authentication_problem(env: Envelope, rules: SenderRules) -> str | None:
    """Why ``env``'s From is not vouched for by our own mail server, or ``None`` when it is.

    Only the block of Authentication-Results headers at the top whose authserv-ids are all
    in ``rules.authserv_id`` counts (an MTA with separate SPF, DKIM and DMARC milters adds a
    header for each). Of that block, for DMARC and for DKIM, the topmost header reporting it
    counts. The From is vouched for by ``dmarc=pass`` with ``header.from`` equal to the From
    domain, or, when the DMARC result is not decisive (none, an error, no DMARC check at
    all), by ``dkim=pass`` with ``header.d`` aligned with the From domain. A ``dmarc=fail``,
    or a DMARC result for another domain, is never overruled by a DKIM pass.
    """
    ids = tuple(i.lower() for i in rules.authserv_id)
    names = " or ".join(ids) or "(no authserv_id set)"
    domain = _domain(env.from_addr) if "@" in env.from_addr else ""
    block = _our_block(env.auth_results, ids)
    if not block:
        if any(parse_auth_results(h)[0] in ids for h in env.auth_results):
            top = parse_auth_results(env.auth_results[0])[0] or "(no authserv-id)"
            return (f"the topmost Authentication-Results header is from {top}, not {names};"
                    " headers below another server's do not count (list every receiving"
                    " server's authserv-id in authserv_id)")
        return f"no Authentication-Results header from {names}"
    authserv = block[0][0]
    dmarc = _topmost(block, "dmarc")
    dkim = _topmost(block, "dkim")
    for r in dmarc:
        if r.result == "pass" and domain and _domain(r.prop("header.from")) == domain:
            return None
    for r in dmarc:
        other = r.prop("header.from") and _domain(r.prop("header.from")) != domain
        if r.result == "fail" or other:
            return (f"the Authentication-Results of {authserv} give {r}"
                    f" for {domain or '(no domain)'}")
    if domain and any(r.result == "pass" and _aligned(r.prop("header.d"), domain) for r in dkim):
        return None
    found = ", ".join(map(str, dmarc + dkim or tuple(r for _, rs in block for r in rs))) or "none"
    if any(r.result == "pass" for r in dmarc):
        found += " (a dmarc=pass counts only with header.from naming the From domain)"
    return (f"the Authentication-Results of {authserv} show no dmarc=pass or aligned"
            f" dkim=pass for {domain or '(no domain)'}: {found}")


# ---------------------------------------------------------------------------------------------
# The decision


def authorise(mail: ParsedMail, rules: SenderRules) -> Verdict:
    """A KPN sender is allowed as is; a listed forwarder only with a KPN original inside
    (without a forwarded mail it goes to review: ``review`` is set).

    With ``rules.require_dmarc_pass`` the From of the mail as received (the KPN sender, or the
    forwarder) must also pass :func:`authentication_problem`. A mail (or attached original)
    with more than one From header is always rejected: which one counts would depend on the
    reader, a classic way to pass a check on one From and show another.
    """
    for what, env in (("the mail", mail.outer), ("the forwarded original", mail.original)):
        if env is not None and env.from_count > 1:
            return Verdict(False, f"{what} has {env.from_count} From headers")
    verdict = _listed(mail, rules)
    if (verdict.allowed or verdict.review) and rules.require_dmarc_pass:
        problem = authentication_problem(mail.outer, rules)
        if problem is not None:
            return Verdict(False, f"{verdict.reason}, but {problem}")
    return verdict


def _listed(mail: ParsedMail, rules: SenderRules) -> Verdict:
    sender = mail.outer.from_addr or "(no sender)"
    if mail.outer.from_addr and listed(mail.outer.from_addr, rules.kpn):
        return Verdict(True, f"from KPN sender {sender}")
    if mail.outer.from_addr and listed(mail.outer.from_addr, rules.forwarders):
        if mail.original is None:
            # A trusted person writing in their own words (about an outage, perhaps): not a
            # report the bridge can read, but not to be thrown away either.
            return Verdict(False, f"forwarder {sender} sent no forwarded KPN mail"
                                  " (their own words; an operator decides)", review=True)
        orig = mail.original.from_addr or "(unknown sender)"
        if listed(orig, rules.kpn):
            return Verdict(True, f"forwarded by {sender} from KPN sender {orig}", sender)
        return Verdict(False, f"forwarded by {sender}, but the original is from {orig},"
                              " not a listed KPN sender")
    return Verdict(False, f"sender {sender} is not on the allow-list")


def envelope_allowed(address: str, rules: SenderRules) -> bool:
    """SMTP MAIL FROM check: a KPN sender or a listed forwarder."""
    return listed(address, rules.kpn) or listed(address, rules.forwarders)
