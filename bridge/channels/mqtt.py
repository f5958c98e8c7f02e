"""The linked-phone channel: WhatsApp on a phone behind an MQTT gateway (aiomqtt).

A small gateway (for example ``whatsapp-web-to-mqtt``, whatsapp-web.js) drives the
WhatsApp Web session of the ISP's dedicated phone and speaks MQTT. The wire format is that
gateway's by default; topics are configurable (see docs/mqtt.md):

- send: publish ``{prefix}/send/text/{chat_id}`` with ``{"content": "<text>"}`` at QoS 1,
  ``chat_id`` being the number without "+" followed by "@c.us";
- receive: subscribe ``{prefix}/message/#`` at QoS 1; each payload is a whatsapp-web.js
  message object (``from``, ``body``, ``type``, ``fromMe``, ``id._serialized``,
  ``timestamp``). Text, media captions, voice notes, contact cards and locations go to the
  inbound path (see :func:`parse_inbound`); a sender "...@lid" is matched through the ids
  linked to a subscriber, with the phone number where the payload carries it. Messages
  from the phone itself, protocol events, reactions and calls are skipped, malformed
  payloads are logged (numbers masked) and skipped.

Semantics:

- a send counts as ``sent`` when the broker acknowledges the QoS 1 PUBLISH (PUBACK). The
  phone side gives no delivery receipt.
- :meth:`MqttChannel.run` owns the connection (``async with aiomqtt.Client``) and reconnects
  with exponential backoff up to ``reconnect_max``. While there is no connection
  :attr:`MqttChannel.paused` says why, so deliveries wait in the outbox without using up
  attempts; a send cut off by a lost connection returns ``paused`` (it may have reached the
  broker: at most a duplicate, never a loss).
- inbound: a stable client id and a persistent session (MQTT 3.1.1 ``clean_session=False``,
  or MQTT 5 ``clean_start=False`` with a session expiry), so messages the gateway published
  while the bridge was away are delivered when it comes back. A message is acknowledged
  (PUBACK) only after :class:`bridge.inbound.InboundHandler` has committed it durably. aiomqtt
  2.5 has no public switch for that (aiomqtt issue #345, PR #346 still open), so the channel
  turns on paho-mqtt's ``manual_ack`` on the wrapped paho client and calls ``ack(mid, qos)``
  itself; when that is not possible it falls back to paho's automatic ack and says so once in
  the log. Either way the inbound path is idempotent: the store ignores a message id it has
  seen before (``inbound.dedupe_days``), so a redelivered message has no second effect.
  This covers QoS 1 only. The default gateway publishes at QoS 0: the broker then keeps
  messages for the absent bridge only with ``queue_qos0_messages true`` (Mosquitto), never
  sends one again, and a QoS 0 message in hand at a crash is lost; a failure to handle one
  is retried in place instead of through a reconnect.
- pacing: ``max_rate`` (default 1 message/s) and a random ``jitter`` (default up to 1 s)
  between sends, applied by the dispatcher; a fan-out that will take longer than
  ``long_fanout_warning`` seconds is announced with a WARNING and its ETA.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt import MqttError

from bridge.channels.base import BaseChannel, Outgoing, SendResult
from bridge.config import ConfigError, Section, SettingsTable, secret
from bridge.core.models import InboundMessage
from bridge.core.phone import PhoneError, chat_id, id_kind, mask, mask_text, sender_id
from bridge.logs import eta
from bridge.port import ChannelPort, CheckPort, StoreUnavailable

log = logging.getLogger("bridge.channels.mqtt")

QOS = 1
_WILDCARDS = set("#+")


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "whatsapp"
    send_topic: str = "{prefix}/send/text/{chat_id}"
    receive_topic: str = "{prefix}/message/#"
    client_id: str = "storingsbridge"
    protocol: str = "3.1.1"  # or "5"
    session_expiry: int = 7 * 86400  # MQTT 5 only: how long the broker keeps the session
    keepalive: int = 30
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's CA store
    tls_cert_file: Path | None = None  # client certificate (mutual TLS)
    tls_key_file: Path | None = None
    tls_insecure: bool = False  # do not check the broker's host name (testing only)
    max_rate: float = 1.0  # messages per second
    jitter: float = 1.0  # up to this many extra seconds between two sends, at random
    min_interval: float = 0.0  # seconds between two messages to the same recipient
    publish_timeout: float = 10.0  # seconds to wait for the broker's PUBACK
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    long_fanout_warning: float = 600.0  # warn when a fan-out will take longer (seconds)
    manual_ack: bool = True  # acknowledge inbound messages only after they are committed

    @property
    def receive_filter(self) -> str:
        return self.receive_topic.format(prefix=self.prefix)

    def topic_for(self, chat: str) -> str:
        return self.send_topic.format(prefix=self.prefix, chat_id=chat)

    @property
    def mean_interval(self) -> float:
        """Average seconds per message at this channel's own pace."""
        return 1.0 / self.max_rate + self.jitter / 2


