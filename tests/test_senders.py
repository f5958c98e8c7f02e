"""Who may send: the allow-list of KPN senders and forwarders, and the opt-in check of the
receiving server's Authentication-Results (pure)."""

import dataclasses

import pytest

from bridge.core import senders
from bridge.core.mail import parse_mail
from bridge.core.models import Envelope, ParsedMail
from bridge.core.senders import SenderRules, authorise, envelope_allowed, listed
from helpers import OUR_MX, raw_mail

# --- the allow-list ---------------------------------------------------------------------------

RULES = SenderRules(kpn=("kpn.com", "storingen@kpn-partner.example"),
                    forwarders=("support@isp.example",))


def env(addr: str, *auth: str) -> Envelope:
    e = Envelope(from_addr=addr, from_name="", subject="s", date=None, message_id=None)
    return dataclasses.replace(e, auth_results=tuple(auth)) if auth else e


def mail(outer, original=None):
    return ParsedMail(outer=env(outer), original=env(original) if original else None,
                      forward="inline" if original else None, text="")


def test_domain_entries_cover_subdomains_but_not_lookalikes():
    assert listed("noc@wholesale.kpn.com", ("kpn.com",))
    assert listed("noc@kpn.com", ("@kpn.com",))
    assert not listed("noc@evilkpn.com", ("kpn.com",))
    assert not listed("noc@kpn.com.evil.example", ("kpn.com",))


def test_address_entries_match_exactly():
    assert listed("storingen@kpn-partner.example", RULES.kpn)
    assert not listed("other@kpn-partner.example", RULES.kpn)


def test_kpn_sender_allowed():
    assert authorise(mail("a@wholesale.kpn.com"), RULES).allowed


def test_forward_needs_listed_forwarder_and_kpn_original():
    ok = authorise(mail("support@isp.example", "a@kpn.com"), RULES)
    assert ok.allowed and ok.forwarded_by == "support@isp.example"
    v = authorise(mail("support@isp.example", "boss@example.org"), RULES)
    assert not v.allowed and "not a listed KPN sender" in v.reason
    v = authorise(mail("support@isp.example"), RULES)
    assert not v.allowed and "no forwarded" in v.reason
    v = authorise(mail("random@example.org", "a@kpn.com"), RULES)
    assert not v.allowed and "not on the allow-list" in v.reason


def test_envelope_check():
    assert envelope_allowed("x@kpn.com", RULES)
    assert envelope_allowed("support@isp.example", RULES)
    assert not envelope_allowed("", RULES)
    assert not envelope_allowed("facturen@leverancier.example", RULES)


# --- the opt-in Authentication-Results check (senders.require_dmarc_pass) ---------------------


def checked() -> SenderRules:
    return SenderRules(kpn=("kpn.com",), forwarders=("support@cbgconnect.nl",),
                       require_dmarc_pass=True, authserv_id=(OUR_MX,))


def direct(addr: str, *auth: str) -> ParsedMail:
    return ParsedMail(outer=env(addr, *auth), original=None, forward=None, text="")


def forwarded(forwarder: str, auth: tuple[str, ...], inner_auth: tuple[str, ...] = ()) -> ParsedMail:
    return ParsedMail(outer=env(forwarder, *auth), original=env("storingen@kpn.com", *inner_auth),
                      forward="attachment", text="")


PASS = f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com; dkim=pass header.d=kpn.com; dmarc=pass (p=reject dis=none) header.from=kpn.com"


def test_check_is_off_by_default():
    rules = SenderRules(kpn=("kpn.com",))
    assert rules.require_dmarc_pass is False
    assert authorise(direct("storingen@kpn.com"), rules).allowed


@pytest.mark.parametrize("header", [
    PASS,
    f"{OUR_MX};\r\n\tdmarc=pass header.from=kpn.com",
    f"{OUR_MX} 1; dmarc=PASS (policy=reject) header.from=\"kpn.com\"",
    f"{OUR_MX.upper()}; dkim=pass (2048-bit key) header.d=kpn.com header.s=sel; dmarc=none",
    f"{OUR_MX}; dkim=pass header.d=mail.kpn.com header.i=@mail.kpn.com",  # relaxed alignment
])
def test_pass_from_our_server_allows(header):
    assert senders.authentication_problem(env("storingen@kpn.com", header), checked()) is None
    assert authorise(direct("storingen@kpn.com", header), checked()).allowed


