"""Meta's webhook for the Cloud API: the verification handshake, the signature check, and
the parsing of Meta's payload into inbound messages and delivery statuses.

Mounted by the web server (``[web]``) from :meth:`CloudChannel.routes`; Meta needs HTTPS,
so a reverse proxy with TLS sits in front (docs/cloud-api.md).

- ``GET /webhook``: Meta's verification handshake (``hub.mode=subscribe``,
  ``hub.verify_token``, ``hub.challenge``): the challenge as text/plain, else 403.
- ``POST /webhook``: ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body with
  the app secret, else 403; a signed body that is not JSON is 400. Inbound messages go to
  the inbound path (committed durably before we answer), statuses to the channel; then
  200. A failure inside answers 500, so Meta delivers the webhook again (repeats are
  harmless: inbound messages are deduplicated by id, statuses only move forward).

Payload reference: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

from bridge.channels.base import HttpRequest, HttpResponse, Metric, Route
from bridge.core.models import InboundMessage
from bridge.core.phone import mask
from bridge.port import ReceiptState

log = logging.getLogger(__name__)

PATH = "/webhook"
# Inbound message types and where their text is; others are skipped (logged, not answered).
_MEDIA_WITH_CAPTION = ("image", "video", "document")
_EMPTY = ("audio", "voice", "sticker", "location", "contacts")
# The statuses we act on; others (e.g. "deleted", "warning") are ignored.
RECEIPTS: dict[str, ReceiptState] = {"sent": "sent", "delivered": "delivered", "read": "read",
                                     "failed": "failed"}
StatusHandler = Callable[[str, ReceiptState, "int | None", str], Awaitable[None]]


@dataclass(frozen=True)
class WebhookStatus:
    """One entry of ``statuses``: a message's later state, with Meta's first error."""

    id: str  # the wamid
    status: str  # sent, delivered, read, failed (others are passed on and ignored)
    code: int | None = None
    title: str = ""


class Parsed(NamedTuple):
    """What a webhook body holds (unpacks as ``messages, statuses, skipped``)."""

    messages: list[InboundMessage]
    statuses: list[WebhookStatus]
    skipped: list[str]  # notes on what was left out


def signature_ok(raw: bytes, header: str | None, app_secret: bytes) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` over the raw body, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret, raw, hashlib.sha256).hexdigest().encode()
    # bytes, not str: compare_digest refuses non-ASCII strings (a 500 instead of a 403)
    given = header[len("sha256="):].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, given)


def _text_of(m: dict) -> str | None:
    t = m.get("type")
    if t == "text":
        return str((m.get("text") or {}).get("body") or "")
    if t == "button":  # a quick-reply button of a template
        b = m.get("button") or {}
        return str(b.get("text") or b.get("payload") or "")
    if t == "interactive":
        i = m.get("interactive") or {}
        r = i.get("button_reply") or i.get("list_reply") or {}
        return str(r.get("title") or "")
    if t in _MEDIA_WITH_CAPTION:
        return str((m.get(t) or {}).get("caption") or "")
    if t in _EMPTY:
        return ""
    return None  # reaction, system, unsupported, ephemeral, order, ...


def parse_webhook(doc: object) -> Parsed:
    """A webhook body (JSON) -> inbound messages, statuses, and notes on skipped items.

    A sender is ``+<from>``, or ``user:<user id>`` when Meta leaves out the number
    (business-scoped user id, BSUID).
    """
    out = Parsed([], [], [])
    if not isinstance(doc, dict):
        out.skipped.append("body is not a JSON object")
        return out
    for entry in doc.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            if (change or {}).get("field") != "messages":
                out.skipped.append(f"field {change.get('field')!r}")
                continue
            value = change.get("value") or {}
            contacts = [c for c in value.get("contacts") or [] if isinstance(c, dict)]
            for m in value.get("messages") or []:
                if isinstance(m, dict):
                    _message(m, contacts, out)
            for s in value.get("statuses") or []:
                if not isinstance(s, dict) or not s.get("id"):
                    continue
                code, title = None, ""
                errs = s.get("errors") or []
                if errs and isinstance(errs[0], dict):
                    code = errs[0].get("code") if isinstance(errs[0].get("code"), int) else None
                    title = str(errs[0].get("title") or errs[0].get("message") or "")
                out.statuses.append(WebhookStatus(str(s["id"]), str(s.get("status") or ""),
                                                  code, title))
    return out


def _message(m: dict, contacts: list[dict], out: Parsed) -> None:
    number = str(m.get("from") or "")
    uid = m.get("from_user_id") or m.get("user_id")
    if not uid:
        for c in contacts:
            if c.get("user_id") and (not number or c.get("wa_id") == number
                                     or len(contacts) == 1):
                uid = c["user_id"]
                break
    if number.isdigit():
        sender = "+" + number
    elif uid:
        sender = "user:" + str(uid)
    else:
        out.skipped.append("message without from or user_id")
        return
    text = _text_of(m)
    if text is None:
        out.skipped.append(f"{m.get('type')} message from {mask(sender)}")
        return
    try:
        at = datetime.fromtimestamp(int(m.get("timestamp")), timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        at = datetime.now(timezone.utc)
    mid = str(m.get("id") or "")
    if not mid:
        out.skipped.append(f"message without id from {mask(sender)}")
        return
    out.messages.append(InboundMessage(channel="cloud", sender=sender, text=text,
                                       message_id=mid, received_at=at,
                                       user_id=str(uid) if uid else None))


class Webhook:
    """The two routes of Meta's webhook. ``inbound(msg)`` commits an inbound message (and
    its reply) durably; ``on_status(wamid, state, code, title)`` applies one status."""

    def __init__(self, verify_token: str, app_secret: bytes,
                 inbound: Callable[[InboundMessage], Awaitable[None]],
                 on_status: StatusHandler):
        self._verify_token = verify_token
        self._app_secret = app_secret
        self._inbound = inbound
        self._on_status = on_status
        self.results: dict[str, int] = {}  # POSTs by result: ok, forbidden, bad, error

    def routes(self) -> list[Route]:
        return [Route("GET", PATH, self.verify), Route("POST", PATH, self.receive)]

    def metrics(self) -> Metric:
        return Metric("bridge_webhook_requests", "Webhook POSTs by result", "counter",
                      ("result",), {(r,): n for r, n in sorted(self.results.items())})

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
        try:
            for msg in parsed.messages:
                await self._inbound(msg)  # commits durably before it returns
            for s in parsed.statuses:
                state = RECEIPTS.get(s.status)
                if state is not None:
                    await self._on_status(s.id, state, s.code, s.title)
        except Exception:
            self._count("error")
            log.exception("cloud: webhook processing failed; answering 500 so Meta retries")
            return HttpResponse(500, "error")
        self._count("ok")
        return HttpResponse(text="ok")