def _check_topic(sec: Section, key: str, value: str, fields: dict[str, str],
                 wildcards: bool) -> None:
    try:
        topic = value.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        names = ", ".join("{" + f + "}" for f in fields)
        raise sec.fail(key, f"may use only {names}, got {value!r} ({type(e).__name__}: {e})") \
            from None
    if not topic or "\0" in topic:
        raise sec.fail(key, f"not a usable MQTT topic: {value!r}")
    if not wildcards and _WILDCARDS & set(topic):
        raise sec.fail(key, f"a topic to publish to cannot contain + or #, got {value!r}")
    if wildcards:
        levels = topic.split("/")
        for i, level in enumerate(levels):
            if ("#" in level and (level != "#" or i != len(levels) - 1)) or \
                    ("+" in level and level != "+"):
                raise sec.fail(key, f"not a valid MQTT topic filter: {value!r}")


def parse_config(sec: Section, base: Path) -> MqttSettings:
    s = MqttSettings(
        host=sec.str("host", "127.0.0.1"),
        port=sec.int("port", 1883, min=1, max=65535),
        prefix=sec.str("prefix", "whatsapp"),
        send_topic=sec.str("send_topic", "{prefix}/send/text/{chat_id}"),
        receive_topic=sec.str("receive_topic", "{prefix}/message/#"),
        client_id=sec.str("client_id", "storingsbridge"),
        protocol=sec.str("protocol", "3.1.1", choices=("3.1.1", "5")),
        session_expiry=sec.int("session_expiry", 7 * 86400, min=60, max=0xFFFFFFFF),
        keepalive=sec.int("keepalive", 30, min=5, max=3600),
        username=sec.opt_str("username"),
        password_env=sec.env("password_env"),
        tls=sec.bool("tls", False),
        tls_ca_file=sec.path("tls_ca_file", None, base),
        tls_cert_file=sec.path("tls_cert_file", None, base),
        tls_key_file=sec.path("tls_key_file", None, base),
        tls_insecure=sec.bool("tls_insecure", False),
        max_rate=sec.float("max_rate", 1.0, min=0.001, max=1000),
        jitter=sec.float("jitter", 1.0, min=0, max=600),
        min_interval=sec.float("min_interval", 0.0, min=0, max=3600),
        publish_timeout=sec.float("publish_timeout", 10.0, min=0.1, max=600),
        connect_timeout=sec.float("connect_timeout", 10.0, min=0.1, max=600),
        reconnect_min=sec.float("reconnect_min", 1.0, min=0.01, max=3600),
        reconnect_max=sec.float("reconnect_max", 60.0, min=0.01, max=86400),
        long_fanout_warning=sec.float("long_fanout_warning", 600.0, min=0, max=7 * 86400),
        manual_ack=sec.bool("manual_ack", True),
    )
    if not s.host:
        raise sec.fail("host", "is required")
    if not s.client_id or len(s.client_id.encode()) > 65535:
        raise sec.fail("client_id", "must be a non-empty string (one per bridge: the broker "
                                    "keeps the inbound session under it)")
    if not s.prefix or _WILDCARDS & set(s.prefix):
        raise sec.fail("prefix", f"must be a topic prefix without + or #, got {s.prefix!r}")
    _check_topic(sec, "send_topic", s.send_topic,
                 {"prefix": s.prefix, "chat_id": "31612345678@c.us"}, wildcards=False)
    if "{chat_id}" not in s.send_topic:
        raise sec.fail("send_topic", f"must contain {{chat_id}}, got {s.send_topic!r}")
    _check_topic(sec, "receive_topic", s.receive_topic, {"prefix": s.prefix}, wildcards=True)
    if s.password_env and not s.username:
        raise sec.fail("password_env", "needs username as well")
    if (s.tls_ca_file or s.tls_cert_file or s.tls_key_file or s.tls_insecure) and not s.tls:
        raise sec.fail("tls", "tls_* keys are set but tls = false")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise sec.fail("tls_key_file", "set both tls_cert_file and tls_key_file, or neither")
    if s.reconnect_max < s.reconnect_min:
        raise sec.fail("reconnect_max", "must be at least reconnect_min")
    sec.done()
    return s


