"""whatsapp-web.js payloads: what the gateway publishes (a message object) and what it
expects on the send topic. Pure: no logging, no I/O. See docs/mqtt.md, "Inbound messages".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

from bridge.core.models import InboundMessage
from bridge.core.phone import PhoneError, id_kind, mask, sender_id


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

