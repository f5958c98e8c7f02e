"""A subscriber is a person, not a number (issue 12): several ids (number, Cloud API BSUID,
whatsapp-web.js @lid), linked when a message or status pairs them, followed through
identity changes, and all erased on STOP.

The Cloud API's own payloads (w01, w01b) are turned into the events the Cloud edge will
hand over (an IdentityChange, InboundMessages with the BSUID); the parsing of the webhook
itself is the edge's and is tested there (tests/test_cloud_inbound.py: signed webhook POSTs
of the same cases to the running web server).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import MAILS, read_outbox, sample_now, write_config

from bridge.app import App
from bridge.config import load
from bridge.core.models import IdentityChange, IdPairing, InboundMessage
from bridge.store import RawMail

DATA = Path(__file__).parent / "data" / "whatsapp"
NUMBER = "+31612345678"
BSUID = "NL.1502576394655843"
LID = "140000000001101"


@pytest.fixture
def app(tmp_path):
    a = App(load(write_config(tmp_path)))
    yield a
    a.store.close()


def msg(text: str, mid: str, sender: str = NUMBER, *, alternates=(), user_id=None,
        channel: str = "console", kind: str = "text") -> InboundMessage:
    return InboundMessage(channel=channel, sender=sender, text=text, message_id=mid,
                          received_at=datetime.now(timezone.utc), alternates=tuple(alternates),
                          user_id=user_id, kind=kind)


def send_all(app: App) -> None:
    d = app.dispatcher
    d.acquire()
    try:
        asyncio.run(d.drain())
    finally:
        d.release()


def db_bytes(tmp_path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(tmp_path.glob("bridge.db*")))


SUBSCRIBE = "Ja ik wil storingsberichten van CBG Connect ontvangen."


# -- one person, several ids -----------------------------------------------------------------------
def test_ids_a_message_pairs_are_linked_and_any_of_them_finds_the_person(app):
    app.inbound.handle(msg(SUBSCRIBE, "m1"))
    app.inbound.handle(msg("hallo", "m2", alternates=[f"lid:{LID}"], user_id=BSUID))
    sub = app.store.subscribers.get(NUMBER)
    assert set(sub.ids) == {NUMBER, f"user:{BSUID}", f"lid:{LID}"}
    assert sub.user_id == BSUID and sub.number == NUMBER
    for ident in (NUMBER, f"user:{BSUID}", f"lid:{LID}"):
        assert app.store.subscribers.get(ident).id == sub.id
    assert app.inbound.handle(msg("aanmelden", "m3", sender=f"lid:{LID}")).effect == \
        "already_subscribed"


def test_a_subscriber_known_only_by_lid_gets_the_number_as_address_once_it_is_known(app):
    app.inbound.handle(msg(SUBSCRIBE, "m1", sender=f"lid:{LID}", channel="mqtt"))
    assert app.store.subscribers.get(f"lid:{LID}").number == f"lid:{LID}"
    app.inbound.handle(msg("hoi", "m2", sender=NUMBER, alternates=[f"lid:{LID}"], channel="mqtt"))
    assert app.store.subscribers.get(f"lid:{LID}").number == NUMBER


def test_two_subscribers_of_one_person_are_merged_and_a_notice_goes_once(app):
    subs = app.store.subscribers
    first, _ = subs.add(NUMBER, "cloud", "wamid.a", at=1000.0)
    second, _ = subs.add(f"user:{BSUID}", "cloud", "wamid.b", at=2000.0)
    app.pipeline.process(app.store.mails.add(
        RawMail(sample_now("01"), "cli")))
    assert app.store.deliveries.pending() == 2
    app.inbound.handle(msg("hallo", "m1", user_id=BSUID, channel="cloud"))
    assert subs.count() == 1
    kept = subs.get(f"user:{BSUID}")
    assert kept.id == first.id and kept.consent_ref == "wamid.a"  # the earlier consent
    assert set(kept.ids) == {NUMBER, f"user:{BSUID}"}
    assert app.store.deliveries.pending() == 1 + 1  # one notice, one support reply


def test_a_status_that_pairs_ids_links_them_but_stores_nothing_for_strangers(app, tmp_path):
    subs = app.store.subscribers
    subs.add(NUMBER, "cloud", "wamid.a")
    assert app.inbound.pair(IdPairing("cloud", (NUMBER, f"user:{BSUID}"))).effect == "linked"
    assert subs.get(f"user:{BSUID}").number == NUMBER
    r = app.inbound.pair(IdPairing("cloud", ("+31622222222", "user:NL.999")))
    assert r.effect == "not_linked"
    app.store.db.scrub()
    assert b"31622222222" not in db_bytes(tmp_path) and b"NL.999" not in db_bytes(tmp_path)


# -- erasure: every id of the person ---------------------------------------------------------------
@pytest.mark.parametrize("stop_from", ["number", "bsuid", "lid"])
def test_stop_from_any_id_erases_every_id_of_the_person(tmp_path, stop_from):
    """After STOP from an id of each kind, and once the confirmation has been sent, a byte
    scan of the database files (WAL included) finds no id of the person."""
    from bridge.core.phone import national_forms

    app = App(load(write_config(tmp_path)))
    sender = {"number": NUMBER, "bsuid": f"user:{BSUID}", "lid": f"lid:{LID}"}[stop_from]
    app.inbound.handle(msg(SUBSCRIBE, f"false_{LID}@lid_A1", sender=f"lid:{LID}",
                           alternates=[NUMBER]))
    app.inbound.handle(msg("info", "wamid.HBgLMzE2MTIzNDU2NzgA2", user_id=BSUID))
    app.pipeline.process(app.store.mails.add(
        RawMail(sample_now("01"), "cli")))
    send_all(app)
    assert set(app.store.subscribers.get(NUMBER).ids) == {NUMBER, f"user:{BSUID}", f"lid:{LID}"}
    before = db_bytes(tmp_path)
    assert all(x in before for x in (b"31612345678", BSUID.encode(), LID.encode()))  # the scan sees
    r = app.inbound.handle(msg("STOP", "m-stop", sender=sender))
    assert r.effect == "unsubscribed"
    send_all(app)  # the confirmation goes out, then the address leaves
    app.store.close()
    data = db_bytes(tmp_path)
    forms = national_forms(NUMBER) | {"31612345678", BSUID, LID}
    for form in forms:
        assert form.encode() not in data, form
    assert read_outbox(tmp_path)[-1]["to"] == sender and "afgemeld" in read_outbox(tmp_path)[-1]["text"]


# -- identity changes (w01, w01b) ------------------------------------------------------------------
def w01_change() -> IdentityChange:
    """The event the Cloud edge hands over for w01 (system message user_changed_number)."""
    m = json.loads((DATA / "w01-nummer-gewijzigd.json").read_text())[
        "entry"][0]["changes"][0]["value"]["messages"][0]
    sysm = m["system"]
    return IdentityChange(
        channel="cloud", kind="number",
        old=("+" + m["from"], "user:" + sysm["previous_user_id"]),
        new=("+" + sysm["wa_id"], "user:" + sysm["user_id"]),
        event_id=m["id"], received_at=datetime.fromtimestamp(int(m["timestamp"]), timezone.utc))


def w01b_stop() -> InboundMessage:
    m = json.loads((DATA / "w01b-stop-nieuw-nummer.json").read_text())[
        "entry"][0]["changes"][0]["value"]["messages"][0]
    return InboundMessage(channel="cloud", sender="+" + m["from"], text=m["text"]["body"],
                          message_id=m["id"], received_at=datetime.now(timezone.utc),
                          user_id=m["from_user_id"])


def test_w01_number_change_moves_the_subscription_and_erases_the_old_number(tmp_path, caplog):
    app = App(load(write_config(tmp_path)))
    old, old_uid = "+31611110501", "user:NL.5000000000000000001"
    app.inbound.handle(msg(SUBSCRIBE, "wamid.C05sub", sender=old, user_id=old_uid[5:],
                           channel="cloud"))
    app.pipeline.process(app.store.mails.add(
        RawMail(sample_now("01"), "cli")))  # a notice waits
    caplog.set_level(logging.INFO, logger="bridge.inbound")
    r = app.inbound.identity_change(w01_change())
    assert r.effect == "identity_moved"
    assert app.inbound.identity_change(w01_change()).effect == "duplicate"
    sub = app.store.subscribers.get("+31611110502")
    assert sub.number == "+31611110502"
    assert set(sub.ids) == {"+31611110502", "user:NL.5000000000000000002"}
    assert app.store.subscribers.get(old) is None
    assert app.store.subscribers.get(old_uid) is None
    pending = app.store.db.execute(
        "SELECT to_addr FROM deliveries WHERE state='pending' AND notice_id IS NOT NULL"
    ).fetchall()
    assert [r[0] for r in pending] == ["+31611110502"]  # the waiting notice follows
    assert b"31611110501" not in db_bytes(tmp_path)
    assert "31611110501" not in caplog.text and "+316****0501" in caplog.text

    # w01b: STOP from the new number unsubscribes the person
    assert app.inbound.handle(w01b_stop()).effect == "unsubscribed"
    send_all(app)
    app.store.close()
    data = db_bytes(tmp_path)
    for ident in (b"31611110501", b"31611110502", b"NL.5000000000000000001",
                  b"NL.5000000000000000002"):
        assert ident not in data, ident


def test_user_id_change_moves_the_business_scoped_id(app):
    app.store.subscribers.add(NUMBER, "cloud", "wamid.a", user_id="NL.OLD1")
    ev = IdentityChange(channel="cloud", kind="user_id", old=("user:NL.OLD1",),
                        new=("user:NL.NEW2", NUMBER), event_id="wamid.sys2",
                        received_at=datetime.now(timezone.utc))
    assert app.inbound.identity_change(ev).effect == "identity_moved"
    sub = app.store.subscribers.get(NUMBER)
    assert set(sub.ids) == {NUMBER, "user:NL.NEW2"}
    assert app.store.subscribers.get("user:NL.OLD1") is None


def test_identity_change_of_a_stranger_stores_nothing(app, tmp_path):
    ev = IdentityChange(channel="cloud", kind="number", old=("+31633333333",),
                        new=("+31644444444",), event_id="wamid.sys3",
                        received_at=datetime.now(timezone.utc))
    assert app.inbound.identity_change(ev).effect == "identity_unknown"
    app.store.db.scrub()
    data = db_bytes(tmp_path)
    assert b"31633333333" not in data and b"31644444444" not in data


def test_an_old_number_in_the_consent_message_id_is_masked_on_a_number_change(app):
    old = "+31611110501"
    app.inbound.handle(msg(SUBSCRIBE, "false_31611110501@c.us_3EB0AA", sender=old,
                           channel="mqtt"))
    ev = IdentityChange(channel="mqtt", kind="number", old=(old,), new=("+31611110502",),
                        event_id="sys-1", received_at=datetime.now(timezone.utc))
    app.inbound.identity_change(ev)
    sub = app.store.subscribers.get("+31611110502")
    assert sub.consent_ref == "false_316****0501@c.us_3EB0AA"


async def test_channels_hand_every_event_to_the_same_callable(app):
    """ChannelContext.inbound takes messages, identity changes and pairings alike."""
    assert (await app.inbound(msg(SUBSCRIBE, "m1"))).effect == "subscribed"
    assert (await app.inbound(IdPairing("console", (NUMBER, f"lid:{LID}")))).effect == "linked"
    ev = IdentityChange(channel="console", kind="number", old=(NUMBER,),
                        new=("+31699999999",), event_id="e1",
                        received_at=datetime.now(timezone.utc))
    assert (await app.inbound(ev)).effect == "identity_moved"


# -- an opt-out that matches no one ----------------------------------------------------------------
async def test_unmatched_stop_reply_warning_and_metric(app, caplog):
    from bridge.metrics import Metrics

    caplog.set_level(logging.INFO, logger="bridge.inbound")
    r = app.inbound.handle(msg("STOP", "x1", sender="user:NL.77777777"))
    assert r.effect == "not_subscribed"
    assert "geen aanmelding vinden" in r.reply and "support@cbgconnect.nl" in r.reply
    r = app.inbound.handle(msg("niet meer sturen aub", "x2", sender="user:NL.77777777"))
    assert r.effect == "not_subscribed_suppressed"  # no second reply within the window ...
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 2  # ... but the operator hears of both
    assert all("user:NL.…" in w.getMessage() and "77777777" not in w.getMessage()
               for w in warnings)
    assert app.store.subscribers.unmatched_optouts()[0] == 2
    m = Metrics(app)
    text = (await m.render()).decode()
    assert "bridge_unmatched_optouts_total 2.0" in text


def test_migration_moves_the_business_scoped_ids_into_subscriber_ids(tmp_path):
    """A store from before (schema 4, user_id column) keeps every subscriber and id."""
    import sqlite3

    from bridge.store import Store
    from bridge.store.db import MIGRATIONS, _split_sql

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        for stmt in _split_sql(script):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=4")
    conn.execute("INSERT INTO subscribers (number, channel, consent_at, consent_ref, user_id)"
                 " VALUES ('+31612345678', 'cloud', 1.0, 'wamid.a', 'NL.1')")
    conn.execute("INSERT INTO subscribers (number, channel, consent_at, consent_ref, user_id)"
                 " VALUES ('user:NL.2', 'cloud', 2.0, 'wamid.b', NULL)")
    conn.close()
    store = Store.open(path)
    try:
        a = store.subscribers.get("user:NL.1")
        assert (a.number, set(a.ids), a.user_id) == ("+31612345678", {"+31612345678", "user:NL.1"},
                                                      "NL.1")
        assert store.subscribers.get("user:NL.2").ids == ("user:NL.2",)
        cols = [r[1] for r in store.db.execute("PRAGMA table_info(subscribers)")]
        assert "user_id" not in cols and "consent_wording" in cols
    finally:
        store.close()


def test_number_change_to_a_number_that_is_already_subscribed_keeps_one_subscription(app, tmp_path):
    subs = app.store.subscribers
    subs.add("+31611110501", "cloud", "wamid.old", at=1000.0)
    subs.add("+31611110502", "cloud", "wamid.new", at=2000.0)
    app.pipeline.process(app.store.mails.add(
        RawMail(sample_now("01"), "cli")))
    ev = IdentityChange(channel="cloud", kind="number", old=("+31611110501",),
                        new=("+31611110502",), event_id="wamid.sys9",
                        received_at=datetime.now(timezone.utc))
    assert app.inbound.identity_change(ev).effect == "identity_moved"
    assert subs.count() == 1
    sub = subs.get("+31611110502")
    assert sub.ids == ("+31611110502",) and sub.consent_ref == "wamid.old"
    rows = app.store.db.execute("SELECT to_addr FROM deliveries WHERE state='pending'").fetchall()
    assert [r[0] for r in rows] == ["+31611110502"]  # the notice goes once, to the new number
    assert b"31611110501" not in db_bytes(tmp_path)
