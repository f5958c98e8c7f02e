"""Receipts to the forwarder (issue 13): who gets one (RFC 3834, no backscatter, no loops),
and, end to end, a mail forwarded by SMTP into the running daemon gets a threaded Dutch
receipt through a real relay (aiosmtpd with STARTTLS and AUTH) for each outcome, a
follow-up when its review item is decided, and nothing when it must not."""

from __future__ import annotations

import smtplib

import pytest

from daemon import Daemon, bridge, wait_for
from helpers import free_port, read_outbox, sample, sample_now, write_config
from smtp_relay import SmtpRelay

from bridge.core.senders import SenderRules
from bridge.mailout.compose import is_ours, make_message_id
from bridge.mailout.headers import read_headers
from bridge.mailout.receipts import automatic_reason, receipt_to

FWD = "support@cbgconnect.example"
KPN = "storingsmeldingen@wholesale.kpn.example"
OURS = "storingsbridge@cbgconnect.example"
NUMBERS = ["+31611111111", "+31622222222"]
KEY = b"k" * 32
RULES = SenderRules(kpn=("kpn.com", "kpn.example"), forwarders=(FWD, "@cbgconnect.example"))


def forward(subject: str, body: str, mid: str, *, sender: str = FWD, headers: str = "",
            original_from: str = KPN) -> bytes:
    """An inline forward as Gmail writes it."""
    return (f"From: Support CBG <{sender}>\r\nTo: storingen-bridge@cbgconnect.example\r\n"
            f"Subject: Fwd: {subject}\r\nDate: Sat, 28 Nov 2026 12:20:11 +0100\r\n"
            f"Message-ID: <{mid}>\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Graag doorzetten.\r\n\r\n---------- Forwarded message ---------\r\n"
            f"From: KPN Wholesale Storingsdienst <{original_from}>\r\n"
            "Date: Sat, Nov 28, 2026 at 12:05 PM\r\n"
            f"Subject: {subject}\r\nTo: <noc@cbgconnect.example>\r\n\r\n{body}\r\n").encode()


NO_TICKET = "Beste partner,\r\n\r\nEr is iets aan de hand in Amersfoort. Meer informatie volgt.\r\n"


