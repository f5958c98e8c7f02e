"""Meta's webhook for the Cloud API: the verification handshake, the signature check, and
the parsing of Meta's payload into inbound messages and delivery statuses.

Mounted by the web server (``[web]``) from :meth:`CloudChannel.routes`; Meta needs HTTPS,
so a reverse proxy with TLS sits in front (docs/cloud-api.md).

- ``GET /webhook``: Meta's verification handshake (``hub.mode=subscribe``,
  ``hub.verify_token``, ``hub.challenge``): the challenge as text/plain, else 403.
- ``POST /webhook``: ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body with
  the app secret, else 403; a signed body that is not JSON is 400. Inbound messages and
  identity changes (``system`` messages) go to the inbound path, and so do the ids a status
  pairs (``recipient_id`` with ``recipient_user_id``), each committed durably before we
  answer; statuses go to the channel; errors Meta reports in a value without anything
  else (``value.errors``) are logged and counted; then 200. A failure inside answers 500,
  so Meta delivers the webhook again (repeats are harmless: inbound messages and identity
  changes are deduplicated by id, statuses only move forward, linking ids twice changes
  nothing).

What a message becomes (:class:`~bridge.core.models.InboundMessage` ``kind``):

=====================================  ======================================================
``type``                               kind, text
=====================================  ======================================================
text, button, interactive              "text": the body, the button's text, the reply's title
image, video, document, sticker        "media": the caption ("" without one)
audio, voice                           "voice" (the help reply)
contacts                               "contact" (the help reply; the cards are never read)
location                               "location" (the help reply)
unsupported and any other type         "other" (the help reply)
reaction, request_welcome              skipped (nothing a person asked; logged)
system ``user_changed_number``         :class:`~bridge.core.models.IdentityChange` "number"
system ``user_changed_user_id``        :class:`~bridge.core.models.IdentityChange` "user_id"
=====================================  ======================================================

The sender is ``+<from>``, or ``user:<BSUID>`` when Meta leaves the number out; the
business-scoped user id (``from_user_id``, or the matching ``contacts[].user_id``) is
passed as an alternate id, so the inbound path links it to the subscriber.

Payload references (Meta, WhatsApp Cloud API): webhooks components
https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components , the system
messages reference (``user_changed_number``: ``system.wa_id`` is the new number,
``system.user_id`` / ``system.previous_user_id`` the new and previous BSUID;
``user_changed_user_id``: the BSUID only) and the status messages reference
(``recipient_id``, ``recipient_user_id``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from bridge.channels.base import HttpRequest, HttpResponse, Metric, Route
from bridge.core.models import IdentityChange, IdPairing, InboundMessage, MessageKind
from bridge.core.phone import mask
from bridge.port import InboundEvent, ReceiptState, StoreUnavailable

log = logging.getLogger(__name__)

PATH = "/webhook"
# Message type -> kind (see the module doc); types not listed are "other", except these:
_KIND_OF_TYPE: dict[str, MessageKind] = {
    "text": "text", "button": "text", "interactive": "text",
    "image": "media", "video": "media", "document": "media", "sticker": "media",
    "audio": "voice", "voice": "voice", "contacts": "contact", "location": "location"}
# Not a message a person wrote to us: a reaction to one of ours, the "chat opened" event.
_NOT_A_MESSAGE = ("reaction", "request_welcome")
# system.type values that change a person's id (Meta's names; "customer_changed_number" is
# the name before Graph API v12, still seen in old payload samples).
_NUMBER_CHANGED = ("user_changed_number", "customer_changed_number")
_USER_ID_CHANGED = "user_changed_user_id"
# The statuses we act on; others (e.g. "deleted", "warning") are ignored.
RECEIPTS: dict[str, ReceiptState] = {"sent": "sent", "delivered": "delivered", "read": "read",
                                     "failed": "failed"}
StatusHandler = Callable[[str, ReceiptState, "int | None", str], Awaitable[None]]
PAIRS_REMEMBERED = 50_000  # pairs of ids handed over in this run (not handed over again)


@dataclass(frozen=True)
class WebhookStatus:
    """One entry of ``statuses``: a message's later state, with Meta's first error, and
    the recipient's ids as the status names them (``recipient`` "+<recipient_id>",
    ``recipient_user`` "user:<recipient_user_id>"; None when absent)."""

    id: str  # the wamid
    status: str  # sent, delivered, read, failed (others are passed on and ignored)
    code: int | None = None
    title: str = ""
    recipient: str | None = None
    recipient_user: str | None = None

    @property
    def pairing(self) -> IdPairing | None:
        """The number and the BSUID of one person, when the status carries both."""
        if self.recipient and self.recipient_user:
            return IdPairing("cloud", (self.recipient, self.recipient_user))
        return None


@dataclass(frozen=True)
class WebhookError:
    """One entry of a value's own ``errors`` (Meta could not process something, e.g. code
    131000 for an incoming message it could not deliver to us): nothing to act on but to
    log and count it."""

    code: int | None
    title: str
    details: str = ""


@dataclass
class Parsed:
    """What a webhook body holds, in the body's order."""

    messages: list[InboundMessage | IdentityChange] = field(default_factory=list)
    statuses: list[WebhookStatus] = field(default_factory=list)
    errors: list[WebhookError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # notes on what was left out


def signature_ok(raw: bytes, header: str | None, app_secret: bytes) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret, raw, hashlib.sha256).hexdigest().encode()
    # bytes, not str: compare_digest refuses non-ASCII strings (a 500 instead of a 403)
    given = header[len("sha256="):].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


