"""The allow-list decision (pure)."""

from bridge.core.models import Envelope, ParsedMail
from bridge.core.senders import SenderRules, authorise, envelope_allowed, listed

RULES = SenderRules(kpn=("kpn.com", "storingen@kpn-partner.example"),
                    forwarders=("support@isp.example",))


def env(addr):
    return Envelope(from_addr=addr, from_name="", subject="s", date=None, message_id=None)


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