def plain(mid: str, *, sender: str = FWD, headers: str = "", subject: str = "Vraag",
          body: str = "Kun je dit naar de klanten sturen?") -> bytes:
    return (f"From: <{sender}>\r\nTo: storingen-bridge@cbgconnect.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{mid}>\r\n{headers}"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def who(data: bytes, *, source: str = "smtp", envelope_from: str | None = FWD,
        copy_to: str | None = None, rules: SenderRules = RULES):
    return receipt_to(read_headers(data), source=source, envelope_from=envelope_from,
                      senders=rules, is_ours=lambda m: is_ours(m, KEY), our_from=OURS,
                      copy_to=copy_to)


# -- who gets a receipt (pure) -----------------------------------------------------------------
def test_a_listed_forwarder_gets_one():
    r = who(sample("06"))
    assert r.to == (FWD,) and r.bcc == () and r.why_not is None


def test_never_a_kpn_address_even_when_listed_as_forwarder():
    rules = SenderRules(kpn=("kpn.example",), forwarders=("kpn.example", FWD))
    r = who(sample("01"), envelope_from=KPN, rules=rules)
    assert not r.anyone and "KPN address" in r.why_not


def test_never_an_unknown_sender_nor_two_from_headers():
    r = who(plain("a@x", sender="someone@elders.example"))
    assert not r.anyone and "not a listed forwarder" in r.why_not
    two = b"From: <support@cbgconnect.example>\r\nFrom: <boss@elders.example>\r\n" \
          b"Message-ID: <b@x>\r\nSubject: x\r\n\r\nx\r\n"
    r = who(two)
    assert not r.anyone and "2 From headers" in r.why_not


@pytest.mark.parametrize("headers,envelope,why", [
    ("Auto-Submitted: auto-replied\r\n", FWD, "Auto-Submitted"),
    ("Auto-Submitted: auto-generated; owner-email=x@y\r\n", FWD, "Auto-Submitted"),
    ("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n", FWD, "DSN"),
    ("Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n",
     FWD, "MDN"),
    ("", "", "null reverse-path"),
    ("Return-Path: <>\r\n", None, "null reverse-path"),
    ("Precedence: bulk\r\n", FWD, "bulk"),
    ("List-Id: <storingen.lists.example>\r\n", FWD, "mailing list"),
    ("X-Autoreply: yes\r\n", FWD, "X-Autoreply"),
    ("X-Auto-Response-Suppress: OOF, AutoReply\r\n", FWD, "no automatic replies"),
])
def test_never_an_automatic_mail(headers, envelope, why):
    data = (f"From: <{FWD}>\r\nMessage-ID: <m@x>\r\nSubject: Re: storing\r\n{headers}\r\n"
            "x\r\n").encode()
    h = read_headers(data)
    assert why in (automatic_reason(h, envelope) or "")
    assert not who(data, envelope_from=envelope).anyone


@pytest.mark.parametrize("subject", ["Automatisch antwoord: Storing", "Automatic reply: x",
                                     "Out of Office: x", "Afwezig: terug op maandag"])
def test_never_an_out_of_office(subject):
    assert "out-of-office" in who(plain("o@x", subject=subject)).why_not


def test_auto_submitted_no_is_a_person():
    data = plain("p@x", headers="Auto-Submitted: no\r\n")
    assert automatic_reason(read_headers(data), FWD) is None


def test_never_our_own_mail_nor_an_answer_to_it():
    ours = make_message_id(KEY, "abc123", "cbgconnect.example")
    for data in (plain(ours), plain("r@x", headers=f"In-Reply-To: <{ours}>\r\n"),
                 plain("f@x", sender=OURS)):
        r = who(data, copy_to="archief@cbgconnect.example")
        assert not r.anyone and ("our own" in r.why_not or "answers one of our" in r.why_not)
    # another key's id is not ours
    assert not is_ours(make_message_id(b"x" * 32, "abc123", "cbgconnect.example"), KEY)
    assert not is_ours(ours.replace("sb.abc123", "sb.abc124"), KEY)


def test_never_a_mail_taken_in_by_hand():
    assert not who(sample("06"), source="cli", copy_to="archief@x.example").anyone


def test_the_copy_address_gets_a_copy_and_every_other_mail():
    copy = "archief@cbgconnect.example"
    r = who(sample("06"), copy_to=copy)
    assert r.to == (FWD,) and r.bcc == (copy,)
    r = who(sample("01"), envelope_from=KPN, copy_to=copy)  # KPN itself: only the copy
    assert r.to == (copy,) and "KPN address" in r.why_not


# --- the reason in Dutch (mailout/reasons.py) -------------------------------------------------


def test_every_reason_the_golden_mails_give_has_a_dutch_sentence(tmp_path):
    """A receipt and the console's review page explain a review or a rejection in Dutch: each
    reason the pipeline gives for the golden mails, as of their own moment and a month later
    (stale), has a Dutch sentence. A new reason without one fails here."""
    import json
    from datetime import datetime, timedelta
    from pathlib import Path

    from bridge.app import App
    from bridge.config import load
    from bridge.mailout.reasons import in_dutch
    from helpers import now_of

    app = App(load(write_config(tmp_path)))
    untold, told = [], set()
    for f in sorted((Path(__file__).parent / "golden").glob("*/*.eml")):
        spec = f.with_suffix(".json")
        when = (json.loads(spec.read_text(encoding="utf-8")).get("now") if spec.exists()
                else None) or now_of(f)
        moment = datetime.fromisoformat(when)
        if moment.tzinfo is None:
            moment = moment.astimezone()
        for now in (moment, moment + timedelta(days=30)):
            p = app.pipeline.preview(f.read_bytes(), now=now)
            if p.outcome in ("review", "rejected"):
                text = in_dutch(p.reason)
                if text is None:
                    untold.append(f"{f.parent.name}/{f.name}: {p.reason}")
                else:
                    told.add(text[:25])
    assert untold == []
    assert len(told) >= 12, told  # the corpus reaches the review rules, automatic mail, senders


def test_a_reason_in_dutch_keeps_its_details():
    from bridge.mailout.reasons import in_dutch

    assert in_dutch(
        "stale mail: dated 2026-11-26 14:00 (Europe/Amsterdam), 3 days before it was "
        "processed; more than review.max_mail_age_hours (6 h), so its facts may no longer "
        "hold; decoding: body charset iso-8859-1 did not fit, read as utf-8") == (
        "De mail is van 26-11-2026 14:00 en was 3 dagen oud toen de bridge hem las; dat is meer"
        " dan 6 uur (review.max_mail_age_hours), dus wat erin staat klopt misschien niet meer."
        " Een collega beoordeelt hem.")
    assert "34 uur 22 min oud" in in_dutch(
        "stale mail: dated 2026-11-28 07:20 (Europe/Amsterdam), 34 h 22 min before it was "
        "processed; more than review.max_mail_age_hours (6 h), so its facts may no longer hold")
    assert in_dutch("a forwarded out-of-office reply (subject 'Automatisch antwoord:')") == (
        "De doorgestuurde mail is een automatisch antwoord (afwezigheidsbericht), geen"
        " storingsmelding van KPN; zo'n mail gaat nooit naar klanten. Herkend aan: subject"
        " 'Automatisch antwoord:'.")
    assert "eindigde 28-11-2026 06:00" in in_dutch(
        "maintenance window already over: it ended 2026-11-28 06:00 (Europe/Amsterdam), "
        "before the mail was processed")
    assert "niets nieuws" in in_dutch(
        "outage update names no place, service or time, and says nothing new compared with "
        "the incident's previous report")
    assert in_dutch("something the bridge never says") is None


def test_dmarc_required_only_a_vouched_for_forwarder():
    rules = SenderRules(kpn=RULES.kpn, forwarders=RULES.forwarders, require_dmarc_pass=True,
                        authserv_id=("mx.cbgconnect.example",))
    assert "not vouched for" in who(sample("06"), rules=rules).why_not
    ok = (b"Authentication-Results: mx.cbgconnect.example; dmarc=pass"
          b" header.from=cbgconnect.example\r\n") + sample_now("06")
    assert who(ok, rules=rules).to == (FWD,)


# -- end to end --------------------------------------------------------------------------------
PASSWORD = "geheim"


def start_daemon(tmp_path, relay: SmtpRelay, extra: str = "") -> Daemon:
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port, extra=relay.config(extra=extra))
    bridge(cfg, "subscribers", "add", *NUMBERS)
    return Daemon(cfg, port=port, env={"BRIDGE_TEST_RELAY_PASSWORD": PASSWORD}).start()