def _text_of(m: dict, t: str) -> str:
    """The text a message of type ``t`` carries ("" when none): a body, a button's text,
    an interactive reply's title, a media caption."""
    if t == "text":
        return str((m.get("text") or {}).get("body") or "")
    if t == "button":  # a quick-reply button of a template
        b = m.get("button") or {}
        return str(b.get("text") or b.get("payload") or "")
    if t == "interactive":
        i = m.get("interactive") or {}
        r = i.get("button_reply") or i.get("list_reply") or {}
        return str(r.get("title") or "")
    if _KIND_OF_TYPE.get(t) == "media":
        return str((m.get(t) or {}).get("caption") or "")
    return ""  # voice notes, contact cards, locations: never read


def _number(value: object) -> str | None:
    """A wa_id / from / recipient_id as E.164 ("+<digits>"), or None."""
    s = str(value or "").strip().lstrip("+")
    return "+" + s if s.isdigit() else None


def _user(value: object) -> str | None:
    """A business-scoped user id as "user:<id>", or None."""
    s = str(value or "").strip()
    return "user:" + s if s else None


def _int_code(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _received(m: dict) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(m.get("timestamp"))), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(timezone.utc)


def parse_webhook(doc: object) -> Parsed:
    """A webhook body (JSON) -> inbound messages and identity changes, statuses, the
    value's own errors, and notes on skipped items (see the module doc)."""
    out = Parsed()
    if not isinstance(doc, dict):
        out.skipped.append("body is not a JSON object")
        return out
    for entry in doc.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            if not isinstance(change, dict) or change.get("field") != "messages":
                out.skipped.append(f"field {(change or {}).get('field')!r}")
                continue
            value = change.get("value") or {}
            if not isinstance(value, dict):
                out.skipped.append("value is not an object")
                continue
            contacts = [c for c in value.get("contacts") or [] if isinstance(c, dict)]
            for m in value.get("messages") or []:
                if isinstance(m, dict):
                    _message(m, contacts, out)
            for s in value.get("statuses") or []:
                if isinstance(s, dict) and s.get("id"):
                    out.statuses.append(_status(s))
            for e in value.get("errors") or []:
                if isinstance(e, dict):
                    data = e.get("error_data") if isinstance(e.get("error_data"), dict) else {}
                    out.errors.append(WebhookError(
                        _int_code(e.get("code")), str(e.get("title") or e.get("message") or ""),
                        str(data.get("details") or "")))
    return out


