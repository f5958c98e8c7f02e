"""Subscriber list kept by WhatsApp keywords, with the AVG promises kept (issue 3)."""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone

from daemon import bridge
from helpers import MAILS, now_of, read_outbox, write_config

NUMBER = "+31612345678"


def inbound(cfg, text, number="06-12345678", msg_id=None):
    args = ["inbound", number, text] + (["--id", msg_id] if msg_id else [])
    return bridge(cfg, *args).stdout.strip()


def test_subscribe_notice_stop_resubscribe(tmp_path):
    cfg = write_config(tmp_path)
    reply = inbound(cfg, "Ja ik wil storingsberichten van CBG Connect ontvangen.", msg_id="m1")
    assert "STOP" in reply
    assert "al aangemeld" in inbound(cfg, "ja ik wil storingsberichten ontvangen", msg_id="m2")
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "1"
    bridge(cfg, "ingest", str(MAILS / "01-storing-nieuw.eml"), "--now", now_of(MAILS / "01-storing-nieuw.eml"))
    bridge(cfg, "dispatch")
    to_number = [m for m in read_outbox(tmp_path) if m["to"] == NUMBER]
    assert [m["notice_id"] for m in to_number] == [None, None, 1]  # two replies, one notice

    reply = inbound(cfg, "STOP", msg_id="m3")
    assert reply and "afgemeld" in reply.lower()
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"
    bridge(cfg, "ingest", str(MAILS / "02-storing-update.eml"), "--now", now_of(MAILS / "02-storing-update.eml"))
    bridge(cfg, "dispatch")
    notices = [m for m in read_outbox(tmp_path) if m["notice_id"] is not None]
    assert len(notices) == 1, "no notice after STOP"

    inbound(cfg, "aanmelden", msg_id="m4")
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "1"
    bridge(cfg, "ingest", str(MAILS / "03-storing-opgelost.eml"), "--now", now_of(MAILS / "03-storing-opgelost.eml"))
    bridge(cfg, "dispatch")
    notices = [m for m in read_outbox(tmp_path) if m["notice_id"] is not None]
    assert len(notices) == 2


def test_duplicate_inbound_id_is_handled_once(tmp_path):
    cfg = write_config(tmp_path)
    inbound(cfg, "aanmelden", msg_id="wamid.A")
    assert "nothing done" in inbound(cfg, "STOP", msg_id="wamid.A")
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "1"


def test_unsubscribe_of_non_subscriber_stores_nothing(tmp_path):
    cfg = write_config(tmp_path)
    reply = inbound(cfg, "stop", msg_id="x1")
    assert reply
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"


def test_support_reply_at_most_once_per_window(tmp_path):
    cfg = write_config(tmp_path)
    first = inbound(cfg, "mijn internet doet het niet", msg_id="o1")
    assert "support@cbgconnect.nl" in first
    second = inbound(cfg, "internet stopt steeds", msg_id="o2")
    assert second.startswith("(no reply")
    other = inbound(cfg, "hallo?", number="0622222222", msg_id="o3")
    assert "support@cbgconnect.nl" in other
    # "internet stopt steeds" must not have unsubscribed or subscribed anyone
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"


def test_help_reply(tmp_path):
    cfg = write_config(tmp_path)
    reply = inbound(cfg, "HELP", msg_id="h1")
    assert "STOP" in reply and "support@cbgconnect.nl" in reply