def send(port: int, data: bytes, sender: str = FWD) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, ["storingen-bridge@cbgconnect.example"], data)


@pytest.fixture
def relay():
    r = SmtpRelay(tls=True, auth=("bridge", PASSWORD)).start()
    yield r
    r.stop()


@pytest.fixture
def daemon(tmp_path, relay):
    d = start_daemon(tmp_path, relay)
    yield d
    if d.alive():
        assert d.stop() == 0, d.log()


def unfold(value) -> str:
    return " ".join(str(value).split())


def quoted(text: str) -> str:
    """The notice text as the receipt quotes it."""
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def test_a_receipt_for_each_outcome_threaded_to_the_forwarded_mail(daemon, relay, tmp_path):
    # queued: the forward of a new outage
    send(daemon.port, sample_now("06"))
    [r] = relay.wait(1)
    m = r.message
    assert r.tls and r.login == "bridge"  # STARTTLS, then AUTH
    assert r.mail_from == OURS and r.rcpt_tos == [FWD]
    assert m["To"] == FWD and m["From"] == f"Storingsbridge <{OURS}>"
    original = "<179586476379.10032.2702190945848034359@cbgconnect.example>"
    assert m["In-Reply-To"] == original and m["References"] == original
    assert unfold(m["Subject"]) == ("Re: FW: Storingsmelding KPN: Internet en VoIP - Amersfoort"
                                    " (INC000012345678) - Nieuw")
    assert m["Auto-Submitted"] == "auto-replied"
    assert is_ours_domain(m["Message-ID"])
    sent = wait_for(lambda: len(read_outbox(tmp_path)) >= 2 and read_outbox(tmp_path))
    assert "melding 1 gaat naar 2 abonnees" in r.body
    assert quoted(sent[0]["text"]) in r.body  # the notice text, as the customers get it
    assert "Ticket: INC000012345678" in r.body

    # duplicate: a colleague forwards the same KPN mail again
    again = sample_now("06").replace(b"179586476379.10032", b"179586476379.55555")
    send(daemon.port, again)
    r = relay.wait(2)[1]
    assert r.message["In-Reply-To"] == original.replace("10032", "55555")
    assert "niets naar de klanten verstuurd: het is een herhaling" in r.body
    assert "Dezelfde melding ging al eerder uit: melding 1, verstuurd op" in r.body
    assert quoted(sent[0]["text"]) in r.body

    # review: no ticket and no status in the forwarded mail (twice: one approved, one not)
    send(daemon.port, forward("Melding Amersfoort", NO_TICKET, "review-1@cbgconnect.example"))
    send(daemon.port, forward("Melding Leusden", NO_TICKET, "review-2@cbgconnect.example"))
    r3, r4 = relay.wait(4)[2:4]
    assert r3.message["In-Reply-To"] == "<review-1@cbgconnect.example>"
    assert unfold(r3.message["Subject"]) == "Re: Fwd: Melding Amersfoort"
    assert "wacht op controle door een collega (controle 1)" in r3.body
    assert "geen ticketnummer en geen status" in r3.body  # why, in Dutch
    assert "no ticket and no status found in the mail" in r3.body  # and as the log says it
    assert "bridge review approve 1" in r3.body  # no console_url: the commands
    assert "controle 2" in r4.body

    # rejected: the forwarder forwarded a mail that is not from KPN
    foreign = (sample_now("06")
               .replace(b"storingsmeldingen@wholesale.kpn.example", b"noc@elders.example")
               .replace(b"179586476379.10032.2702190945848034359@cbgconnect.example",
                        b"vraag@cbgconnect.example"))
    send(daemon.port, foreign)
    r = relay.wait(5)[4]
    assert r.message["In-Reply-To"] == "<vraag@cbgconnect.example>"
    assert unfold(r.message["Subject"]).startswith("Re: FW: Storingsmelding KPN")
    assert "Je mail is niet verwerkt" in r.body and "niet van een bekend KPN-adres" in r.body

    # the review items are decided with the CLI (another process): the daemon mails that
    bridge(daemon.config, "review", "approve", "1")
    bridge(daemon.config, "review", "reject", "2")
    followups = relay.wait(7)[5:7]
    by_item = {("controle 1" in f.body): f for f in followups}
    ok, no = by_item[True], by_item[False]
    assert ok.message["In-Reply-To"] == "<review-1@cbgconnect.example>"
    assert ok.message["References"].split() == ["<review-1@cbgconnect.example>",
                                                r3.message["Message-ID"]]
    assert unfold(ok.message["Subject"]) == "Re: Fwd: Melding Amersfoort"
    assert "is goedgekeurd: melding 2 gaat naar 2 abonnees" in ok.body
    assert no.message["References"].split()[-1] == r4.message["Message-ID"]
    assert "(controle 2) is afgewezen: er gaat niets naar de klanten" in no.body
    assert len({f.message["Message-ID"] for f in relay.messages}) == 7
    assert all(f.rcpt_tos == [FWD] for f in relay.messages)