def _status(s: dict) -> WebhookStatus:
    code, title = None, ""
    errs = s.get("errors") or []
    if errs and isinstance(errs[0], dict):
        code = _int_code(errs[0].get("code"))
        title = str(errs[0].get("title") or errs[0].get("message") or "")
    person = s.get("recipient_type") in (None, "individual")  # not a group
    return WebhookStatus(str(s["id"]), str(s.get("status") or ""), code, title,
                         recipient=_number(s.get("recipient_id")) if person else None,
                         recipient_user=_user(s.get("recipient_user_id")) if person else None)


def _message(m: dict, contacts: list[dict], out: Parsed) -> None:
    t = str(m.get("type") or "")
    if t == "system":
        _system(m, out)
        return
    number = _number(m.get("from"))
    uid = m.get("from_user_id") or m.get("user_id")
    if not uid:
        for c in contacts:
            if c.get("user_id") and (not number or _number(c.get("wa_id")) == number
                                     or len(contacts) == 1):
                uid = c["user_id"]
                break
    user = _user(uid)
    sender = number or user
    if sender is None:
        out.skipped.append("message without from or user_id")
        return
    if t in _NOT_A_MESSAGE:
        out.skipped.append(f"{t} message from {mask(sender)}")
        return
    mid = str(m.get("id") or "")
    if not mid:
        out.skipped.append(f"message without id from {mask(sender)}")
        return
    kind = _KIND_OF_TYPE.get(t, "other")
    part = m.get(t) if isinstance(m.get(t), dict) else {}
    media_type = str(part.get("mime_type") or t or "unknown")[:60]
    out.messages.append(InboundMessage(
        channel="cloud", sender=sender, text=_text_of(m, t), message_id=mid,
        received_at=_received(m), alternates=(user,) if user and user != sender else (),
        kind=kind, media_type=media_type))


def _system(m: dict, out: Parsed) -> None:
    """A ``system`` message: a person's number or business-scoped id changed."""
    sysm = m.get("system") if isinstance(m.get("system"), dict) else {}
    t = str(sysm.get("type") or "")
    mid = str(m.get("id") or "")
    old_number = _number(m.get("from"))
    new_user, old_user = _user(sysm.get("user_id")), _user(sysm.get("previous_user_id"))
    if t in _NUMBER_CHANGED:
        new_number = _number(sysm.get("wa_id") or sysm.get("new_wa_id"))
        if new_number is None or not mid:
            out.skipped.append(f"system message {t} without the new number or an id")
            return
        old = (old_number, old_user)
        new = (new_number, new_user)
        kind = "number"
    elif t == _USER_ID_CHANGED:
        if new_user is None or old_user is None or not mid:
            out.skipped.append(f"system message {t} without user_id, previous_user_id or an id")
            return
        # Only the business-scoped id changed; a number Meta names stays the person's.
        old, new, kind = (old_user,), (new_user, old_number), "user_id"
    else:
        out.skipped.append(f"system message {t or 'without a type'!r}")
        return
    out.messages.append(IdentityChange(
        channel="cloud", kind=kind,  # type: ignore[arg-type]
        old=tuple(i for i in old if i), new=tuple(i for i in new if i), event_id=mid,
        received_at=_received(m)))


