"""The HTTP side: the Cloud API webhook, ``/healthz`` and ``/metrics``.

An optional part (``[web]`` in the config): ``parse_config`` reads the table, ``build``
makes a :class:`WebServer`; the daemon calls its ``start`` (binds ``host:port``,
127.0.0.1:8080 by default, so a port in use stops the start-up) before its tasks run, and
``run`` serves until the supervisor cancels it after the dispatcher has finished. Meta
needs HTTPS, so put a reverse proxy with TLS in front (see docs/cloud-api.md).

aiohttp.web because the webhook must check the signature over the *raw* request bytes
(``await request.read()``), aiohttp is one dependency we already have (no separate ASGI
server), and an ``AppRunner``/``TCPSite`` runs inside our own event loop and TaskGroup.

Routes:

- ``GET /webhook``: Meta's verification handshake (``hub.mode=subscribe``,
  ``hub.verify_token``, ``hub.challenge``): the challenge as text/plain, else 403.
- ``POST /webhook``: ``X-Hub-Signature-256`` must be the HMAC-SHA256 of the raw body with
  the app secret, else 403. Inbound messages go to the inbound path (committed durably
  before we answer), statuses to the channel's classifier and the store (monotonic); then
  200. A failure inside answers 500, so Meta delivers the webhook again (repeats are
  harmless: inbound messages are deduplicated by id, statuses only move forward).
- ``GET /healthz``: JSON; 200 when the store answers and the channel is not paused, else 503.
- ``GET /metrics``: Prometheus text format (see bridge.metrics).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.config import Section, secret
from bridge.core.models import InboundMessage
from bridge.core.phone import mask
from bridge.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("bridge.web")

# Inbound message types and where their text is; None: skipped (logged, not answered).
_MEDIA_WITH_CAPTION = ("image", "video", "document")
_EMPTY = ("audio", "voice", "sticker", "location", "contacts")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    webhook: bool = True
    verify_token_env: str = "BRIDGE_CLOUD_VERIFY_TOKEN"
    app_secret_env: str = "BRIDGE_CLOUD_APP_SECRET"
    max_body: int = 4 * 1024 * 1024


def parse_config(sec: Section, base: Path) -> WebSettings:
    s = WebSettings(
        host=sec.str("host", "127.0.0.1"),
        port=sec.int("port", 8080, min=0, max=65535),
        webhook=sec.bool("webhook", True),
        verify_token_env=sec.env("verify_token_env", "BRIDGE_CLOUD_VERIFY_TOKEN")
        or "BRIDGE_CLOUD_VERIFY_TOKEN",
        app_secret_env=sec.env("app_secret_env", "BRIDGE_CLOUD_APP_SECRET")
        or "BRIDGE_CLOUD_APP_SECRET",
        max_body=sec.int("max_body", 4 * 1024 * 1024, min=1024, max=64 * 1024 * 1024),
    )
    sec.done()
    return s


def build(settings: WebSettings, app: Any) -> "WebServer":
    return WebServer(settings, app)


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


def parse_webhook(doc: Any) -> tuple[list[InboundMessage], list[dict], list[str]]:
    """A webhook body -> (inbound messages, statuses, notes on skipped items).

    A status is ``{"id", "status", "code", "title"}``. A sender is ``+<from>``, or
    ``user:<user id>`` when Meta leaves out the number (business-scoped user id).
    """
    messages: list[InboundMessage] = []
    statuses: list[dict] = []
    skipped: list[str] = []
    if not isinstance(doc, dict):
        return messages, statuses, ["body is not a JSON object"]
    for entry in doc.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            if (change or {}).get("field") != "messages":
                skipped.append(f"field {change.get('field')!r}")
                continue
            value = change.get("value") or {}
            contacts = [c for c in value.get("contacts") or [] if isinstance(c, dict)]
            for m in value.get("messages") or []:
                if not isinstance(m, dict):
                    continue
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
                    skipped.append("message without from or user_id")
                    continue
                text = _text_of(m)
                if text is None:
                    skipped.append(f"{m.get('type')} message from {mask(sender)}")
                    continue
                try:
                    at = datetime.fromtimestamp(int(m.get("timestamp")), timezone.utc)
                except (TypeError, ValueError, OverflowError, OSError):
                    at = datetime.now(timezone.utc)
                mid = str(m.get("id") or "")
                if not mid:
                    skipped.append(f"message without id from {mask(sender)}")
                    continue
                messages.append(InboundMessage(channel="cloud", sender=sender, text=text,
                                               message_id=mid, received_at=at,
                                               user_id=str(uid) if uid else None))
            for s in value.get("statuses") or []:
                if not isinstance(s, dict) or not s.get("id"):
                    continue
                code, title = None, ""
                errs = s.get("errors") or []
                if errs and isinstance(errs[0], dict):
                    code = errs[0].get("code") if isinstance(errs[0].get("code"), int) else None
                    title = str(errs[0].get("title") or errs[0].get("message") or "")
                statuses.append({"id": str(s["id"]), "status": str(s.get("status") or ""),
                                 "code": code, "title": title})
    return messages, statuses, skipped


class WebServer:
    background = True  # cancelled by the supervisor after the dispatcher has finished

    def __init__(self, settings: WebSettings, app: Any):
        self.settings = settings
        self.app = app
        self.verify_token: str | None = None
        self.app_secret: bytes | None = None
        if settings.webhook:
            # Fail at start-up, with the variable's name, rather than at Meta's first call.
            self.verify_token = secret(settings.verify_token_env, "web.verify_token_env")
            self.app_secret = secret(settings.app_secret_env, "web.app_secret_env").encode()
        self.metrics = Metrics(app)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.started = asyncio.Event()
        self.requests = 0
        self.web = web.Application(client_max_size=settings.max_body)
        if settings.webhook:
            self.web.router.add_get("/webhook", self.verify)
            self.web.router.add_post("/webhook", self.webhook)
        self.web.router.add_get("/healthz", self.healthz)
        self.web.router.add_get("/metrics", self.metrics_page)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind ``host:port`` now. The daemon calls this before its tasks start, so a port in
        use stops it at once ("cannot start: ...", exit 78) instead of crashing the
        supervised web task over and over."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.settings.host, self.settings.port
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        except OSError as e:
            await runner.cleanup()
            reason = str(e.strerror or e)
            if "address already in use" in reason.lower():
                reason = "address already in use"
            raise OSError(e.errno, f"web.port: {host}:{port}: {reason}") from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addrs = runner.addresses
        self.port = addrs[0][1] if addrs else port
        log.info("web: listening on http://%s:%d (%s)", host, self.port,
                 "webhook, /healthz, /metrics" if self.settings.webhook else "/healthz, /metrics")
        self.started.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        if self._runner is None:  # not started by the daemon, or restarted after a crash
            await self.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close the listening socket and the connections (idempotent)."""
        self.started.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def describe(self) -> dict:
        return {"listen": f"{self.settings.host}:{self.port or self.settings.port}",
                "webhook": self.settings.webhook, "requests": self.requests}

    # -- webhook ----------------------------------------------------------------------------
    async def verify(self, request: web.Request) -> web.Response:
        q = request.query
        token = q.get("hub.verify_token", "")
        if (q.get("hub.mode") == "subscribe" and self.verify_token
                and hmac.compare_digest(token.encode(), self.verify_token.encode())):
            log.info("web: webhook verified by Meta")
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        log.warning("web: webhook verification refused (wrong verify token or mode)")
        return web.Response(status=403, text="forbidden", content_type="text/plain")

    async def webhook(self, request: web.Request) -> web.Response:
        self.requests += 1
        raw = await request.read()
        assert self.app_secret is not None
        if not signature_ok(raw, request.headers.get("X-Hub-Signature-256"), self.app_secret):
            self.metrics.webhook_result("forbidden")
            log.warning("web: webhook POST with a %s signature refused (403)",
                        "wrong" if request.headers.get("X-Hub-Signature-256") else "missing")
            return web.Response(status=403, text="forbidden", content_type="text/plain")
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.metrics.webhook_result("bad")
            log.warning("web: signed webhook POST that is not JSON (%d bytes)", len(raw))
            return web.Response(status=400, text="not JSON", content_type="text/plain")
        messages, statuses, skipped = parse_webhook(doc)
        for note in skipped:
            log.info("web: webhook: skipped %s", note)
        try:
            for msg in messages:
                await self.app.inbound(msg)  # commits durably before it returns
            channel = self.app.channel
            on_status = getattr(channel, "on_status", None)
            for s in statuses:
                if s["status"] not in ("sent", "delivered", "read", "failed"):
                    continue
                if on_status is not None:
                    await on_status(s["id"], s["status"], s["code"], s["title"])
                else:
                    err = f"{s['code']} {s['title']}".strip() if s["status"] == "failed" else None
                    await self.app.delivery_status(s["id"], s["status"], err, False)
        except Exception:
            self.metrics.webhook_result("error")
            log.exception("web: webhook processing failed; answering 500 so Meta retries")
            return web.Response(status=500, text="error", content_type="text/plain")
        self.metrics.webhook_result("ok")
        return web.Response(text="ok", content_type="text/plain")

    # -- health and metrics -----------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        store_ok = self.app.store.db.ping()
        try:
            channel = self.app.channel
            paused = channel.paused
            state = channel.describe()
        except Exception as e:  # noqa: BLE001
            paused, state = f"channel error: {e}", {"state": "error"}
        ok = store_ok and not paused
        body = {"status": "ok" if ok else "unhealthy",
                "store": "ok" if store_ok else "unreachable",
                "channel": state, "paused": paused,
                "uptime_s": round(time.time() - getattr(self.app, "started_at", time.time()), 1)}
        if store_ok:
            try:
                body["queue_depth"] = self.app.store.deliveries.pending()
            except Exception:  # noqa: BLE001
                pass
        return web.json_response(body, status=200 if ok else 503,
                                 dumps=lambda o: json.dumps(o, default=str))

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
