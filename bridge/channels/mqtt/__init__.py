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

One module per job:

- :mod:`.settings`    ``[channel.mqtt]``: defaults (once, on the dataclass) and parsing;
- :mod:`.payload`     whatsapp-web.js payloads: a message object -> InboundMessage, the
                      send payload (pure);
- :mod:`.connection`  the aiomqtt client as configured, one connection's state, and
                      acknowledging inbound messages after their commit (manual ack);
- :mod:`.channel`     the channel: sends, pacing warnings, the connection loop, inbound.
"""

from bridge.channels.mqtt.channel import MqttChannel, check, create
from bridge.channels.mqtt.payload import ALT_ID_FIELDS, Skip, parse_inbound, send_payload
from bridge.channels.mqtt.settings import MqttSettings, parse_config

__all__ = ["ALT_ID_FIELDS", "MqttChannel", "MqttSettings", "Skip", "check", "create",
           "parse_config", "parse_inbound", "send_payload"]