def is_ours_domain(message_id: str) -> bool:
    return message_id.startswith("<sb.") and message_id.endswith("@cbgconnect.example>")


def test_no_receipt_to_kpn_unknown_senders_automatic_mail_or_ourselves(daemon, relay):
    send(daemon.port, plain("first@cbgconnect.example"))  # rejected: gets a receipt
    [first] = relay.wait(1)
    ours = first.message["Message-ID"].strip("<>")
    send(daemon.port, sample_now("01"), sender=KPN)  # KPN itself (queued)
    send(daemon.port, plain("u@x", sender="iemand@elders.example"))  # From not a forwarder
    send(daemon.port, plain("oof@x", subject="Automatisch antwoord: Storing",
                            headers="Auto-Submitted: auto-replied\r\n"))
    send(daemon.port, plain("dsn@x", headers="Content-Type: multipart/report;"
                            " report-type=delivery-status; boundary=b\r\n"))
    send(daemon.port, plain("re@x", subject="Re: Vraag", headers=f"In-Reply-To: <{ours}>\r\n"))
    send(daemon.port, plain(ours))  # our own receipt, come back
    send(daemon.port, plain("last@cbgconnect.example"))  # rejected: gets a receipt
    got = relay.wait(2)
    assert got[1].message["In-Reply-To"] == "<last@cbgconnect.example>"
    assert daemon.stop() == 0
    assert len(relay.messages) == 2  # the mails in between were all processed before it
    log = daemon.log()
    for why in ("is a KPN address (never answered)", "iemand@elders.example is not a listed"
                " forwarder", "Auto-Submitted: auto-replied", "delivery status notification",
                "answers one of our own mails", "one of our own mails (Message-ID)"):
        assert f"no receipt: {why}" in log or why in log, why


def test_a_relay_that_is_down_delays_the_receipt_and_loses_none(tmp_path):
    relay = SmtpRelay().start()  # plain SMTP, no AUTH: the other test covers those
    d = start_daemon(tmp_path, relay)
    try:
        relay.stop()
        send(d.port, sample_now("06"))
        wait_for(lambda: "mail-out: relay 127.0.0.1" in d.log() and "1 mails wait" in d.log(),
                 what="a failed try")
        assert relay.messages == []
        relay.start()  # the same port again
        [r] = relay.wait(1, timeout=30)
        assert r.message["In-Reply-To"] == \
            "<179586476379.10032.2702190945848034359@cbgconnect.example>"
        assert "melding 1 gaat naar 2 abonnees" in r.body
    finally:
        assert d.stop() == 0, d.log()
        relay.stop()
    assert len(relay.messages) == 1  # sent once, not once per try
    assert "connect:" in d.log()