@pytest.mark.parametrize("headers, why", [
    ((), "no Authentication-Results"),
    ((PASS.replace(OUR_MX, "mx.attacker.example"),), "no Authentication-Results"),
    ((f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com; dkim=fail header.d=kpn.com; dmarc=fail "
      "header.from=kpn.com",), "dmarc=fail"),
    ((f"{OUR_MX}; dkim=pass header.d=attacker.example; dmarc=fail header.from=kpn.com",),
     "dmarc=fail"),
    ((f"{OUR_MX}; dmarc=pass header.from=attacker.example",), "dmarc=pass"),
    ((f"{OUR_MX}; dkim=pass header.d=evilkpn.com",), "dkim=pass"),
    ((f"{OUR_MX}; none",), "none"),
    ((f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com",), "spf=pass"),
    # dmarc=pass only inside a comment or a quoted value is no pass
    ((f"{OUR_MX}; dmarc=fail (dmarc=pass) reason=\"dmarc=pass\" header.from=kpn.com",),
     "dmarc=fail"),
    # the topmost header of our server counts; a forged "pass" further down does not
    ((f"{OUR_MX}; dmarc=fail header.from=kpn.com", PASS), "dmarc=fail"),
])
def test_missing_or_failed_authentication_is_rejected(headers, why):
    problem = senders.authentication_problem(env("storingen@kpn.com", *headers), checked())
    assert problem is not None and why in problem
    verdict = authorise(direct("storingen@kpn.com", *headers), checked())
    assert not verdict.allowed
    assert OUR_MX in verdict.reason and "storingen@kpn.com" in verdict.reason


def test_only_our_block_at_the_top_counts():
    # a header of another server on top: ours below it may be forged (list every receiving
    # server's authserv-id in authserv_id)
    verdict = authorise(direct("storingen@kpn.com", "imap.cbgconnect.nl; none", PASS), checked())
    assert not verdict.allowed and "topmost" in verdict.reason and "authserv_id" in verdict.reason
    # ours, then another server, then a "pass" naming ours: the block ends at the other one
    headers = (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com", "relay.example; none", PASS)
    assert not authorise(direct("storingen@kpn.com", *headers), checked()).allowed
    # listing the other server makes it part of the block
    rules = dataclasses.replace(checked(), authserv_id=(OUR_MX, "imap.cbgconnect.nl"))
    assert authorise(direct("storingen@kpn.com", "imap.cbgconnect.nl; none", PASS), rules).allowed


@pytest.mark.parametrize("headers", [
    # Postfix with separate milters: one header each, SPF on top
    (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com",
     f"{OUR_MX}; dkim=pass header.d=kpn.com header.s=sel",
     f"{OUR_MX}; dmarc=pass (p=reject dis=none) header.from=kpn.com"),
    (f"{OUR_MX}; spf=pass smtp.mailfrom=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
    (f"mx2.cbgconnect.nl; spf=pass smtp.mailfrom=kpn.com",
     f"{OUR_MX}; dmarc=pass header.from=kpn.com"),
])
def test_every_header_of_our_block_counts(headers):
    rules = dataclasses.replace(checked(), authserv_id=(OUR_MX, "mx2.cbgconnect.nl"))
    assert authorise(direct("storingen@kpn.com", *headers), rules).allowed


@pytest.mark.parametrize("headers, why", [
    # our dmarc=fail on top is not overruled by a forged pass below it, DKIM or DMARC
    ((f"{OUR_MX}; dmarc=fail header.from=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
     "dmarc=fail"),
    ((f"{OUR_MX}; dkim=fail header.d=kpn.com", f"{OUR_MX}; dkim=pass header.d=kpn.com"),
     "dkim=fail"),
    # dmarc=pass counts only with header.from naming the From domain
    ((f"{OUR_MX}; dmarc=pass",), "dmarc=pass"),
    ((f"{OUR_MX}; dmarc=pass header.from=kpn.com.attacker.example",), "dmarc=pass"),
])
def test_our_block_is_read_per_method(headers, why):
    problem = senders.authentication_problem(env("storingen@kpn.com", *headers), checked())
    assert problem is not None and why in problem, problem


def test_dmarc_pass_without_header_from_needs_an_aligned_dkim_pass():
    header = f"{OUR_MX}; dkim=pass header.d=kpn.com; dmarc=pass"
    assert authorise(direct("storingen@kpn.com", header), checked()).allowed


def test_a_second_from_header_is_rejected():
    raw = raw_mail("Ticketnummer: INC000012345678\r\n", from_="storingen@kpn.com",
                   headers=f"Authentication-Results: {OUR_MX}; dmarc=pass header.from=kpn.com\r\n"
                           "From: a@attacker.example\r\n")
    parsed = parse_mail(raw)
    assert parsed.outer.from_count == 2
    for rules in (checked(), SenderRules(kpn=("kpn.com",))):
        verdict = authorise(parsed, rules)
        assert not verdict.allowed and "2 From headers" in verdict.reason
    assert parse_mail(raw_mail("x", from_="storingen@kpn.com")).outer.from_count == 1


def test_forward_is_checked_on_the_forwarder():
    ours = f"{OUR_MX}; dkim=pass header.d=cbgconnect.nl; dmarc=pass header.from=cbgconnect.nl"
    ok = authorise(forwarded("support@cbgconnect.nl", (ours,)), checked())
    assert ok.allowed and ok.forwarded_by == "support@cbgconnect.nl"
    # a forged forwarder: no pass for cbgconnect.nl, even with a KPN "pass" inside
    v = authorise(forwarded("support@cbgconnect.nl", (), inner_auth=(PASS,)), checked())
    assert not v.allowed and "support@cbgconnect.nl" in v.reason
    # the original inside is not checked: its headers are whatever the forwarder sent
    assert authorise(forwarded("support@cbgconnect.nl", (ours,), inner_auth=()), checked()).allowed