# -- inbound payloads -------------------------------------------------------------------------
@dataclass(frozen=True)
class Skip:
    """Why an inbound payload is not handed to the inbound path."""

    reason: str
    malformed: bool = False  # True: a broken payload (WARNING); False: simply not for us


# whatsapp-web.js message types (MessageTypes in src/util/Constants.js) -> what the
# bridge makes of them. Types not listed are a person's message of a kind we do not read:
# "other" (the help reply), never lost in silence.
_TEXT_TYPES = frozenset(("chat", "list_response", "buttons_response", "template_button_reply"))
_MEDIA_TYPES = frozenset(("image", "video", "document", "album", "sticker"))
_KIND_OF_TYPE = {"ptt": "voice", "audio": "voice", "vcard": "contact",
                 "multi_vcard": "contact", "location": "location"}
# Not a message a person wrote to us: protocol and notification events, a deleted message,
# a reaction to one of ours, a call, a message WhatsApp has not decrypted yet.
_NOT_A_MESSAGE = frozenset((
    "revoked", "protocol", "e2e_notification", "notification", "notification_template",
    "gp2", "group_notification", "call_log", "ciphertext", "debug",
    "broadcast_notification", "reaction"))
# Where a gateway's payload may carry the other id of the sender: the phone number of an
# @lid sender (WhatsApp attaches it as "senderPn" in LID chats; Baileys-style gateways as
# "remoteJidAlt"), or the @lid id of a phone-number sender. Looked up in this order.
ALT_ID_FIELDS: tuple[tuple[str, ...], ...] = (
    ("senderPn",), ("_data", "senderPn"), ("_data", "key", "remoteJidAlt"),
    ("_data", "remoteJidAlt"), ("remoteJidAlt",), ("senderLid",), ("_data", "senderLid"),
)