def test_erasure_leaves_no_trace_in_database_or_logs(tmp_path):
    """After unsubscribing (and sending the confirmation), the number is nowhere."""
    from bridge import logs
    from bridge.app import App
    from bridge.config import load
    from bridge.core.models import InboundMessage
    from bridge.store import RawMail

    cfg = load(write_config(tmp_path))
    captured = io.StringIO()
    logs.setup("DEBUG", stream=captured)
    try:
        import asyncio

        app = App(cfg)
        now = datetime.now(timezone.utc)
        wamid = "false_31612345678@c.us_3EB0C767D26A1D8B4F21"  # ids can contain the number

        def msg(text, i):
            return InboundMessage(channel="console", sender=NUMBER, text=text,
                                  message_id=f"{wamid}{i}", received_at=now)

        app.inbound.handle(msg("Ja ik wil storingsberichten van CBG Connect ontvangen.", 1))
        app.pipeline.process(app.store.mails.add(
            RawMail((MAILS / "01-storing-nieuw.eml").read_bytes(), "cli")),
            now=datetime.fromisoformat(now_of(MAILS / "01-storing-nieuw.eml")))
        app.inbound.handle(msg("mijn internet doet het niet", 2))
        d = app.dispatcher
        d.acquire()
        asyncio.run(d.drain())
        app.inbound.handle(msg("Ik wil me afmelden", 3))
        asyncio.run(d.drain())  # the confirmation goes out, then the number leaves
        d.release()
        logging.getLogger("test").info("sent to %s and 0612345678 done", NUMBER)
        app.store.close()
    finally:
        logs.setup("WARNING")

    from bridge.core.phone import national_forms

    forms = {f.encode() for f in national_forms(NUMBER)} | {b"31612345678", b"0612345678"}
    for f in tmp_path.glob("bridge.db*"):
        data = f.read_bytes()
        for form in forms:
            assert form not in data, (f.name, form)
    text = captured.getvalue()
    assert "inbound from +316****5678" in text
    for form in forms:
        assert form.decode() not in text, form
    # the outbox file of the console channel is the "phone": it did receive the messages
    assert read_outbox(tmp_path)[-1]["to"] == NUMBER


def test_invalid_number_refused(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "inbound", "12", "aanmelden", check=False)
    assert p.returncode == 1 and p.stderr.startswith("bridge: ")


def test_unreachable_subscriber_is_removed_after_n_reports(tmp_path):
    from bridge.app import App
    from bridge.config import load

    cfg = load(write_config(tmp_path, extra="[inbound]\nunreachable_after = 2\n"))
    app = App(cfg)
    sub, _ = app.store.subscribers.add(NUMBER, "console", "cli:test")
    app.inbound.unreachable(sub.id, app.store.subscribers.unreachable(sub.id))
    assert app.store.subscribers.count() == 1
    app.inbound.unreachable(sub.id, app.store.subscribers.unreachable(sub.id))
    assert app.store.subscribers.count() == 0
    app.store.close()


def test_replies_that_change_nothing_are_rate_limited(tmp_path):
    """Two bots answering each other never loop: help / already / not subscribed once a day."""
    cfg = write_config(tmp_path)
    assert "STOP" in inbound(cfg, "info", msg_id="b1")
    assert inbound(cfg, "info", msg_id="b2").startswith("(no reply")
    assert inbound(cfg, "stop", msg_id="b3")
    assert inbound(cfg, "stop", msg_id="b4").startswith("(no reply")
    assert "STOP" in inbound(cfg, "aanmelden", msg_id="b5")  # a change: always confirmed
    assert inbound(cfg, "aanmelden", msg_id="b6")
    assert inbound(cfg, "aanmelden", msg_id="b7").startswith("(no reply")


def test_reply_to_a_non_subscriber_keeps_no_message_id(tmp_path):
    from bridge.app import App
    from bridge.config import load

    app = App(load(write_config(tmp_path)))
    did = app.store.deliveries.add_reply(to_addr=NUMBER, channel="console", text="x",
                                         name="unsubscribed", subscriber_id=None)
    app.store.deliveries.claim(1)
    app.store.deliveries.mark_sent_many([("wamid.HBgLMzE2MTIzNDU2Nzg", did)], [])
    row = app.store.db.one("SELECT * FROM deliveries WHERE id=?", (did,))
    assert row["state"] == "sent" and row["provider_id"] is None and row["to_addr"] is None
    app.store.close()
