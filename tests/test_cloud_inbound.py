"""The Cloud API's inbound edge, through the real webhook: signed POSTs to the running web
server (tests/test_web.py's fixture), the real App and store behind it.

- ``system`` messages: a number change (w01) and a business-scoped id change move the
  subscription to the person's new id and erase the old one; then STOP from the new
  number (w01b) unsubscribes and nothing of the person is left in the database files;
- a status that names the number and the BSUID links them to the subscriber;
- message kinds: a caption counts as text, a voice note, contact card, location or an
  unsupported message gets the help reply;
- a value that holds only ``errors`` (w05): 200, a WARNING with the code, a metric.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from test_cloud import drain, queue_notice, subscribe
from test_web import inbound_body, statuses_body, web  # noqa: F401 - the fixture

from bridge.channels.cloud import parse_webhook
from bridge.core.models import IdentityChange, IdPairing, InboundMessage

DATA = Path(__file__).parent / "data" / "whatsapp"
SUBSCRIBE = "Ja ik wil storingsberichten van CBG Connect ontvangen."
OLD, NEW = "+31611110501", "+31611110502"
OLD_UID, NEW_UID = "NL.5000000000000000001", "NL.5000000000000000002"


def case(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def db_bytes(app) -> bytes:
    """The database files as they are on disk, once the WAL is checkpointed away."""
    app.store.db.scrub()
    path = app.store.db.path
    return b"".join(f.read_bytes() for f in sorted(path.parent.glob(path.name + "*")))


def from_number(doc: dict, number: str) -> dict:
    """``inbound_body``'s message, from ``number`` (digits, as Meta writes ``from``)."""
    value = doc["entry"][0]["changes"][0]["value"]
    value["messages"][0]["from"] = number
    value["contacts"][0]["wa_id"] = number
    return doc


def user_id_change(old_uid: str, new_uid: str, number: str | None, mid: str) -> dict:
    """A ``user_changed_user_id`` system message as Meta's reference shows it."""
    doc = case("w01-nummer-gewijzigd.json")
    m = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    m["id"] = mid
    if number:
        m["from"] = number.lstrip("+")
    else:
        del m["from"]
    m["system"] = {"body": "User Sanne's business-scoped user id changed",
                   "type": "user_changed_user_id", "user_id": new_uid,
                   "previous_user_id": old_uid}
    return doc


# -- identity changes (w01, w01b) ------------------------------------------------------------------
def test_w01_parses_to_the_identity_change_the_inbound_path_expects():
    p = parse_webhook(case("w01-nummer-gewijzigd.json"))
    assert p.statuses == [] and p.errors == [] and p.skipped == []
    (ev,) = p.messages
    assert isinstance(ev, IdentityChange)
    assert (ev.channel, ev.kind, ev.event_id) == ("cloud", "number", "wamid.C05sys")
    assert ev.old == (OLD, f"user:{OLD_UID}") and ev.new == (NEW, f"user:{NEW_UID}")
    assert ev.received_at.timestamp() == 1795943456
    # an older payload without the business-scoped ids still moves the number
    old_style = case("w01-nummer-gewijzigd.json")
    sysm = old_style["entry"][0]["changes"][0]["value"]["messages"][0]["system"]
    del sysm["user_id"], sysm["previous_user_id"]
    (ev,) = parse_webhook(old_style).messages
    assert ev.old == (OLD,) and ev.new == (NEW,)


async def test_w01_number_change_then_w01b_stop_from_the_new_number(web, caplog):
    app = web.app
    r = await web.post(from_number(inbound_body(SUBSCRIBE, user_id=OLD_UID,
                                                msg_id="wamid.C05sub"), OLD[1:]))
    assert r.status_code == 200
    sub = app.store.subscribers.get(OLD)
    assert set(sub.ids) == {OLD, f"user:{OLD_UID}"}
    await drain(app)  # the welcome reply goes out
    queue_notice(app)  # a notice waits for the person when the number changes

    caplog.set_level(logging.INFO)
    assert (await web.post(case("w01-nummer-gewijzigd.json"))).status_code == 200
    assert app.inbound.counts.get("identity_moved") == 1
    moved = app.store.subscribers.get(NEW)
    assert moved.id == sub.id and set(moved.ids) == {NEW, f"user:{NEW_UID}"}
    assert app.store.subscribers.get(OLD) is None
    assert app.store.subscribers.get(f"user:{OLD_UID}") is None
    pending = app.store.db.execute("SELECT to_addr FROM deliveries WHERE state='pending'")
    assert [r[0] for r in pending] == [NEW]  # the waiting notice follows the person
    assert (await web.post(case("w01-nummer-gewijzigd.json"))).status_code == 200  # repeated
    assert app.inbound.counts.get("duplicate") == 1
    assert b"31611110501" not in db_bytes(app) and OLD_UID.encode() not in db_bytes(app)
    assert "31611110501" not in caplog.text and "31611110502" not in caplog.text

    # w01b: STOP from the new number, with the new BSUID
    assert (await web.post(case("w01b-stop-nieuw-nummer.json"))).status_code == 200
    assert app.inbound.counts.get("unsubscribed") == 1
    assert app.store.subscribers.count() == 0
    await drain(app)  # the confirmation goes to the new number; then the address leaves
    assert "afgemeld" in web.fake.sends(NEW)[-1].body["text"]["body"]
    data = db_bytes(app)
    for ident in (b"31611110501", b"31611110502", OLD_UID.encode(), NEW_UID.encode()):
        assert ident not in data, ident


