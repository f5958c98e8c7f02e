"""The MQTT side of the linked-phone channel: the aiomqtt client as configured, the state of
one connection, and acknowledging inbound messages only after they are committed.

- :func:`make_client`: an ``aiomqtt.Client`` with a stable client id and a persistent
  session (MQTT 3.1.1 ``clean_session=False``, or MQTT 5 ``clean_start=False`` with a
  session expiry), so messages the gateway published while the bridge was away are
  delivered when it comes back; TLS and a password from the environment when configured.
- :class:`ManualAck`: aiomqtt 2.5 has no public switch to hold back the PUBACK of an
  inbound message (aiomqtt issue #345, PR #346 still open), so it turns on paho-mqtt's
  ``manual_ack`` on the wrapped paho client and calls ``ack(mid, qos)`` itself once the
  message is committed; when that is not possible it falls back to paho's automatic ack and
  says so once in the log. This is the one place that reaches into aiomqtt's paho client.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Callable

import aiomqtt

from bridge.channels.mqtt.settings import MqttSettings
from bridge.config import secret

log = logging.getLogger("bridge.channels.mqtt")

QOS = 1  # sends and the subscription: at least once


class Redeliver(Exception):
    """The inbound path failed; drop the connection so the broker sends the message again."""


@dataclass
class Conn:
    """One connection to the broker: ``lost`` is set when it ends; ``manual_ack``: inbound
    messages are acknowledged by :meth:`ManualAck.ack`, after their commit."""

    client: aiomqtt.Client
    lost: asyncio.Event
    manual_ack: bool
    since: float


def make_client(s: MqttSettings) -> aiomqtt.Client:
    """The client for one connection attempt. The password is read from its environment
    variable now (a renewed one is used at the next attempt); raises
    :class:`bridge.config.ConfigError` when it is not set."""
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
        kw["tls_context"] = tls_context(s)
    client = aiomqtt.Client(
        s.host, s.port, identifier=s.client_id, username=s.username, password=password,
        keepalive=s.keepalive, timeout=s.connect_timeout,
        logger=logging.getLogger("bridge.channels.mqtt.client"), **kw)
    # The dispatcher may have more publishes waiting for PUBACK than aiomqtt's default
    # threshold of 10 (it logs a warning per publish beyond that).
    client.pending_calls_threshold = 10_000
    return client


def tls_context(s: MqttSettings) -> ssl.SSLContext:
    """TLS to the broker: the system's CA store or ``tls_ca_file``, a client certificate
    for mutual TLS, no host name check with ``tls_insecure`` (testing only)."""
    ctx = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
    if s.tls_cert_file:
        ctx.load_cert_chain(str(s.tls_cert_file), str(s.tls_key_file))
    if s.tls_insecure:
        ctx.check_hostname = False
    return ctx


def watch_session(client: aiomqtt.Client) -> Callable[[], bool | None]:
    """Record the CONNACK's "session present" flag of ``client`` (MQTT 3.1.1 section
    3.2.2.2, MQTT 5 section 3.2.2.1.1): the returned function gives it after the connect
    (None: not known, e.g. a paho without the hook). True on a reconnect means the broker
    kept the bridge's persistent session, and with it what was published while the bridge
    was away. paho's ``on_connect`` is wrapped (aiomqtt's own handler still runs)."""
    seen: list[bool] = []
    paho = getattr(client, "_client", None)
    original = getattr(paho, "on_connect", None)
    if paho is None or original is None:
        return lambda: None

    def on_connect(c, userdata, flags, reason_code, properties=None):  # paho's signature
        present = getattr(flags, "session_present", None)
        if present is not None:
            seen.append(bool(present))
        original(c, userdata, flags, reason_code, properties)

    paho.on_connect = on_connect
    return lambda: seen[-1] if seen else None


class ManualAck:
    """Acknowledge inbound messages only after they are committed (``manual_ack = true``)."""

    def __init__(self, wanted: bool):
        self.wanted = wanted
        self._warned = False

    def enable(self, client: aiomqtt.Client) -> bool:
        """Turn on paho's manual ack on ``client`` (before it connects); False when it is
        not wanted or this aiomqtt/paho cannot (then said once in the log)."""
        if not self.wanted:
            return False
        paho = getattr(client, "_client", None)
        if paho is None or not hasattr(paho, "manual_ack_set") or not hasattr(paho, "ack"):
            if not self._warned:
                self._warned = True
                log.warning("mqtt: this aiomqtt/paho-mqtt cannot acknowledge after commit; "
                            "inbound messages are acknowledged on receipt (a message in hand "
                            "at a crash can be lost; redeliveries are deduplicated)")
            return False
        paho.manual_ack_set(True)
        return True

    @staticmethod
    def ack(conn: Conn, message: aiomqtt.Message) -> None:
        """The PUBACK of ``message``, now that it is committed (nothing for QoS 0, for a
        connection without manual ack, or one that is gone: the broker sends it again and
        the store ignores it as a duplicate)."""
        if not conn.manual_ack or message.qos == 0 or conn.lost.is_set():
            return
        rc = conn.client._client.ack(message.mid, message.qos)  # noqa: SLF001
        if rc:
            log.debug("mqtt: ack of message %d not sent (rc %s); the broker will resend it and "
                      "the store ignores it as a duplicate", message.mid, rc)


def describe_error(e: BaseException) -> str:
    """An exception with its cause, for the log and ``last_error``."""
    text = str(e) or type(e).__name__
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text
