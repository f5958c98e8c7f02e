"""The linked-phone channel over MQTT against a real, private Mosquitto.

Every test that talks MQTT starts its own broker (tests/mosquitto.py) on a free loopback
port with its data in tmp_path; the system broker on port 1883 is never used. End-to-end
tests run the real daemon (`python -m bridge run`) as a subprocess with channel "mqtt" and
SMTP off; test clients on the broker play the phone gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from channel_port import StubPort
from daemon import Daemon, bridge, wait_for
from helpers import MAILS, now_of, write_config
from mosquitto import Mosquitto

from bridge.channels.base import Outgoing
from bridge.channels.mqtt import MqttChannel, MqttSettings, Skip, parse_config, parse_inbound
from bridge.config import ConfigError, Section, load
from bridge.port import NoticeProgress

SAMPLES = Path("/work/shared/samples/whatsapp")
INBOUND_SAMPLE = {
    "_data": {"notifyName": "Sanne"},
    "id": {"fromMe": False, "remote": "31612345678@c.us", "id": "3EB0C767D26A1D8B4F21",
           "_serialized": "false_31612345678@c.us_3EB0C767D26A1D8B4F21"},
    "ack": 1, "hasMedia": False, "body": "STOP", "type": "chat", "timestamp": 1795858800,
    "from": "31612345678@c.us", "to": "31854869699@c.us", "deviceType": "android",
    "isForwarded": False, "forwardingScore": 0, "isStatus": False, "fromMe": False,
    "hasQuotedMsg": False, "mentionedIds": [], "links": [],
}
SUBSCRIBE = "Ja ik wil storingsberichten van CBG Connect ontvangen."


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


def wwebjs(number_digits: str, body: str, msg_id: str, **over) -> bytes:
    """A whatsapp-web.js message object as the gateway publishes it."""
    doc = json.loads(json.dumps(INBOUND_SAMPLE))
    chat = f"{number_digits}@c.us"
    doc["id"].update(remote=chat, id=msg_id, _serialized=f"false_{chat}_{msg_id}")
    doc.update({"from": chat, "body": body, "timestamp": int(time.time())})
    doc.update(over)
    return json.dumps(doc).encode()


def publish(broker: Mosquitto, topic: str, payload: bytes, qos: int = 1) -> None:
    """Publish one message (the gateway's part) and wait until it has left (at QoS 1: the
    broker's PUBACK). whatsapp-web-to-mqtt itself publishes at QoS 0."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


class Collector:
    """A test subscriber (the gateway's receiving side): persistent session, reconnects."""

    def __init__(self, broker: Mosquitto, topic: str = "whatsapp/send/#",
                 client_id: str = "test-gateway", qos: int = 1):
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.05, 0.2)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=qos)
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect(broker.host, broker.port, keepalive=5)
        c.loop_start()
        assert self._subscribed.wait(10), "test subscriber could not subscribe"

    def _on_message(self, client, userdata, m) -> None:
        with self._lock:
            self.messages.append((m.topic, m.payload))

    def got(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_config(tmp_path: Path, broker: Mosquitto, rate: float = 1000.0, **keys) -> Path:
    """A daemon config with channel "mqtt" on the test broker; ``keys`` override
    [channel.mqtt] keys (values written as TOML literals: numbers, or quoted strings)."""
    values = {"port": broker.port, "client_id": '"bridge-under-test"', "max_rate": 50,
              "jitter": 0, "reconnect_min": 0.05, "reconnect_max": 0.5, "publish_timeout": 5}
    values.update(keys)
    body = "\n".join(["[channel.mqtt]", *(f"{k} = {v}" for k, v in values.items())])
    return write_config(tmp_path, rate=rate, channel="mqtt", channel_extra=body)


def start_daemon(cfg: Path, log_name: str = "daemon.log") -> Daemon:
    d = Daemon(cfg, log=cfg.parent / log_name).start(wait=False)
    try:
        wait_for(lambda: "mqtt: connected" in d.log() or not d.alive(), timeout=20,
                 what="the daemon connected to the broker")
    except TimeoutError:
        d.stop()
        raise AssertionError(d.log()) from None
    assert d.alive(), d.log()
    return d


def subscriber_count(cfg: Path) -> int:
    return int(bridge(cfg, "subscribers", "count").stdout.strip())


def expected_texts(cfg: Path, notice_id: int | None = None) -> dict:
    """The notice text and the subscribe confirmation as the bridge renders them."""
    from bridge.app import App

    app = App(load(cfg))
    try:
        out = {"subscribed": app.renderer.render_reply(
            "subscribed", subscribe_sentence=app.inbound.subscribe_sentence).text}
        if notice_id is not None:
            out["notice"] = app.store.incidents.notice(notice_id)["text"]
        return out
    finally:
        app.store.close()


def content(payload: bytes) -> str:
    return json.loads(payload)["content"]


# -- configuration --------------------------------------------------------------------------------
def test_config_defaults_and_validation(tmp_path):
    s = parse_config(Section({}, "channel.mqtt"), tmp_path)
    assert (s.host, s.port, s.prefix, s.protocol) == ("127.0.0.1", 1883, "whatsapp", "3.1.1")
    assert s.topic_for("31612345678@c.us") == "whatsapp/send/text/31612345678@c.us"
    assert s.receive_filter == "whatsapp/message/#"
    assert s.max_rate == 1.0 and s.jitter > 0 and s.manual_ack
    custom = parse_config(Section({"prefix": "wa/phone1", "send_topic": "{prefix}/out/{chat_id}",
                                   "receive_topic": "{prefix}/in/+"}, "channel.mqtt"), tmp_path)
    assert custom.topic_for("1@c.us") == "wa/phone1/out/1@c.us"
    assert custom.receive_filter == "wa/phone1/in/+"

    bad = [
        ({"send_topic": "{prefix}/send/text"}, "send_topic"),
        ({"send_topic": "{prefix}/send/+/{chat_id}"}, "send_topic"),
        ({"send_topic": "{prefix}/{number}"}, "send_topic"),
        ({"receive_topic": "{prefix}/#/x"}, "receive_topic"),
        ({"password_env": "MQTT_PASSWORD"}, "password_env"),
        ({"tls_ca_file": "ca.pem"}, "tls"),
        ({"tls": True, "tls_cert_file": "c.pem"}, "tls_key_file"),
        ({"protocol": "4"}, "protocol"),
        ({"max_rate": 0}, "max_rate"),
        ({"reconnect_min": 10, "reconnect_max": 1}, "reconnect_max"),
        ({"portt": 1}, "portt"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError) as e:
            parse_config(Section(data, "channel.mqtt"), tmp_path)
        assert str(e.value).startswith(f"channel.mqtt.{key}:"), (data, str(e.value))


def test_password_comes_from_the_environment(tmp_path, monkeypatch):
    s = parse_config(Section({"username": "bridge", "password_env": "TEST_MQTT_PW"},
                             "channel.mqtt"), tmp_path)
    ch = MqttChannel(s, StubPort())

    async def build():
        return ch._client()

    monkeypatch.delenv("TEST_MQTT_PW", raising=False)
    with pytest.raises(ConfigError, match="TEST_MQTT_PW is not set"):
        asyncio.run(build())

    async def run_briefly():
        task = asyncio.create_task(ch.run())
        await asyncio.sleep(0.2)
        assert not task.done()  # no crash: the channel pauses and keeps trying
        await stop_task(task)

    asyncio.run(run_briefly())
    assert "TEST_MQTT_PW is not set" in ch.paused
    monkeypatch.setenv("TEST_MQTT_PW", "s3cret")
    client = asyncio.run(build())
    assert client._client._username == b"bridge" and client._client._password == b"s3cret"


def test_default_pacing_is_one_message_a_second_with_jitter(tmp_path):
    from bridge.app import App

    cfg = write_config(tmp_path, rate=20, channel="mqtt", channel_extra="[channel.mqtt]\nport = 1")
    app = App(load(cfg))
    try:
        assert app.channel.max_rate == 1.0 and app.channel.jitter == 1.0
        assert app.dispatcher.rate == 1.0  # the lower of dispatch.rate and the channel's cap
        assert app.channel.paused  # not connected: deliveries wait in the outbox
    finally:
        app.store.close()


# -- inbound payloads (pure) ------------------------------------------------------------------------
def test_parse_inbound_sample():
    raw = (SAMPLES / "mqtt-wwebjs-inbound.json").read_bytes() if SAMPLES.exists() else \
        json.dumps(INBOUND_SAMPLE).encode()
    m = parse_inbound(raw)
    assert not isinstance(m, Skip), m
    assert (m.channel, m.sender, m.text) == ("mqtt", "+31612345678", "STOP")
    assert m.message_id == "false_31612345678@c.us_3EB0C767D26A1D8B4F21"
    assert m.received_at.isoformat() == "2026-11-28T09:40:00+00:00"


@pytest.mark.parametrize("payload, malformed", [
    (b"not json at all", True),
    (b"\xff\xfe\x00", True),
    (b"[1, 2]", True),
    (json.dumps({k: v for k, v in INBOUND_SAMPLE.items() if k != "body"}).encode(), True),
    (json.dumps({**INBOUND_SAMPLE, "id": {}}).encode(), True),
    (json.dumps({**INBOUND_SAMPLE, "fromMe": True}).encode(), False),
    (json.dumps({**INBOUND_SAMPLE, "id": {**INBOUND_SAMPLE["id"], "fromMe": True}}).encode(), False),
    # an image (captioned or not) is a message now (issue 12, w03); events are not
    (json.dumps({**INBOUND_SAMPLE, "type": "revoked"}).encode(), False),
    (json.dumps({**INBOUND_SAMPLE, "type": "reaction"}).encode(), False),
    (json.dumps({**INBOUND_SAMPLE, "from": "120363025555555555@g.us"}).encode(), False),
    (json.dumps({**INBOUND_SAMPLE, "isStatus": True, "from": "status@broadcast"}).encode(), False),
])
def test_parse_inbound_skips(payload, malformed):
    r = parse_inbound(payload)
    assert isinstance(r, Skip), r
    assert r.malformed is malformed
    assert "12345678" not in r.reason


def test_parse_inbound_timestamp_fallbacks():
    ms = parse_inbound(json.dumps({**INBOUND_SAMPLE, "timestamp": 1795858800123}).encode())
    assert ms.received_at.isoformat().startswith("2026-11-28T09:40:00.123")
    none = parse_inbound(json.dumps({**INBOUND_SAMPLE, "timestamp": "x"}).encode())
    assert abs(none.received_at.timestamp() - time.time()) < 5


# -- the channel in-process -----------------------------------------------------------------------
def channel_settings(broker: Mosquitto, **kw) -> MqttSettings:
    base = dict(port=broker.port, client_id="bridge-inproc", reconnect_min=0.05,
                reconnect_max=0.3, publish_timeout=5, jitter=0)
    base.update(kw)
    return MqttSettings(**base)


async def until(cond, timeout: float = 10, what: str = "condition"):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        v = cond()
        if v:
            return v
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{what} not met after {timeout} s")


async def stop_task(task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def test_paused_until_connected_and_when_broker_is_gone(broker):
    ch = MqttChannel(channel_settings(broker), StubPort())
    out = Outgoing(1, "+31612345678", "x", "notice", notice_id=1)
    assert ch.paused and "not connected" in ch.paused
    r = await ch.send(out)
    assert r.status == "paused" and r.retry_after is not None
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        assert (await ch.send(out)).status == "sent"
        broker.kill()
        await until(lambda: ch.paused, what="paused after the broker died")
        assert "unreachable" in ch.paused
        assert (await ch.send(out)).status == "paused"
        broker.start()
        await until(lambda: ch.paused is None, what="reconnected")
        assert ch.connects == 2
        assert ch.describe()["state"] == "connected"
    finally:
        await stop_task(task)


async def test_unaddressable_recipients_fail_permanently(broker):
    ch = MqttChannel(channel_settings(broker), StubPort())
    r = await ch.send(Outgoing(1, "user:abc123", "x", "notice"))
    assert r.status == "failed"
    r = await ch.send(Outgoing(2, "+3161234", "x", "notice"))
    assert r.status == "failed"


async def test_garbage_payloads_are_skipped_and_logged_masked(broker, caplog):
    got = []

    async def sink(m):
        got.append(m)

    ch = MqttChannel(channel_settings(broker), StubPort(sink))
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        topic = "whatsapp/message/31687654321@c.us"
        caplog.set_level(logging.INFO, logger="bridge.channels.mqtt")
        for payload in [
            b"garbage, not JSON",
            json.dumps({k: v for k, v in INBOUND_SAMPLE.items() if k != "body"}).encode(),
            wwebjs("31687654321", "from me", "A1", fromMe=True),
            wwebjs("31687654321", "", "A2", type="e2e_notification"),
            wwebjs("31687654321", "aanmelden", "A3"),  # the only real one, last
        ]:
            await asyncio.to_thread(publish, broker, topic, payload)
        await until(lambda: got, what="the valid message")
        await asyncio.sleep(0.2)
        assert [m.message_id for m in got] == ["false_31687654321@c.us_A3"]
        assert got[0].sender == "+31687654321" and got[0].text == "aanmelden"
        assert ch.skipped == 4 and ch.handled == 1
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert text.count("skipped") == 4, text
        assert "not JSON" in text and "fromMe" in text and "'e2e_notification'" in text
        assert "31687654321" not in text and "87654321" not in text  # numbers masked
    finally:
        await stop_task(task)


async def test_inbound_is_acknowledged_only_after_commit(broker):
    """A message whose handling never finished is delivered again to the next run."""
    calls = []
    hang = asyncio.Event()

    async def stuck(m):
        calls.append(m)
        await hang.wait()  # never commits

    ch = MqttChannel(channel_settings(broker), StubPort(stuck))
    task = asyncio.create_task(ch.run())
    await until(lambda: ch.paused is None, what="connected")
    await asyncio.to_thread(publish, broker, "whatsapp/message/31612345678@c.us",
                            wwebjs("31612345678", "aanmelden", "B1"))
    await until(lambda: calls, what="the message in hand")
    await stop_task(task)  # the bridge stops (or crashes) before the commit

    done = []

    async def ok(m):
        done.append(m)

    ch2 = MqttChannel(channel_settings(broker), StubPort(ok))
    task2 = asyncio.create_task(ch2.run())
    try:
        await until(lambda: done, what="the redelivered message")
        assert done[0].message_id == "false_31612345678@c.us_B1"
        await asyncio.sleep(0.3)
        assert len(done) == 1
    finally:
        await stop_task(task2)

    # ...and once acknowledged it does not come a third time.
    again = []

    async def record(m):
        again.append(m)

    ch3 = MqttChannel(channel_settings(broker), StubPort(record))
    task3 = asyncio.create_task(ch3.run())
    try:
        await until(lambda: ch3.paused is None, what="connected")
        await asyncio.sleep(0.5)
        assert again == []
    finally:
        await stop_task(task3)


async def test_failed_inbound_handling_is_retried_through_redelivery(broker):
    calls = []

    async def flaky(m):
        calls.append(m)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    ch = MqttChannel(channel_settings(broker), StubPort(flaky))
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        await asyncio.to_thread(publish, broker, "whatsapp/message/31612345678@c.us",
                                wwebjs("31612345678", "aanmelden", "C1"))
        await until(lambda: len(calls) >= 2, what="the second attempt")
        assert calls[0].message_id == calls[1].message_id
        assert ch.handled == 1 and ch.connects == 2
    finally:
        await stop_task(task)


async def test_qos0_inbound_published_while_the_bridge_was_away_is_handled(broker, caplog):
    """whatsapp-web-to-mqtt publishes at QoS 0; with queue_qos0_messages true (the test
    broker's config, docs/mqtt.md) the broker keeps such a message for the bridge's
    persistent session while the bridge is down."""
    ch = MqttChannel(channel_settings(broker), StubPort())
    task = asyncio.create_task(ch.run())
    await until(lambda: ch.paused is None, what="connected (session created)")
    await stop_task(task)  # the bridge is away

    await asyncio.to_thread(publish, broker, "whatsapp/message/31612345678@c.us",
                            wwebjs("31612345678", "aanmelden", "Q0"), 0)
    got = []

    async def record(m):
        got.append(m)

    caplog.set_level(logging.WARNING, logger="bridge.channels.mqtt")
    ch2 = MqttChannel(channel_settings(broker), StubPort(record))
    task2 = asyncio.create_task(ch2.run())
    try:
        await until(lambda: got, what="the QoS 0 message published while the bridge was away")
        assert [m.message_id for m in got] == ["false_31612345678@c.us_Q0"]
        assert ch2.handled == 1
        warnings = [r.getMessage() for r in caplog.records if "QoS 0" in r.getMessage()]
        assert len(warnings) == 1 and "queue_qos0_messages" in warnings[0], warnings
    finally:
        await stop_task(task2)


async def test_failed_qos0_inbound_handling_is_retried_in_place(broker):
    """The broker never sends a QoS 0 message again: a failure is retried without a
    reconnect (which would lose it)."""
    calls = []

    async def flaky(m):
        calls.append(m)
        if len(calls) <= 2:
            raise RuntimeError("database is locked")

    ch = MqttChannel(channel_settings(broker), StubPort(flaky))
    ch.inbound_retry_delay = 0.01
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        await asyncio.to_thread(publish, broker, "whatsapp/message/31612345678@c.us",
                                wwebjs("31612345678", "aanmelden", "C0"), 0)
        await until(lambda: ch.handled == 1, what="handled on the third attempt")
        assert len(calls) == 3 and len({m.message_id for m in calls}) == 1
        assert ch.connects == 1  # no reconnect
    finally:
        await stop_task(task)


async def test_qos0_gateway_gets_sends_published_while_it_was_offline(broker):
    """The other direction: whatsapp-web-to-mqtt subscribes to send/# at QoS 0 with a
    persistent session. A send the broker acknowledged (counted as sent) while the gateway
    was offline reaches it when it comes back, because of queue_qos0_messages true."""
    gw = await asyncio.to_thread(Collector, broker, "whatsapp/send/#", "test-gateway-qos0", 0)
    await asyncio.to_thread(gw.close)  # the gateway goes away; its session stays
    ch = MqttChannel(channel_settings(broker), StubPort())
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        r = await ch.send(Outgoing(1, "+31612345678", "Storing opgelost", "notice"))
        assert r.status == "sent"
    finally:
        await stop_task(task)
    gw = await asyncio.to_thread(Collector, broker, "whatsapp/send/#", "test-gateway-qos0", 0)
    try:
        await until(gw.got, what="the send queued for the offline gateway")
        assert gw.got() == [("whatsapp/send/text/31612345678@c.us",
                             json.dumps({"content": "Storing opgelost"}).encode())]
    finally:
        await asyncio.to_thread(gw.close)


# -- a full store, and a broker that does not keep sessions (issue 15) --------------------------
async def test_inbound_is_held_not_dropped_while_the_store_cannot_be_written(broker):
    """A full disk made the channel drop an inbound message (a STOP, say) after five
    failed attempts: a store that cannot be written is not the message's fault, so it is
    held unacknowledged, retried without counting, and handled once space returns."""
    from bridge.port import StoreUnavailable

    calls = []

    async def full_for_a_while(m):
        calls.append(m)
        if len(calls) <= 8:  # more than inbound_attempts (5)
            raise StoreUnavailable("database or disk is full", "database or disk is full")

    ch = MqttChannel(channel_settings(broker), StubPort(full_for_a_while))
    ch.inbound_retry_delay = 0.01
    ch.store_wait_max = 0.05
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.paused is None, what="connected")
        await asyncio.to_thread(publish, broker, "whatsapp/message/31612345678@c.us",
                                wwebjs("31612345678", "stop", "F1"))
        await until(lambda: ch.handled == 1, what="handled once the store takes writes")
        assert len(calls) == 9 and len({m.message_id for m in calls}) == 1
        assert ch.skipped == 0 and ch.connects == 1  # neither dropped nor a reconnect
    finally:
        await stop_task(task)


async def test_a_broker_that_forgot_the_bridges_session_is_reported(tmp_path, caplog):
    """docs/mqtt.md requires the broker to keep sessions (persistence true): a broker
    restarted without it forgets the bridge's session and what was published for it. The
    CONNACK's session-present flag shows it: one WARNING on the reconnect."""
    caplog.set_level(logging.INFO, logger="bridge.channels.mqtt")
    forgetful = Mosquitto(tmp_path / "forgetful", persistence=False).start()
    port = StubPort()
    ch = MqttChannel(channel_settings(forgetful), port)
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.connects == 1, what="connected")
        assert ch.session_kept is False  # the first connection: nothing to keep yet
        assert not [r for r in caplog.records if "did not keep" in r.getMessage()]
        forgetful.stop()
        forgetful.start()  # a restart without persistence: the session is gone
        await until(lambda: ch.connects == 2, what="reconnected")
        lost = [r for r in caplog.records if "did not keep" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING
        assert "persistence true" in lost[0].getMessage() and ch.session_kept is False
    finally:
        await stop_task(task)
        forgetful.stop()


async def test_a_broker_that_keeps_the_session_is_not_reported(broker, caplog):
    caplog.set_level(logging.INFO, logger="bridge.channels.mqtt")
    port = StubPort()
    ch = MqttChannel(channel_settings(broker), port)
    task = asyncio.create_task(ch.run())
    try:
        await until(lambda: ch.connects == 1, what="connected")
        broker.stop()
        broker.start()  # persistence true: the session survives the restart
        await until(lambda: ch.connects == 2, what="reconnected")
        assert ch.session_kept is True
        assert not [r for r in caplog.records if "did not keep" in r.getMessage()]
        notes = [r for r in caplog.records if "cannot see whether the gateway" in r.getMessage()]
        assert len(notes) == 1 and notes[0].levelno == logging.WARNING  # once, at start
    finally:
        await stop_task(task)


def test_bridge_check_says_what_is_lost_without_broker_persistence(tmp_path):
    cfg = write_config(tmp_path, channel="mqtt", channel_extra="[channel.mqtt]\nport = 1")
    p = bridge(cfg, "check")
    lines = [line for line in p.stdout.splitlines() if "gateway is away" in line]
    assert len(lines) == 1 and lines[0].startswith("channel.mqtt:0: warning:"), p.stdout
    assert "persistent session" in lines[0] and "queue_qos0_messages" in lines[0]


def test_long_fanout_warning_with_eta(caplog):
    s = MqttSettings()  # 1 msg/s + up to 1 s jitter: 1.5 s a message on average
    ch = MqttChannel(s, StubPort(progress={7: NoticeProgress(waiting=1000, stale=0,
                                                               created_at=0.0)}))
    assert ch.fanout_eta(1000) == pytest.approx(1500)
    caplog.set_level(logging.WARNING, logger="bridge.channels.mqtt")
    ch._fanout_check(Outgoing(1, "+31612345678", "x", "notice", notice_id=7))
    ch._fanout_check(Outgoing(2, "+31612345679", "x", "notice", notice_id=7))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "notice 7 goes to 1000 recipients" in warnings[0] and "25 min" in warnings[0]
    assert "ban" in warnings[0]

    caplog.clear()
    small = MqttChannel(s, StubPort(progress={8: NoticeProgress(waiting=10, stale=0,
                                                                  created_at=0.0)}))
    small._fanout_check(Outgoing(1, "+31612345678", "x", "notice", notice_id=8))
    assert caplog.records == []


# -- end to end: the real daemon ------------------------------------------------------------------
def test_notice_reaches_the_gateway_on_the_exact_topic_with_the_exact_payload(tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    bridge(cfg, "subscribers", "add", "+31612345678", "+32470123456")
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        out = json.loads(bridge(cfg, "ingest", "--json", str(MAILS / "01-storing-nieuw.eml"),
                                "--now", now_of(MAILS / "01-storing-nieuw.eml")).stdout)
        nid = out["notice"]
        assert nid and out["queued"] == 2, out
        wait_for(lambda: len(gw.got()) >= 2, what="both notices at the gateway")
        time.sleep(0.3)
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    text = expected_texts(cfg, nid)["notice"]
    exact = json.dumps({"content": text}, ensure_ascii=False).encode("utf-8")
    assert sorted(gw.got()) == sorted([
        ("whatsapp/send/text/31612345678@c.us", exact),
        ("whatsapp/send/text/32470123456@c.us", exact),
    ])
    status = json.loads(bridge(cfg, "status", "--json").stdout)
    assert status["deliveries"].get("sent") == 2, status


def test_inbound_subscribe_stores_the_subscriber_and_publishes_the_confirmation(tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        topic = "whatsapp/message/31612345678@c.us"
        publish(broker, topic, b"{broken")
        publish(broker, topic, wwebjs("31612345678", SUBSCRIBE, "S0", fromMe=True))
        publish(broker, topic, wwebjs("31612345678", SUBSCRIBE, "S1"))
        wait_for(lambda: gw.got(), what="the confirmation")
        time.sleep(0.5)
        assert subscriber_count(cfg) == 1
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    confirmation = expected_texts(cfg)["subscribed"]
    assert gw.got() == [("whatsapp/send/text/31612345678@c.us",
                         json.dumps({"content": confirmation}, ensure_ascii=False).encode())]
    log = d.log()
    assert "skipped a malformed message" in log and "fromMe" in log


def test_messages_published_while_the_bridge_was_down_are_handled_after_it_comes_back(
        tmp_path, broker):
    cfg = mqtt_config(tmp_path, broker)
    gw = Collector(broker)
    d = start_daemon(cfg)  # the first run creates the persistent session and subscription
    d.kill()  # gone without a goodbye
    numbers = ["31611111111", "31622222222", "31633333333"]
    for i, n in enumerate(numbers):
        # The first at QoS 0, as whatsapp-web-to-mqtt publishes (kept for the absent bridge
        # because the broker runs with queue_qos0_messages true, as docs/mqtt.md asks).
        publish(broker, f"whatsapp/message/{n}@c.us", wwebjs(n, SUBSCRIBE, f"D{i}"),
                qos=0 if i == 0 else 1)
    # The broker restarts as well while the bridge is away; its persistence keeps the queue.
    broker.stop()
    broker.start()
    assert subscriber_count(cfg) == 0
    d2 = start_daemon(cfg, "daemon2.log")
    try:
        wait_for(lambda: len(gw.got()) >= 3, what="three confirmations")
        time.sleep(0.5)
        assert subscriber_count(cfg) == 3
    finally:
        assert d2.stop() == 0, d2.log()
        gw.close()
    assert sorted(t for t, _ in gw.got()) == [f"whatsapp/send/text/{n}@c.us" for n in numbers]


def test_broker_killed_mid_fanout_every_delivery_arrives_after_reconnect(tmp_path, broker):
    n = 30
    numbers = [f"+3161{i:07d}" for i in range(n)]  # as tests/test_crash.py
    cfg = mqtt_config(tmp_path, broker, max_rate=10)  # 3 s for the fan-out
    bridge(cfg, "subscribers", "add", *numbers)
    gw = Collector(broker)
    d = start_daemon(cfg)
    try:
        bridge(cfg, "ingest", str(MAILS / "01-storing-nieuw.eml"),
               "--now", now_of(MAILS / "01-storing-nieuw.eml"))
        wait_for(lambda: len(gw.got()) >= 8, what="part of the fan-out")
        broker.kill()
        at_kill = len(gw.got())
        assert at_kill < n, "the fan-out finished before the kill; make it slower"
        time.sleep(1.0)
        broker.start()
        wait_for(lambda: len({t for t, _ in gw.got()}) >= n, timeout=60,
                 what="every subscriber reached")
        time.sleep(0.5)
    finally:
        assert d.stop() == 0, d.log()
        gw.close()
    got = Counter(t for t, _ in gw.got())
    assert set(got) == {f"whatsapp/send/text/{x[1:]}@c.us" for x in numbers}
    repeated = {t: c for t, c in got.items() if c > 1}
    assert len(repeated) <= 5 and all(c == 2 for c in repeated.values()), repeated
    log = d.log()
    assert "lost the connection" in log and log.count("mqtt: connected") >= 2, log
    status = json.loads(bridge(cfg, "status", "--json").stdout)
    assert status["deliveries"].get("sent") == n, status


# -- TLS and username/password --------------------------------------------------------------------
async def test_tls_and_password_from_the_environment(tmp_path, monkeypatch):
    from mosquitto import make_certs

    certs = await asyncio.to_thread(make_certs, tmp_path / "certs")
    b = Mosquitto(tmp_path / "tls-broker", tls=certs, users={"bridge": "s3cret"}).start()
    try:
        monkeypatch.setenv("TEST_MQTT_PW", "wrong")
        s = parse_config(Section({
            "port": b.port, "client_id": "bridge-tls", "username": "bridge",
            "password_env": "TEST_MQTT_PW", "tls": True, "tls_ca_file": str(certs["cafile"]),
            "reconnect_min": 0.05, "reconnect_max": 0.2, "jitter": 0}, "channel.mqtt"), tmp_path)
        assert s.tls and s.tls_ca_file == certs["cafile"]
        ch = MqttChannel(s, StubPort())
        task = asyncio.create_task(ch.run())
        try:
            await until(lambda: ch.last_error, what="a refused login")
            assert ch.paused and ch.describe()["state"] == "disconnected"
            assert "s3cret" not in json.dumps(ch.describe()) and "wrong" not in ch.paused
            monkeypatch.setenv("TEST_MQTT_PW", "s3cret")  # read again on every attempt
            await until(lambda: ch.paused is None, what="connected over TLS")
            assert ch.broker.startswith("mqtts://")
            r = await ch.send(Outgoing(1, "+31612345678", "over TLS", "reply"))
            assert r.status == "sent", r
        finally:
            await stop_task(task)

        # Without the CA the broker's certificate is refused (no silent plain-text fallback).
        s2 = parse_config(Section({"port": b.port, "client_id": "bridge-tls2", "tls": True,
                                   "username": "bridge", "password_env": "TEST_MQTT_PW",
                                   "reconnect_min": 0.05}, "channel.mqtt"), tmp_path)
        ch2 = MqttChannel(s2, StubPort())
        task2 = asyncio.create_task(ch2.run())
        try:
            await until(lambda: ch2.last_error, what="a refused certificate")
            assert "certificate" in ch2.last_error.lower() or "ssl" in ch2.last_error.lower(), \
                ch2.last_error
            assert ch2.paused
        finally:
            await stop_task(task2)
    finally:
        b.stop()