async def test_a_business_scoped_id_change_moves_the_id_and_keeps_the_number(web):
    app = web.app
    number = "+31612345678"
    await web.post(inbound_body(SUBSCRIBE, user_id="NL.OLD1", msg_id="wamid.s1"))
    assert set(app.store.subscribers.get(number).ids) == {number, "user:NL.OLD1"}
    r = await web.post(user_id_change("NL.OLD1", "NL.NEW2", number, "wamid.sys2"))
    assert r.status_code == 200 and app.inbound.counts.get("identity_moved") == 1
    sub = app.store.subscribers.get(number)
    assert set(sub.ids) == {number, "user:NL.NEW2"} and sub.number == number
    assert app.store.subscribers.get("user:NL.OLD1") is None
    assert b"NL.OLD1" not in db_bytes(app)
    # no number in the system message (a username user): the id moves all the same
    r = await web.post(user_id_change("NL.NEW2", "NL.NEW3", None, "wamid.sys3"))
    assert r.status_code == 200
    assert set(app.store.subscribers.get(number).ids) == {number, "user:NL.NEW3"}
    # STOP with only the newest id erases the person
    await web.post(inbound_body("STOP", sender=None, user_id="NL.NEW3", msg_id="wamid.s4"))
    assert app.store.subscribers.count() == 0


async def test_an_identity_change_of_a_stranger_stores_nothing(web):
    r = await web.post(case("w01-nummer-gewijzigd.json"))
    assert r.status_code == 200
    assert web.app.inbound.counts == {"identity_unknown": 1}
    data = db_bytes(web.app)
    assert b"31611110502" not in data and NEW_UID.encode() not in data


def test_system_messages_that_change_no_id_are_skipped_with_a_note():
    doc = case("w01-nummer-gewijzigd.json")
    m = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    m["system"] = {"body": "security code changed", "type": "customer_identity_changed"}
    p = parse_webhook(doc)
    assert p.messages == [] and "customer_identity_changed" in p.skipped[0]
    m["system"] = {"type": "user_changed_number"}  # no new number: nothing to move to
    p = parse_webhook(doc)
    assert p.messages == [] and "without the new number" in p.skipped[0]


# -- statuses pair the number with the BSUID -------------------------------------------------------
def status_with_ids(wamid: str, status: str, number: str | None, uid: str | None) -> dict:
    doc = statuses_body((wamid, status, None))
    s = doc["entry"][0]["changes"][0]["value"]["statuses"][0]
    s.pop("recipient_id", None)
    if number:
        s["recipient_id"] = number.lstrip("+")
    if uid:
        s["recipient_user_id"] = uid
    return doc


async def test_a_status_with_number_and_bsuid_links_them_to_the_subscriber(web):
    app = web.app
    number, uid = "+31611111001", "NL.7000000000000000001"
    subscribe(app, number, 1)
    queue_notice(app)
    await drain(app)
    (wamid,) = [s.answer.split()[1] for s in web.fake.accepted()]
    for status in ("sent", "delivered", "read"):
        r = await web.post(status_with_ids(wamid, status, number, uid))
        assert r.status_code == 200
    assert app.store.subscribers.get(f"user:{uid}").number == number
    assert app.inbound.counts.get("linked") == 1  # once, not per status
    state = app.store.db.scalar("SELECT state FROM deliveries WHERE provider_id=?", (wamid,))
    assert state == "read"
    # the person later writes with the BSUID only (a username): still the same subscriber
    await web.post(inbound_body("STOP", sender=None, user_id=uid, msg_id="wamid.u1"))
    assert app.store.subscribers.count() == 0


async def test_a_status_pairing_of_a_stranger_or_with_one_id_stores_nothing(web):
    app = web.app
    r = await web.post(status_with_ids("wamid.unknown", "delivered", "+31622220000",
                                       "NL.8000000000000000001"))
    assert r.status_code == 200 and app.inbound.counts == {"not_linked": 1}
    r = await web.post(status_with_ids("wamid.unknown", "read", "+31622220001", None))
    assert r.status_code == 200 and app.inbound.counts == {"not_linked": 1}
    data = db_bytes(app)
    assert b"31622220000" not in data and b"NL.8000000000000000001" not in data


