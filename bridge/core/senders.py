"""Who may send: the allow-list decision for one parsed mail (pure).

The allow-list trusts the From header. With ``require_dmarc_pass`` it also asks for proof
that the From is not forged: an ``Authentication-Results`` header (RFC 8601) added by our own
mail server (``authserv_id``) with ``dmarc=pass`` for the From domain, or ``dkim=pass`` with a
signing domain aligned with it. Anyone can write such a header into a mail, so only headers
naming our server count, and of those only the topmost (the last one added, by our server
when the mail came in). For a forward the check is on the forwarder, the From of the mail we
received: the original inside carries only what the forwarder put there.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# ---------------------------------------------------------------------------------------------
# Authentication-Results (RFC 8601)

_AUTH_RESULTS_MAX = 8000  # characters of one header read; real ones are far shorter


def _lex(value: str) -> list[list[str]]:
    """An Authentication-Results value as segments (split at ";") of tokens: words, quoted
    strings (unquoted) and "=". Comments in parentheses, also nested, are dropped."""
    segments: list[list[str]] = [[]]
    token: list[str] = []
    have = False  # a token is open (a quoted "" is a token too)
    depth = 0  # comment nesting
    quoted = False
    escaped = False

    def close() -> None:
        nonlocal token, have
        if have:
            segments[-1].append("".join(token))
        token, have = [], False

    for ch in value[:_AUTH_RESULTS_MAX]:
        if escaped:
            if not depth:
                token.append(ch)
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            if ch == '"':
                quoted = False
            else:
                token.append(ch)
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == "(":
            close()
            depth = 1
        elif ch == '"':
            quoted = have = True
        elif ch in ";=":
            close()
            if ch == ";":
                segments.append([])
            else:
                segments[-1].append("=")
        elif ch.isspace():
            close()
        else:
            token.append(ch)
            have = True
    close()
    return segments


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
    """(authserv-id in lower case, results) of one Authentication-Results header value.

    ``"mx.example.nl; dkim=pass header.d=kpn.com; dmarc=pass (p=reject) header.from=kpn.com"``
    gives ``("mx.example.nl", (dkim=pass, dmarc=pass))``; ``"mx.example.nl; none"`` no results.
    """
    segments = _lex(value)
    head = [t for t in segments[0] if t != "="]
    authserv = head[0].lower() if head else ""
    results: list[AuthResult] = []
    for seg in segments[1:]:
        pairs = []
        i = 0
        while i < len(seg):
            if i + 2 < len(seg) and seg[i + 1] == "=" and seg[i] != "=" and seg[i + 2] != "=":
                pairs.append((seg[i].lower(), seg[i + 2]))
                i += 3
            else:
                i += 1
        if pairs:
            (method, result), props = pairs[0], pairs[1:]
            results.append(AuthResult(method.split("/")[0], result.lower(),
                                      tuple((k, v.lower()) for k, v in props)))
    return authserv, tuple(results)


def _domain(value: str) -> str:
    return value.rsplit("@", 1)[-1].strip().strip(".").lower()


def _aligned(d: str, domain: str) -> bool:
    """Relaxed alignment of a DKIM signing domain with the From domain: the same domain, or
    one inside the other (no public-suffix list: a bare top-level domain never aligns)."""
    d = _domain(d)
    if "." not in d or not domain:
        return False
    return d == domain or domain.endswith("." + d) or d.endswith("." + domain)


def authentication_problem(env: Envelope, rules: SenderRules) -> str | None:
    """Why ``env``'s From is not vouched for by our own mail server, or ``None`` when it is.

    Only the topmost Authentication-Results header whose authserv-id is one of
    ``rules.authserv_id`` counts. It must hold ``dmarc=pass`` (for the From domain, when it
    names one in ``header.from``) or ``dkim=pass`` with ``header.d`` aligned with the From
    domain.
    """
    ids = tuple(i.lower() for i in rules.authserv_id)
    domain = _domain(env.from_addr) if "@" in env.from_addr else ""
    for header in env.auth_results:
        authserv, results = parse_auth_results(header)
        if authserv not in ids:
            continue
        for r in results:
            if r.result != "pass":
                continue
            if r.method == "dmarc" and domain and _domain(r.prop("header.from") or domain) == domain:
                return None
            if r.method == "dkim" and _aligned(r.prop("header.d"), domain):
                return None
        found = ", ".join(map(str, results)) or "none"
        return (f"the Authentication-Results of {authserv} show no dmarc=pass or aligned"
                f" dkim=pass for {domain or '(no domain)'}: {found}")
    return f"no Authentication-Results header from {' or '.join(ids) or '(no authserv_id set)'}"


# ---------------------------------------------------------------------------------------------
# The decision


def authorise(mail: ParsedMail, rules: SenderRules) -> Verdict:
    """A KPN sender is allowed as is; a listed forwarder only with a KPN original inside.

    With ``rules.require_dmarc_pass`` the From of the mail as received (the KPN sender, or the
    forwarder) must also pass :func:`authentication_problem`.
    """
    verdict = _listed(mail, rules)
    if verdict.allowed and rules.require_dmarc_pass:
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
