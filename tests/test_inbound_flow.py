"""Subscriber list kept by WhatsApp keywords (subscribe, STOP, help), with the AVG promises kept:
an unsubscribe erases the person without a trace, nothing is kept of people who are not
subscribed, replies are limited."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import datetime, timezone

from bridge.channels.base import SendResult
from bridge.outbox import Dispatcher
from daemon import bridge
from helpers import DISPATCH, MAILS, Scripted, now_of, read_outbox, run_cli, wait_until, write_config

NUMBER = "+31612345678"


def inbound(cfg, text, number="06-12345678", msg_id=None):
    args = ["inbound", number, text] + (["--id", msg_id] if msg_id else [])
    return bridge(cfg, *args).stdout.strip()


# --- subscribe and STOP -----------------------------------------------------------------------


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


# --- replies ----------------------------------------------------------------------------------


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


def test_the_help_reply_quotes_the_subscribe_sentence_once_without_an_extra_stop(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code, out, err = run_cli(capsys, "inbound", "0612345678", "help", "--config", str(cfg))
    assert code == 0, err
    assert 'Stuur: "Ja ik wil storingsberichten van CBG Connect ontvangen."\n' in out, out


# --- erasure ----------------------------------------------------------------------------------


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


async def test_failed_stop_confirmation_leaves_no_number_in_the_database_files(tmp_path):
    from bridge.app import App
    from bridge.config import load
    from bridge.core.models import InboundMessage
    from helpers import write_config

    number = "+31612345678"
    app = App(load(write_config(tmp_path)))

    def msg(text, i):
        return InboundMessage(channel="console", sender=number, text=text, message_id=f"m{i}",
                              received_at=datetime.now(timezone.utc))

    ch = Scripted()
    d = Dispatcher(DISPATCH, app.store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        app.inbound.handle(msg("aanmelden", 1))
        d.wake()
        assert await wait_until(lambda: app.store.deliveries.counts() == {"sent": 1})
        ch.script[number] = [SendResult("failed", error="131026 undeliverable")]
        app.inbound.handle(msg("STOP", 2))
        d.wake()
        assert await wait_until(lambda: app.store.deliveries.counts().get("failed") == 1)
        # while the daemon runs on, the number leaves the files soon (not at the next stop)
        def clean():
            return not [f.name for f in tmp_path.glob("bridge.db*")
                        if b"31612345678" in f.read_bytes()]
        assert await wait_until(clean, timeout=2)
    finally:
        stop.set()
        await task
        d.release()
        app.store.close()


# --- invalid and unreachable numbers ----------------------------------------------------------


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


# --- reply limits -----------------------------------------------------------------------------


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


# -- consent that proves itself; questions a bare "ja" answers (issue 12) ----------------------------
def _msg(text, mid, sender=NUMBER):
    from bridge.core.models import InboundMessage

    return InboundMessage(channel="console", sender=sender, text=text, message_id=mid,
                          received_at=datetime.now(timezone.utc))


def test_bare_ja_without_a_question_gets_the_help_reply_then_ja_subscribes(app):
    first = app.inbound.handle(_msg("Ja graag", "j1"))
    assert (first.kind, first.effect) == ("yes", "help")
    assert '"Ja ik wil storingsberichten van CBG Connect ontvangen."' in first.reply
    assert app.store.subscribers.count() == 0  # a bare "ja graag" no longer subscribes
    second = app.inbound.handle(_msg("ja", "j2"))
    assert second.effect == "subscribed"
    sub = app.store.subscribers.get(NUMBER)
    assert sub.consent_ref == "j2"
    assert sub.consent_wording == "answer 'ja' to the question of the help reply"
    # the question was answered: another "ja" answers nothing (the help reply, which
    # went out a moment ago, is not sent twice within the window)
    assert app.inbound.handle(_msg("ja", "j3")).effect == "help_suppressed"
    assert app.store.subscribers.count() == 1


def test_ja_after_the_opt_out_question_unsubscribes(app):
    app.inbound.handle(_msg("aanmelden", "k1"))
    q = app.inbound.handle(_msg("Hou op!", "k2"))
    assert q.effect == "confirm_stop"
    assert q.reply.startswith("Wil je geen storingsberichten meer? Stuur STOP.")
    assert app.store.subscribers.count() == 1  # not on a guess
    assert app.inbound.handle(_msg("ja graag", "k3")).effect == "unsubscribed"
    assert app.store.subscribers.count() == 0


def test_the_last_question_counts_and_expires_after_24_hours(app, monkeypatch):
    import bridge.store.hashes as hashes

    app.inbound.handle(_msg("aanmelden", "q1"))
    app.inbound.handle(_msg("help", "q2"))  # asks "Aanmelden?"
    app.inbound.handle(_msg("dit is spam", "q3"))  # then asks "Wil je geen ... meer?"
    assert app.inbound.handle(_msg("ja", "q4")).effect == "unsubscribed"  # the last one

    other = "+31622222222"
    app.inbound.handle(_msg("aanmelden", "q5", sender=other))
    app.inbound.handle(_msg("dit is spam", "q6", sender=other))
    later = hashes.now() + 24 * 3600 + 60
    monkeypatch.setattr(hashes, "now", lambda: later)
    r = app.inbound.handle(_msg("ja", "q7", sender=other))
    assert r.effect.startswith("help") and app.store.subscribers.count() == 1  # expired


def test_a_question_is_kept_only_as_a_keyed_hash(tmp_path, app):
    app.inbound.handle(_msg("verkeerd nummer", "h1"))  # a stranger: confirm question
    assert app.store.db.scalar("SELECT count(*) FROM questions") == 1
    d = app.dispatcher
    d.acquire()
    import asyncio

    asyncio.run(d.drain())
    d.release()
    app.store.db.scrub()
    data = b"".join(f.read_bytes() for f in tmp_path.glob("bridge.db*"))
    assert b"31612345678" not in data and b"0612345678" not in data


def test_consent_proof_names_the_wording_and_the_message_id(tmp_path):
    cfg = write_config(tmp_path)
    inbound(cfg, "Hallo! Ja ik wil storingsberichten van CBG Connect ontvangen 👍", msg_id="wamid.P1")
    inbound(cfg, "Aanmelden", number="0622222222", msg_id="wamid.P2")
    shown = bridge(cfg, "subscribers", "show", NUMBER).stdout
    assert "consent_message_id: wamid.P1" in shown
    assert ("consent_wording: wording 'ja ik wil storingsberichten van cbg connect ontvangen'"
            in shown), shown
    shown = bridge(cfg, "subscribers", "show", "0622222222").stdout
    assert "consent_message_id: wamid.P2" in shown and "keyword 'aanmelden'" in shown


def test_every_reply_to_a_message_that_is_not_a_keyword_says_how_to_stop(tmp_path, app):
    for i, text in enumerate(["mijn internet doet het niet", "verkeerd nummer", "ja",
                              "🎤", "niet meer sturen aub"]):
        r = app.inbound.handle(_msg(text, f"s{i}", sender=f"+3161111111{i}"))
        assert r.reply and "STOP" in r.reply, (text, r)
    # also when an operator's template forgets it
    import shutil

    from helpers import TEMPLATES
    from bridge.app import App
    from bridge.config import load

    own = tmp_path / "own-templates"
    shutil.copytree(TEMPLATES, own)
    (own / "replies" / "support.j2").write_text("Mail {{ org.support_email }}.\n")
    (tmp_path / "b").mkdir()
    path = write_config(tmp_path / "b")
    path.write_text(path.read_text().replace(str(TEMPLATES), str(own)))
    other = App(load(path))
    try:
        r = other.inbound.handle(_msg("mijn tv doet raar", "t1", sender="+31655555555"))
        assert r.reply == "Mail support@cbgconnect.nl.\nGeen storingsberichten meer? Stuur STOP."
    finally:
        other.store.close()
