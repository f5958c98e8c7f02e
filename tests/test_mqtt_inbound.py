"""What people send over the linked phone (whatsapp-web.js behind MQTT): @lid senders and
media (issue 12, field cases w02 and w03), through a real private Mosquitto and the real
daemon, as in tests/test_mqtt.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from daemon import bridge, wait_for
from mosquitto import Mosquitto
from test_mqtt import Collector, content, mqtt_config, publish, start_daemon, subscriber_count

from bridge.channels.mqtt import Skip, parse_inbound

DATA = Path(__file__).parent / "data" / "whatsapp"
W02 = json.loads((DATA / "w02-mqtt-lid-stop.json").read_text())
W03 = json.loads((DATA / "w03-mqtt-media.json").read_text())
LID = "140000000001101"
SANNE = "31611111101"  # the number behind the @lid id, in the tests that link them
TOPIC = "whatsapp/message/{}"


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def lid_message(body: str, msg_id: str, pn: str | None = None) -> bytes:
    """w02 with another body and id; ``pn``: the phone number the gateway adds
    (``_data.senderPn``, as WhatsApp gives it in LID chats)."""
    doc = json.loads(json.dumps(W02))
    doc["body"] = body
    doc["id"].update(id=msg_id, _serialized=f"false_{LID}@lid_{msg_id}")
    doc["timestamp"] = int(time.time())
    if pn:
        doc["_data"]["senderPn"] = f"{pn}@c.us"
    return json.dumps(doc).encode()


def db_bytes(tmp_path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in tmp_path.glob("bridge.db*"))


# -- parsing (pure) -------------------------------------------------------------------------------
def test_w02_lid_sender_parses_to_a_linked_id():
    m = parse_inbound(json.dumps(W02))
    assert not isinstance(m, Skip), m
    assert (m.sender, m.alternates, m.text, m.kind) == (f"lid:{LID}", (), "STOP", "text")


def test_w02_phone_number_in_the_payload_is_the_sender_and_the_lid_an_alternate():
    for field in ("senderPn", "_data.senderPn", "_data.key.remoteJidAlt"):
        doc = json.loads(json.dumps(W02))
        where = doc
        *path, last = field.split(".")
        for k in path:
            where = where.setdefault(k, {})
        where[last] = f"{SANNE}@s.whatsapp.net" if "Jid" in last else f"{SANNE}@c.us"
        m = parse_inbound(json.dumps(doc))
        assert (m.sender, m.alternates) == (f"+{SANNE}", (f"lid:{LID}",)), field
    # and the other way round: a phone-number sender whose payload carries its @lid id
    doc = json.loads(json.dumps(W03[0]))
    doc["_data"]["senderLid"] = f"{LID}@lid"
    m = parse_inbound(json.dumps(doc))
    assert (m.sender, m.alternates) == ("+31611111301", (f"lid:{LID}",))


def test_w03_media_kinds():
    image, voice, card = (parse_inbound(json.dumps(d)) for d in W03)
    assert (image.kind, image.text, image.media_type) == ("media", "STOP", "image/jpeg")
    assert (voice.kind, voice.text) == ("voice", "")
    assert (card.kind, card.text) == ("contact", "")  # the vCard (other numbers) is never read
    uncaptioned = parse_inbound(json.dumps(
        {**W03[0], "_data": {}, "hasMedia": False, "body": "/9j/4AAQSkZJRg"}))
    assert (uncaptioned.kind, uncaptioned.text) == ("media", "")  # a thumbnail is no caption
    location = parse_inbound(json.dumps({**W03[1], "type": "location", "body": "data"}))
    assert (location.kind, location.text) == ("location", "")
    poll = parse_inbound(json.dumps({**W03[1], "type": "poll_creation"}))
    assert poll.kind == "other"


def test_w02_group_ids_are_still_skipped():
    r = parse_inbound(json.dumps({**W02, "from": "120363025555555555@g.us"}))
    assert isinstance(r, Skip) and not r.malformed


# -- the running daemon ---------------------------------------------------------------------------
def test_w03_caption_stop_unsubscribes_voice_and_card_get_the_help_reply(tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    bridge(cfg, "subscribers", "add", "+31611111301", "+31611111302")
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        for doc in W03:
            doc = {**doc, "timestamp": int(time.time())}
            publish(broker, TOPIC.format(doc["from"]), json.dumps(doc).encode())
        wait_for(lambda: len(gw.got()) >= 3, what="three replies")
        time.sleep(0.3)
        assert subscriber_count(cfg) == 1  # 301 left by its captioned image
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    got = {topic.rsplit("/", 1)[1]: content(payload) for topic, payload in gw.got()}
    assert set(got) == {"31611111301@c.us", "31611111302@c.us", "31611111303@c.us"}
    assert "afgemeld" in got["31611111301@c.us"]
    for chat in ("31611111302@c.us", "31611111303@c.us"):
        assert "Via dit nummer" in got[chat] and "STOP" in got[chat], got[chat]
        assert "support@cbgconnect.nl" in got[chat]
    data = db_bytes(tmp_path)
    assert b"31611111399" not in data  # the number in the contact card was never stored
    assert b"31611111301" not in data  # erased with the STOP in the caption


def test_w02_lid_stop_that_matches_no_one_gets_a_reply_a_warning_and_a_count(tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    bridge(cfg, "subscribers", "add", f"+{SANNE}")  # the same person, but nothing links them
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        publish(broker, TOPIC.format(W02["from"]), json.dumps(W02).encode())
        wait_for(lambda: gw.got(), what="the reply to the @lid chat")
        time.sleep(0.3)
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    ((topic, payload),) = gw.got()
    assert topic == f"whatsapp/send/text/{LID}@lid"
    text = content(payload)
    assert "geen aanmelding vinden" in text and "support@cbgconnect.nl" in text
    assert "Stuur dan STOP vanaf het nummer waarmee je je hebt aangemeld" in text
    log = d.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line and "matches no" in line]
    assert len(warnings) == 1, log
    assert "lid:140…" in warnings[0] and LID not in log
    assert subscriber_count(cfg) == 1  # nothing removed on a guess
    status = json.loads(bridge(cfg, "status", "--json").stdout)
    assert status["unmatched_optouts"]["count"] == 1
    assert "unmatched opt-outs: 1" in bridge(cfg, "status").stdout


def test_w02_lid_stop_reaches_the_subscriber_linked_by_an_earlier_message(tmp_path, broker):
    """A message that carries both ids links them; a later STOP with only the @lid id
    unsubscribes, and the store then holds neither id."""
    cfg = mqtt_config(tmp_path, broker)
    bridge(cfg, "subscribers", "add", f"+{SANNE}")
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        publish(broker, TOPIC.format(W02["from"]), lid_message("hallo", "L1", pn=SANNE))
        wait_for(lambda: gw.got(), what="the support reply")
        publish(broker, TOPIC.format(W02["from"]), json.dumps(W02).encode())  # no senderPn
        wait_for(lambda: len(gw.got()) >= 2, what="the STOP confirmation")
        time.sleep(0.3)
        assert subscriber_count(cfg) == 0
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    first, second = gw.got()
    assert first[0] == f"whatsapp/send/text/{SANNE}@c.us"  # answered on the number
    assert second[0] == f"whatsapp/send/text/{LID}@lid" and "afgemeld" in content(second[1])
    data = db_bytes(tmp_path)
    assert SANNE.encode() not in data and LID.encode() not in data
    assert "WARNING" not in "\n".join(x for x in d.log().splitlines() if "bridge.inbound" in x)


def test_w02_subscribe_from_lid_with_phone_number_then_stop_from_lid_only(tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        sentence = "Ja ik wil storingsberichten van CBG Connect ontvangen."
        publish(broker, TOPIC.format(W02["from"]), lid_message(sentence, "L2", pn=SANNE))
        wait_for(lambda: gw.got(), what="the confirmation")
        listed = bridge(cfg, "subscribers", "list", "--unmasked").stdout
        assert listed.startswith(f"+{SANNE}\tmqtt"), listed  # the number is the address
        shown = bridge(cfg, "subscribers", "show", f"lid:{LID}").stdout
        assert f"lid:{LID}" in shown and f"+{SANNE}" in shown, shown
        publish(broker, TOPIC.format(W02["from"]), json.dumps(W02).encode())
        wait_for(lambda: len(gw.got()) >= 2, what="the STOP confirmation")
        time.sleep(0.3)
        assert subscriber_count(cfg) == 0
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    data = db_bytes(tmp_path)
    assert SANNE.encode() not in data and LID.encode() not in data