class Webhook:
    """The two routes of Meta's webhook. ``inbound(event)`` commits an inbound message,
    identity change or pairing of ids (and any reply) durably; ``on_status(wamid, state,
    code, title)`` applies one status."""

    def __init__(self, verify_token: str, app_secret: bytes,
                 inbound: Callable[[InboundEvent], Awaitable[None]],
                 on_status: StatusHandler):
        self._verify_token = verify_token
        self._app_secret = app_secret
        self._inbound = inbound
        self._on_status = on_status
        self.results: dict[str, int] = {}  # POSTs by result: ok, forbidden, bad, error
        self.value_errors: dict[str, int] = {}  # errors Meta reported in a value, by code
        # Pairs of ids handed over already (keyed digests, not the ids): a status comes
        # up to three times per message, and each would be a durable transaction.
        self._paired: OrderedDict[bytes, None] = OrderedDict()

    def routes(self) -> list[Route]:
        return [Route("GET", PATH, self.verify), Route("POST", PATH, self.receive)]

    def metrics(self) -> list[Metric]:
        return [Metric("bridge_webhook_requests", "Webhook POSTs by result", "counter",
                       ("result",), {(r,): n for r, n in sorted(self.results.items())}),
                Metric("bridge_webhook_errors", "Errors Meta reported in a webhook value "
                       "(value.errors), by code", "counter", ("code",),
                       {(c,): n for c, n in sorted(self.value_errors.items())})]

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1

    async def verify(self, request: HttpRequest) -> HttpResponse:
        q = request.query
        token = q.get("hub.verify_token", "")
        if (q.get("hub.mode") == "subscribe" and self._verify_token
                and hmac.compare_digest(token.encode(), self._verify_token.encode())):
            log.info("cloud: webhook verified by Meta")
            return HttpResponse(text=q.get("hub.challenge", ""))
        log.warning("cloud: webhook verification refused (wrong verify token or mode)")
        return HttpResponse(403, "forbidden")

    async def receive(self, request: HttpRequest) -> HttpResponse:
        raw = request.body
        header = request.headers.get("X-Hub-Signature-256")
        if not signature_ok(raw, header, self._app_secret):
            self._count("forbidden")
            log.warning("cloud: webhook POST with a %s signature refused (403)",
                        "wrong" if header else "missing")
            return HttpResponse(403, "forbidden")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._count("bad")
            log.warning("cloud: signed webhook POST that is not JSON (%d bytes)", len(raw))
            return HttpResponse(400, "not JSON")
        parsed = parse_webhook(doc)
        for note in parsed.skipped:
            log.info("cloud: webhook: skipped %s", note)
        for e in parsed.errors:
            key = str(e.code) if e.code is not None else "unknown"
            self.value_errors[key] = self.value_errors.get(key, 0) + 1
            log.warning("cloud: webhook: Meta reports error %s %s%s", key, e.title,
                        f" ({e.details})" if e.details else "")
        try:
            for event in parsed.messages:
                await self._inbound(event)  # commits durably before it returns
            for s in parsed.statuses:
                pairing = s.pairing
                if pairing is not None and self._new_pair(pairing):
                    await self._inbound(pairing)
                state = RECEIPTS.get(s.status)
                if state is not None:
                    await self._on_status(s.id, state, s.code, s.title)
        except StoreUnavailable as e:
            # The store cannot commit (disk full, locked): nothing acknowledged, Meta
            # redelivers. A full store is logged once a minute by the store's health.
            self._count("error")
            log.log(logging.INFO if e.problem else logging.WARNING,
                    "cloud: webhook POST not committed (%s); answering 500 so Meta retries",
                    e.problem or e)
            self._paired.clear()
            return HttpResponse(500, "error")
        except Exception:
            self._count("error")
            log.exception("cloud: webhook processing failed; answering 500 so Meta retries")
            # a pairing not committed must be handed over again when Meta repeats
            self._paired.clear()
            return HttpResponse(500, "error")
        self._count("ok")
        return HttpResponse(text="ok")

    def _new_pair(self, pairing: IdPairing) -> bool:
        """True the first time this run sees these ids together (then remembered)."""
        key = hmac.new(self._app_secret, "\0".join(pairing.ids).encode(),
                       hashlib.sha256).digest()
        if key in self._paired:
            self._paired.move_to_end(key)
            return False
        self._paired[key] = None
        while len(self._paired) > PAIRS_REMEMBERED:
            self._paired.popitem(last=False)
        return True