def test_statuses_parse_with_their_recipient_ids():
    doc = status_with_ids("wamid.x", "delivered", "+31611111001", "NL.1")
    (s,) = parse_webhook(doc).statuses
    assert (s.recipient, s.recipient_user) == ("+31611111001", "user:NL.1")
    assert s.pairing == IdPairing("cloud", ("+31611111001", "user:NL.1"))
    group = copy.deepcopy(doc)
    group["entry"][0]["changes"][0]["value"]["statuses"][0]["recipient_type"] = "group"
    assert parse_webhook(group).statuses[0].pairing is None


# -- message kinds ---------------------------------------------------------------------------------
KINDS = {
    "audio": ({"audio": {"id": "a1", "mime_type": "audio/ogg; codecs=opus", "voice": True}},
              "voice"),
    "contacts": ({"contacts": [{"name": {"formatted_name": "Monteur Jan"},
                                "phones": [{"phone": "+31 6 11111399", "wa_id": "31611111399"}]}]},
                 "contact"),
    "location": ({"location": {"latitude": 52.34, "longitude": 5.62}}, "location"),
    "unsupported": ({"errors": [{"code": 131051, "title": "Message type unknown"}]}, "other"),
    "video": ({"video": {"id": "v1", "mime_type": "video/mp4"}}, "media"),
    "document": ({"document": {"id": "d1", "caption": "STOP", "filename": "x.pdf"}}, "media"),
    "sticker": ({"sticker": {"id": "s1", "mime_type": "image/webp"}}, "media"),
}


def test_each_message_type_has_its_kind_and_the_bsuid_as_alternate():
    for t, (extra, kind) in KINDS.items():
        doc = inbound_body("", kind=t, extra=extra, user_id="NL.42")
        (m,) = parse_webhook(doc).messages
        assert isinstance(m, InboundMessage)
        assert (m.kind, m.sender, m.alternates) == (kind, "+31612345678", ("user:NL.42",)), t
        assert m.text == ("STOP" if t == "document" else ""), t
    (m,) = parse_webhook(inbound_body("hallo", user_id="NL.42")).messages
    assert (m.kind, m.text, m.alternates) == ("text", "hallo", ("user:NL.42",))
    (m,) = parse_webhook(inbound_body("hallo", sender=None, user_id="NL.42")).messages
    assert (m.sender, m.alternates) == ("user:NL.42", ())
    assert m.ids == ("user:NL.42",)


async def test_voice_note_contact_card_location_and_unsupported_get_the_help_reply(web):
    app = web.app
    numbers = {}
    for i, t in enumerate(("audio", "contacts", "location", "unsupported")):
        sender = f"3161111130{i}"
        numbers[t] = "+" + sender
        extra, _ = KINDS[t]
        r = await web.post(from_number(inbound_body("", kind=t, extra=extra,
                                                    msg_id=f"wamid.k{i}"), sender))
        assert r.status_code == 200
    assert app.inbound.counts == {"help": 4}
    await drain(app)
    for t, number in numbers.items():
        (reply,) = web.fake.sends(number)
        text = reply.body["text"]["body"]
        assert "STOP" in text and "Ja ik wil storingsberichten" in text, (t, text)
    assert app.store.subscribers.count() == 0


async def test_an_image_captioned_stop_unsubscribes(web):
    app = web.app
    await web.post(inbound_body(SUBSCRIBE, msg_id="wamid.i1"))
    assert app.store.subscribers.count() == 1
    doc = inbound_body("", kind="image", msg_id="wamid.i2",
                       extra={"image": {"id": "1", "caption": "STOP", "mime_type": "image/jpeg"}})
    assert (await web.post(doc)).status_code == 200
    assert app.store.subscribers.count() == 0 and app.inbound.counts.get("unsubscribed") == 1


# -- a value with only errors (w05) ----------------------------------------------------------------
async def test_w05_value_errors_answer_200_with_a_warning_and_a_metric(web, caplog):
    doc = case("w05-value-errors.json")
    p = parse_webhook(doc)
    assert p.messages == [] and p.statuses == [] and p.skipped == []
    assert [(e.code, e.title) for e in p.errors] == [(131000, "Something went wrong")]
    with caplog.at_level(logging.WARNING, "bridge.channels.cloud"):
        r = await web.post(doc)
        assert r.status_code == 200
        assert (await web.post(doc)).status_code == 200
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("131000" in w and "Something went wrong" in w
                                      for w in warnings), warnings
    assert "Unable to process the incoming message" in warnings[0]
    text = (await web.client.get("/metrics")).text
    assert 'bridge_webhook_errors_total{code="131000"} 2.0' in text, text
    assert 'bridge_webhook_requests_total{result="ok"} 2.0' in text
    assert web.app.inbound.counts == {} and web.app.store.deliveries.counts() == {}