def _field(doc: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    if isinstance(doc, dict):  # a whatsapp-web.js wid object
        doc = doc.get("_serialized")
    return doc if isinstance(doc, str) and doc else None


def _sender_ids(doc: dict, sender: str) -> tuple[str, tuple[str, ...]]:
    """(primary id, alternates) of the sender: the phone number first when the payload
    carries one for an @lid sender. Raises PhoneError for a sender that is no person."""
    primary = sender_id(sender)
    alternates: list[str] = []
    for path in ALT_ID_FIELDS:
        value = _field(doc, path)
        if value is None:
            continue
        try:
            alt = sender_id(value if "@" in value else value + "@c.us")
        except PhoneError:
            continue
        if alt != primary and alt not in alternates:
            alternates.append(alt)
    numbers = [a for a in alternates if id_kind(a) == "number"]
    if id_kind(primary) == "lid" and numbers:
        alternates.remove(numbers[0])
        primary, alternates = numbers[0], [primary, *alternates]
    return primary, tuple(alternates)


def parse_inbound(payload: bytes | str, *, now: datetime | None = None) -> InboundMessage | Skip:
    """A whatsapp-web.js message object (JSON) -> InboundMessage, or why it is skipped.

    - text ("chat", list and button replies): ``body``;
    - media (image, video, document, sticker): ``kind="media"``, the text is the caption
      (``_data.caption``, or ``body`` when ``hasMedia``), "" without one;
    - voice notes ("ptt", "audio"), contact cards ("vcard", "multi_vcard"), locations:
      their kind, no text (a vCard's body is never read: it holds other people's numbers);
    - protocol events, deleted messages, reactions, calls: skipped;
    - any other type: ``kind="other"`` (the help reply).

    The sender is ``from``: a phone-number chat id ("...@c.us") or a linked id
    ("...@lid", written "lid:<digits>"); where the payload carries the other id too (see
    :data:`ALT_ID_FIELDS`), the phone number is the sender and the linked id an alternate,
    so the inbound path links them. Pure: no logging, no I/O. Reasons never contain a full
    phone number.
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        return Skip(f"not JSON ({type(e).__name__})", malformed=True)
    if not isinstance(doc, dict):
        return Skip(f"not a JSON object but {type(doc).__name__}", malformed=True)
    ident = doc.get("id")
    if doc.get("fromMe") is True or (isinstance(ident, dict) and ident.get("fromMe") is True):
        return Skip("sent by the linked phone itself (fromMe)")
    if doc.get("isStatus") is True:
        return Skip("a status update, not a chat message")
    mtype = doc.get("type")
    if not isinstance(mtype, str) or not mtype:
        return Skip("no type", malformed=True)
    if mtype in _NOT_A_MESSAGE:
        return Skip(f"type {mtype[:20]!r}: not a message a person wrote (an event, a "
                    f"deleted message, a reaction or a call)")
    body = doc.get("body")
    data = doc.get("_data") if isinstance(doc.get("_data"), dict) else {}
    if mtype in _TEXT_TYPES:
        if not isinstance(body, str):
            return Skip("no text body", malformed=True)
        kind, text = "text", body
    elif mtype in _MEDIA_TYPES:
        caption = data.get("caption")
        if not isinstance(caption, str):
            caption = body if doc.get("hasMedia") is True and isinstance(body, str) else ""
        kind, text = "media", caption
    else:
        kind, text = _KIND_OF_TYPE.get(mtype, "other"), ""
    sender = doc.get("from")
    if not isinstance(sender, str) or not sender:
        return Skip("no sender (from)", malformed=True)
    try:
        primary, alternates = _sender_ids(doc, sender)
    except PhoneError:
        shown = mask(sender)
        if sender.lower().endswith(("@c.us", "@s.whatsapp.net", "@lid")):
            return Skip(f"sender {shown} is not a valid phone number or linked id",
                        malformed=True)
        return Skip(f"sender {shown} is not a person's chat id (a group or a broadcast)")
    mid = None
    if isinstance(ident, dict):
        mid = ident.get("_serialized") or ident.get("id")
    elif isinstance(ident, str):
        mid = ident
    if not isinstance(mid, str) or not mid:
        return Skip("no message id (id._serialized)", malformed=True)
    received = now or datetime.now(timezone.utc)
    ts = doc.get("timestamp")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts) and ts > 0:
        if ts > 1e11:  # milliseconds
            ts = ts / 1000
        try:
            received = datetime.fromtimestamp(ts, timezone.utc)
        except (OverflowError, OSError, ValueError):
            pass
    mime = data.get("mimetype")
    return InboundMessage(channel="mqtt", sender=primary, text=text, message_id=mid,
                          received_at=received, alternates=alternates, kind=kind,
                          media_type=(mime if isinstance(mime, str) else mtype)[:60])


def send_payload(text: str) -> bytes:
    """The JSON the gateway expects on the send topic."""
    return json.dumps({"content": text}, ensure_ascii=False).encode("utf-8")


# -- the channel ------------------------------------------------------------------------------
class _Redeliver(Exception):
    """The inbound path failed; drop the connection so the broker sends the message again."""


@dataclass
class _Conn:
    client: aiomqtt.Client
    lost: asyncio.Event
    manual_ack: bool
    since: float


class MqttChannel(BaseChannel):
    name = "mqtt"
    inbound_attempts = 5  # tries to handle one inbound message before it is dropped
    inbound_retry_delay = 0.5  # first wait (doubling) for a retry in place (QoS 0)

    def __init__(self, settings: MqttSettings, port: ChannelPort):
        self.settings = settings
        self._port = port
        self.max_rate: float | None = settings.max_rate
        self.jitter = settings.jitter
        self.min_interval = settings.min_interval
        self._conn: _Conn | None = None
        self._why: str = "not connected to the MQTT broker yet"
        self._backoff = settings.reconnect_min
        self._fanouts: OrderedDict[int, None] = OrderedDict()
        self._inbound_failures: dict[str, int] = {}
        self._auto_ack_warned = False
        self._qos0_warned = False
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
        self._backoff = s.reconnect_min
        failures = 0  # failed attempts since the last successful connection
        while True:
            before = self.connects
            try:
                await self._session()
            except _Redeliver as e:
                self._why = f"reconnecting for a redelivery ({e})"
            except ConfigError as e:  # e.g. the password's environment variable is not set
                if self.last_error != str(e):
                    log.error("mqtt: cannot connect: %s; sends wait in the outbox", e)
                self.last_error = str(e)
                self._why = f"cannot connect: {e}"
            except (MqttError, OSError, ssl.SSLError) as e:
                self.last_error = _describe(e)
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

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        password = secret(s.password_env, "channel.mqtt.password_env") if s.password_env else None
        kw: dict[str, Any] = {}
        if s.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.session_expiry
            kw.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props)
        else:
            kw.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False)
        if s.tls:
            kw["tls_context"] = self._tls_context()
        client = aiomqtt.Client(
            s.host, s.port, identifier=s.client_id, username=s.username, password=password,
            keepalive=s.keepalive, timeout=s.connect_timeout,
            logger=logging.getLogger("bridge.channels.mqtt.client"), **kw)
        # The dispatcher may have more publishes waiting for PUBACK than aiomqtt's default
        # threshold of 10 (it logs a warning per publish beyond that).
        client.pending_calls_threshold = 10_000
        return client

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        if s.tls_cert_file:
            ctx.load_cert_chain(str(s.tls_cert_file), str(s.tls_key_file))
        if s.tls_insecure:
            ctx.check_hostname = False
        return ctx

    def _enable_manual_ack(self, client: aiomqtt.Client) -> bool:
        """Turn on paho's manual ack (aiomqtt 2.5 has no public switch; issue #345)."""
        if not self.settings.manual_ack:
            return False
        paho = getattr(client, "_client", None)
        if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
            if not self._auto_ack_warned:
                self._auto_ack_warned = True
                log.warning("mqtt: this aiomqtt/paho-mqtt cannot acknowledge after commit; "
                            "inbound messages are acknowledged on receipt (a message in hand "
                            "at a crash can be lost; redeliveries are deduplicated)")
            return False
        paho.manual_ack_set(True)
        return True

    async def _session(self) -> None:
        s = self.settings
        client = self._client()
        manual = self._enable_manual_ack(client)
        async with client:
            conn = _Conn(client=client, lost=asyncio.Event(), manual_ack=manual,
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
            try:
                async for message in client.messages:
                    await self._on_message(conn, message)
            finally:
                conn.lost.set()
                self._conn = None

    async def _on_message(self, conn: _Conn, message: aiomqtt.Message) -> None:
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
            self._ack(conn, message)
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
        while True:
            try:
                await self._port.inbound(parsed)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                n = self._inbound_failures.get(parsed.message_id, 0) + 1
                self._inbound_failures[parsed.message_id] = n
                if n < self.inbound_attempts and redeliverable:
                    log.exception("mqtt: inbound message from %s could not be handled (attempt "
                                  "%d); it stays unacknowledged and comes again after a "
                                  "reconnect", mask(parsed.sender), n)
                    raise _Redeliver(f"inbound handling failed: {type(e).__name__}") from e
                if n < self.inbound_attempts:
                    wait = self.inbound_retry_delay * 2 ** (n - 1)
                    log.exception("mqtt: inbound message from %s could not be handled (attempt "
                                  "%d); the broker will not send it again (%s), so it is "
                                  "retried here in %.1f s", mask(parsed.sender), n,
                                  "QoS 0" if message.qos == 0 else "acknowledged on receipt",
                                  wait)
                    await asyncio.sleep(wait)
                    continue
                log.exception("mqtt: inbound message from %s could not be handled %d times; "
                              "dropped", mask(parsed.sender), n)
                self._inbound_failures.pop(parsed.message_id, None)
                self.skipped += 1
                self._ack(conn, message)
                return
            break
        self._inbound_failures.pop(parsed.message_id, None)
        self.handled += 1
        self._ack(conn, message)  # only now: the message and its effect are committed

    def _ack(self, conn: _Conn, message: aiomqtt.Message) -> None:
        if not conn.manual_ack or message.qos == 0 or conn.lost.is_set():
            return
        rc = conn.client._client.ack(message.mid, message.qos)  # noqa: SLF001
        if rc:
            log.debug("mqtt: ack of message %d not sent (rc %s); the broker will resend it and "
                      "the store ignores it as a duplicate", message.mid, rc)

    async def close(self) -> None:
        c = self._conn
        if c is not None:
            c.lost.set()


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


def create(settings: SettingsTable, port: ChannelPort) -> MqttChannel:
    if not isinstance(settings, MqttSettings):
        raise TypeError(f"mqtt channel: expected MqttSettings, got {type(settings).__name__}")
    return MqttChannel(settings, port)


def check(settings: SettingsTable, port: CheckPort) -> list[str]:
    """Nothing to check beyond the config (the broker is reached only by the daemon)."""
    return []
