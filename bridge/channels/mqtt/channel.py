"""The linked-phone channel itself: sends paced by the dispatcher and acknowledged by the
broker, the connection kept up with backoff, inbound messages handed to the application
and acknowledged only after their commit. See the package doc and docs/mqtt.md."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import aiomqtt
from aiomqtt import MqttError

from bridge.channels.base import BaseChannel, Outgoing, SendResult
from bridge.channels.mqtt.connection import (QOS, Conn, ManualAck, Redeliver, describe_error,
                                             watch_session,
                                             make_client)
from bridge.channels.mqtt.payload import Skip, parse_inbound, send_payload
from bridge.channels.mqtt.settings import MqttSettings
from bridge.config import ConfigError, SettingsTable
from bridge.core.models import InboundMessage
from bridge.core.phone import PhoneError, chat_id, mask, mask_text
from bridge.logs import eta
from bridge.port import ChannelPort, CheckPort, StoreUnavailable

log = logging.getLogger("bridge.channels.mqtt")


# What the bridge cannot check (docs/mqtt.md, 'Broker and gateway configuration'): said once
# in the start-up log and by `bridge check`.
PERSISTENCE_NOTE = (
    "the bridge cannot see whether the gateway is connected or whether the broker keeps "
    "messages for it: notices sent while the gateway is away are lost (though counted as "
    "sent) unless the broker keeps them for the gateway's persistent session (gateway: "
    "fixed client id, clean session off; broker: QoS 1 or queue_qos0_messages true, "
    "persistence true, max_queued_messages above the subscriber count); see docs/mqtt.md")


class MqttChannel(BaseChannel):
    name = "mqtt"
    inbound_attempts = 5  # tries to handle one inbound message before it is dropped
    inbound_retry_delay = 0.5  # first wait (doubling) for a retry in place (QoS 0)
    store_wait_max = 30.0  # longest wait between tries while the store cannot be written

    def __init__(self, settings: MqttSettings, port: ChannelPort):
        self.settings = settings
        self._port = port
        self.max_rate: float | None = settings.max_rate
        self.jitter = settings.jitter
        self.min_interval = settings.min_interval
        self._conn: Conn | None = None
        self._why: str = "not connected to the MQTT broker yet"
        self._backoff = settings.reconnect_min
        self._fanouts: OrderedDict[int, None] = OrderedDict()
        self._inbound_failures: dict[str, int] = {}
        self._acks = ManualAck(settings.manual_ack)
        self._qos0_warned = False
        self._persistence_said = False  # PERSISTENCE_NOTE logged (once per process)
        # the last CONNACK: did the broker keep the bridge's session? (None: not known)
        self.session_kept: bool | None = None
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        self.handled = 0
        self.skipped = 0
        self.connects = 0
        self.last_error: str | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def broker(self) -> str:
        return f"{'mqtts' if self.settings.tls else 'mqtt'}://{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        c = self._conn
        return c is not None and not c.lost.is_set()

    @property
    def paused(self) -> str | None:
        return None if self.connected else self._why

    def describe(self) -> dict[str, object]:
        return {
            "type": "mqtt",
            "state": "connected" if self.connected else "disconnected",
            "broker": self.broker,
            "client_id": self.settings.client_id,
            "paused": self.paused,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "received": self.received,
            "handled": self.handled,
            "skipped": self.skipped,
            "connects": self.connects,
            "session_kept": self.session_kept,
            "last_error": self.last_error,
            "max_rate": self.max_rate,
            "jitter": self.jitter,
        }

    # -- sending -----------------------------------------------------------------------------
    async def send(self, msg: Outgoing) -> SendResult:
        if msg.to.startswith("user:"):
            return SendResult("failed", error="mqtt: a hidden number (user id) cannot be "
                                              "addressed through the linked phone")
        try:
            chat = chat_id(msg.to)
        except PhoneError as e:
            return SendResult("failed", error=f"mqtt: {e}")
        conn = self._conn
        if conn is None or conn.lost.is_set():
            return SendResult("paused", error=f"mqtt: {self._why}",
                              retry_after=self._paused_retry())
        self._fanout_check(msg)
        topic = self.settings.topic_for(chat)
        publish = asyncio.ensure_future(
            conn.client.publish(topic, send_payload(msg.text), qos=QOS, timeout=math.inf))
        lost = asyncio.ensure_future(conn.lost.wait())
        try:
            await asyncio.wait({publish, lost}, timeout=self.settings.publish_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not publish.done():
                publish.cancel()
            for t in (publish, lost):
                if t.done() and not t.cancelled():
                    t.exception()  # retrieved: no "never retrieved" noise
        if publish.done() and not publish.cancelled():
            err = publish.exception()
            if err is None:
                self.sent += 1
                return SendResult.ok(f"mqtt-{msg.delivery_id}")
            self.send_errors += 1
            if isinstance(err, MqttError):
                # Almost always "not connected"; the connection loop will notice.
                self.last_error = f"publish: {err}"
                return SendResult("paused", error=f"mqtt: publish failed: {err}",
                                  retry_after=self._paused_retry())
            return SendResult("failed", error=f"mqtt: cannot publish: {type(err).__name__}: {err}")
        self.send_errors += 1
        if conn.lost.is_set():
            return SendResult("paused", error="mqtt: connection to the broker lost during the "
                                              "publish (it may have arrived; it is sent again)",
                              retry_after=self._paused_retry())
        return SendResult("retry", error=f"mqtt: no PUBACK from the broker within "
                                         f"{self.settings.publish_timeout:g} s")

    def _paused_retry(self) -> float:
        return max(0.2, min(5.0, self._backoff))

    def fanout_eta(self, remaining: int) -> float:
        """Seconds the channel's own pace needs for ``remaining`` messages."""
        return remaining * self.settings.mean_interval

    def _fanout_check(self, msg: Outgoing) -> None:
        """Warn once per notice when its fan-out over the phone will take long."""
        nid = msg.notice_id
        limit = self.settings.long_fanout_warning
        if nid is None or not limit or nid in self._fanouts:
            return
        self._fanouts[nid] = None
        while len(self._fanouts) > 256:
            self._fanouts.popitem(last=False)
        try:
            progress = self._port.notice_progress(nid)
        except StoreUnavailable as e:  # a warning must never stop a send
            log.debug("mqtt: no fan-out size for notice %s: %s", nid, e)
            return
        if progress is None:
            return
        remaining = progress.waiting
        seconds = self.fanout_eta(remaining)
        if seconds <= limit:
            return
        done_at = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).astimezone()
        log.warning(
            "mqtt: notice %d goes to %d recipients through the linked phone at about %.1f s "
            "per message (max_rate %g/s + jitter up to %g s): this takes about %s, until "
            "around %s. The slow pace protects the phone's number from a WhatsApp ban for "
            "bulk sending; raise channel.mqtt.max_rate only with care.",
            nid, remaining, self.settings.mean_interval, self.settings.max_rate,
            self.settings.jitter, eta(seconds), done_at.strftime("%H:%M"))

    # -- the connection ----------------------------------------------------------------------
    async def run(self) -> None:
        s = self.settings
        if not self._persistence_said:  # once a process, not per restart of this task
            self._persistence_said = True
            log.warning("mqtt: %s", PERSISTENCE_NOTE)
        self._backoff = s.reconnect_min
        failures = 0  # failed attempts since the last successful connection
        while True:
            before = self.connects
            try:
                await self._session()
            except Redeliver as e:
                self._why = f"reconnecting for a redelivery ({e})"
            except ConfigError as e:  # e.g. the password's environment variable is not set
                if self.last_error != str(e):
                    log.error("mqtt: cannot connect: %s; sends wait in the outbox", e)
                self.last_error = str(e)
                self._why = f"cannot connect: {e}"
            except (MqttError, OSError, ssl.SSLError) as e:
                self.last_error = describe_error(e)
                self._why = f"MQTT broker {self.broker} unreachable: {self.last_error}"
                if self.connects > before:
                    log.warning("mqtt: lost the connection to %s: %s; sends wait in the outbox",
                                self.broker, self.last_error)
            finally:
                c = self._conn
                if c is not None:
                    c.lost.set()
                    self._conn = None
            wait = self._backoff * random.uniform(0.8, 1.2)
            if self.connects > before:  # was connected: the loss is logged above
                failures = 0
                log.info("mqtt: reconnecting in %.1f s", wait)
            else:
                # One WARNING when the broker cannot be reached, then INFO, with a
                # reminder at WARNING every ten attempts.
                failures += 1
                level = logging.WARNING if failures % 10 == 1 else logging.INFO
                log.log(level, "mqtt: %s; attempt %d failed, next in %.1f s", self._why,
                        failures, wait)
            await asyncio.sleep(wait)
            self._backoff = min(s.reconnect_max, self._backoff * 2)

    def _check_session(self, present: bool | None) -> None:
        """The broker's CONNACK said whether it kept the bridge's persistent session. Not
        kept although the bridge had connected before (the store remembers it, across
        restarts): what the gateway published while the bridge was away is lost, so the
        broker does not keep sessions (no ``persistence``, or ``persistent_client_expiration``
        shorter than the absence). Logged once per loss as a WARNING."""
        key = f"mqtt:session:{self.settings.client_id}@{self.broker}"
        try:
            known = self._port.state_get(key)
        except StoreUnavailable:
            return
        self.session_kept = present
        if present is False and known:
            log.warning(
                "mqtt: the broker %s did not keep the bridge's session %r (CONNACK session "
                "present = 0, though the bridge was connected before, last at %s): "
                "inbound messages published while the bridge was away are lost; the broker "
                "needs persistence true and no persistent_client_expiration shorter than an "
                "outage (see docs/mqtt.md, 'Broker and gateway configuration')",
                self.broker, self.settings.client_id, known)
        elif present and known:
            log.info("mqtt: the broker kept the bridge's session (session present)")
        with contextlib.suppress(StoreUnavailable):
            self._port.state_set(key, datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def _client(self) -> aiomqtt.Client:
        return make_client(self.settings)

    async def _session(self) -> None:
        s = self.settings
        client = self._client()
        manual = self._acks.enable(client)
        session_present = watch_session(client)
        async with client:
            conn = Conn(client=client, lost=asyncio.Event(), manual_ack=manual,
                         since=time.monotonic())
            granted = await client.subscribe(s.receive_filter, qos=QOS)
            codes = [getattr(g, "value", g) for g in (granted or ())]
            if any(c >= 0x80 for c in codes):
                log.error("mqtt: the broker refused the subscription to %s (code %s): inbound "
                          "messages will not arrive; check the broker's ACL for %s",
                          s.receive_filter, codes, s.client_id)
            self._conn = conn
            self.connects += 1
            self._backoff = s.reconnect_min
            self._why = "not connected to the MQTT broker"
            log.info("mqtt: connected to %s as %s (MQTT %s, persistent session); "
                     "receiving on %s, sending on %s", self.broker, s.client_id, s.protocol,
                     s.receive_filter, s.topic_for("{chat_id}"))
            self._check_session(session_present())
            try:
                async for message in client.messages:
                    await self._on_message(conn, message)
            finally:
                conn.lost.set()
                self._conn = None

    async def _on_message(self, conn: Conn, message: aiomqtt.Message) -> None:
        self.received += 1
        topic = mask_text(str(message.topic))
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray, str)):
            payload = b"" if payload is None else str(payload).encode()
        parsed = parse_inbound(payload)
        if isinstance(parsed, Skip):
            self.skipped += 1
            if parsed.malformed:
                log.warning("mqtt: skipped a malformed message on %s: %s (%d bytes)", topic,
                            parsed.reason, len(payload))
            else:
                log.info("mqtt: skipped a message on %s: %s", topic, parsed.reason)
            ManualAck.ack(conn, message)
            return
        if message.qos == 0 and not self._qos0_warned:
            self._qos0_warned = True
            log.warning(
                "mqtt: the gateway publishes inbound messages at QoS 0 (whatsapp-web-to-mqtt "
                "does): the broker keeps them for the bridge while it is away only with "
                "queue_qos0_messages true (Mosquitto), and a QoS 0 message received but not "
                "yet committed when the bridge crashes is lost (QoS 0 has no acknowledgement "
                "to hold back); see docs/mqtt.md, 'Broker and gateway configuration'")
        # The broker sends a message again only at QoS 1 with the ack held back (manual ack):
        # then a failure is retried through a reconnect. A QoS 0 message, or one acknowledged
        # on receipt, never comes again, so it is retried here.
        redeliverable = conn.manual_ack and message.qos > 0
        held = 0  # waits for a store that cannot be written (not counted as failures)
        while True:
            try:
                await self._port.inbound(parsed)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as e:
                if e.problem is None:  # a passing failure (locked): counted as below
                    if await self._inbound_failed(conn, message, parsed, e, redeliverable):
                        continue
                    return
                # The store cannot be written now (disk full): not the message's fault and
                # not counted; hold it unacknowledged here until the store takes it (the
                # application logs the store's state once a minute).
                held += 1
                wait = min(self.store_wait_max, self.inbound_retry_delay * 2 ** (held - 1))
                log.info("mqtt: inbound message from %s held: the store cannot be written "
                         "(%s); trying again in %.1f s", mask(parsed.sender), e.problem, wait)
                await asyncio.sleep(wait)
                continue
            except Exception as e:  # noqa: BLE001
                if await self._inbound_failed(conn, message, parsed, e, redeliverable):
                    continue
                return
            break
        self._inbound_failures.pop(parsed.message_id, None)
        self.handled += 1
        ManualAck.ack(conn, message)  # only now: the message and its effect are committed

    async def _inbound_failed(self, conn: Conn, message: aiomqtt.Message, parsed: InboundMessage,
                              e: Exception, redeliverable: bool) -> bool:
        """Count a failure to hand over ``parsed``: True to try again in place (after a
        wait), False when it was dropped; raises Redeliver to get it again from the broker."""
        n = self._inbound_failures.get(parsed.message_id, 0) + 1
        self._inbound_failures[parsed.message_id] = n
        if n < self.inbound_attempts and redeliverable:
            log.exception("mqtt: inbound message from %s could not be handled (attempt "
                          "%d); it stays unacknowledged and comes again after a "
                          "reconnect", mask(parsed.sender), n)
            raise Redeliver(f"inbound handling failed: {type(e).__name__}") from e
        if n < self.inbound_attempts:
            wait = self.inbound_retry_delay * 2 ** (n - 1)
            log.exception("mqtt: inbound message from %s could not be handled (attempt "
                          "%d); the broker will not send it again (%s), so it is "
                          "retried here in %.1f s", mask(parsed.sender), n,
                          "QoS 0" if message.qos == 0 else "acknowledged on receipt",
                          wait)
            await asyncio.sleep(wait)
            return True
        log.exception("mqtt: inbound message from %s could not be handled %d times; "
                      "dropped", mask(parsed.sender), n)
        self._inbound_failures.pop(parsed.message_id, None)
        self.skipped += 1
        ManualAck.ack(conn, message)
        return False

    async def close(self) -> None:
        c = self._conn
        if c is not None:
            c.lost.set()


def create(settings: SettingsTable, port: ChannelPort) -> MqttChannel:
    if not isinstance(settings, MqttSettings):
        raise TypeError(f"mqtt channel: expected MqttSettings, got {type(settings).__name__}")
    return MqttChannel(settings, port)


def check(settings: SettingsTable, port: CheckPort) -> list[str]:
    """``bridge check``: the broker is reached only by the daemon, so its persistence
    cannot be checked here; one warning line says what is lost without it."""
    return [f"channel.mqtt:0: warning: {PERSISTENCE_NOTE}"]

