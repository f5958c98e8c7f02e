"""Overzicht: the health of each part, fan-outs under way (progress, rate, ETA), the review
queue, open incidents, subscribers and the last mails; and ``/console/events``, the
server-sent events that keep a page current without reloading.

The event stream re-renders a page's live fragments when something happened (the App's
events: a mail processed, a review decided, a fan-out ended, the channel paused or
resumed) and at least every :data:`TICK` seconds (progress, and changes made by other
processes such as the CLI), and sends only fragments that changed. The page's
``console.js`` puts each fragment into the element with its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

from aiohttp import web

from bridge.aio import first_of
from bridge.events import ChannelPaused, ChannelResumed, FanOutEnded, MailProcessed, ReviewDecided
from bridge.store.mails import header_subject
from bridge.web.console.context import Console

TICK = 2.0  # seconds between refreshes of a live page without events
KEEPALIVE = 15.0  # seconds without a write before a comment is sent (a closed page's stream ends)
RATE_WINDOW = 30.0  # seconds of progress samples a fan-out's rate is measured over


class Live:
    """The console's view of change: wakes event streams, measures fan-out rates."""

    def __init__(self, c: Console):
        self.c = c
        self.changed = asyncio.Event()
        self.closing = asyncio.Event()
        self.streams = 0
        self._samples: dict[int, deque[tuple[float, int]]] = {}
        bus = c.app.events
        for kind in (MailProcessed, ReviewDecided, FanOutEnded, ChannelPaused, ChannelResumed):
            bus.subscribe(kind, self._wake)

    def _wake(self, event: object) -> None:
        # Published on the event loop's thread (the daemon) or, in tests, anywhere.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon(self.changed.set)

    def fanouts(self) -> list[dict[str, Any]]:
        """Fan-outs under way with done/total, rate (per second) and ETA (seconds)."""
        now = time.monotonic()
        out = []
        rows = self.c.store.notices.in_progress()
        for r in rows:
            total = r["recipients"] or 0
            left = r["open"]
            s = self._samples.setdefault(r["id"], deque())
            s.append((now, left))
            while s and now - s[0][0] > RATE_WINDOW:
                s.popleft()
            rate = None
            if len(s) >= 2 and s[-1][0] > s[0][0]:
                rate = max(0.0, (s[0][1] - s[-1][1]) / (s[-1][0] - s[0][0]))
            if not rate:
                rate = None
            out.append({**r, "total": total, "done": max(0, total - left), "left": left,
                        "rate": rate, "eta": left / rate if rate else None,
                        "percent": int(100 * (total - left) / total) if total else 100})
        for gone in set(self._samples) - {r["id"] for r in rows}:
            del self._samples[gone]
        return out


def _health(c: Console) -> list[dict[str, str]]:
    """One row per part: name, state word (goed, let op, fout, uit) and the detail."""
    app = c.app
    rows: list[dict[str, str]] = []
    h = app.health()
    rows.append({"deel": "Opslag", "staat": "goed" if h.store_ok else "fout",
                 "uitleg": f"{c.cfg.store.path.name}" if h.store_ok else "de opslag antwoordt niet"})
    parts: dict[str, dict] = {}
    with contextlib.suppress(Exception):
        parts = {name: part.describe() for name, part in app.parts.items()}
    smtp = parts.get("smtp")
    if smtp is None:
        rows.append({"deel": "SMTP", "staat": "uit", "uitleg": "niet aan ([smtp] enabled)"})
    else:
        rows.append({"deel": "SMTP", "staat": "goed" if smtp.get("listening") else "fout",
                     "uitleg": f"poort {smtp.get('port')}; {smtp.get('accepted', 0)} mails"
                               f" aangenomen, {smtp.get('refused', 0)} geweigerd"})
    imap = parts.get("imap")
    if imap is None:
        rows.append({"deel": "IMAP", "staat": "uit", "uitleg": "geen [imap] ingesteld"})
    else:
        ok = imap.get("connected")
        err = imap.get("last_error")
        rows.append({"deel": "IMAP", "staat": "goed" if ok else "fout",
                     "uitleg": f"{imap.get('server')} {imap.get('folder')}: "
                               + ("verbonden" if ok else f"niet verbonden ({err or 'bezig'})")})
    kanaal = c.cfg.channel.type
    if h.paused:
        rows.append({"deel": f"Kanaal ({kanaal})", "staat": "fout",
                     "uitleg": f"gepauzeerd: {h.paused}"})
    else:
        rows.append({"deel": f"Kanaal ({kanaal})", "staat": "goed", "uitleg": "klaar om te versturen"})
    p = c.store.control.paused()
    if p is not None:
        rows.append({"deel": "Versturen", "staat": "let op",
                     "uitleg": f"gepauzeerd door {p.by} sinds {c.local(p.since)}"
                               + (f": {p.reason}" if p.reason else "")})
    else:
        s = app.sending(h)  # bridge.sendhealth: degraded when most sends are not accepted
        if s.state == "degraded":
            rows.append({"deel": "Versturen", "staat": "fout" if s.urgent else "let op",
                         "uitleg": f"verstoord sinds {c.local(s.since)}: {s.reason};"
                                   f" {h.queue_depth or 0} berichten in de wachtrij,"
                                   f" {s.retrying} wachten op een nieuwe poging"})
        else:
            rows.append({"deel": "Versturen", "staat": "goed",
                         "uitleg": f"{h.queue_depth or 0} berichten in de wachtrij"})
    mo = parts.get("mail_out")
    if mo is not None:
        err = mo.get("last_error")
        rows.append({"deel": "Mail terug", "staat": "let op" if err else "goed",
                     "uitleg": f"via {mo.get('relay')}; {mo.get('waiting', 0)} wachten"
                               + (f"; laatste fout: {err}" if err else "")})
    return rows


def live_fragments(c: Console, live: Live) -> dict[str, str]:
    """The overview's live parts, rendered (element id -> HTML)."""
    st = c.store
    mails = st.mails.recent(10)
    for m in mails:
        m["subject"] = header_subject(m.pop("head", None))
    ctx = {"health": _health(c), "fanouts": live.fanouts(),
           "review_count": st.mails.review_count(),
           "open_incidents": st.incidents.open_count(), "subscribers": st.subscribers.count(),
           "waiting": st.deliveries.pending(), "mails": mails, "lokaal": c.local}
    tmpl = c.env.get_template("_overview_live.html")
    module = tmpl.make_module(ctx)
    return {"live-health": str(module.m_health()), "live-fanouts": str(module.m_fanouts()),
            "live-counts": str(module.m_counts()), "live-mails": str(module.m_mails()),
            "nav-review-count": str(ctx["review_count"] or "")}


def setup(router: web.UrlDispatcher, c: Console) -> None:
    live = c.live = Live(c)  # type: ignore[attr-defined]

    async def overview(request: web.Request) -> web.Response:
        return c.page(request, "overview.html", fragments=live_fragments(c, live),
                      klaar=request.query.get("klaar"))

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # nginx: do not buffer the stream
        await resp.prepare(request)
        page = request.query.get("pagina", "")
        token = c.user(request).token
        sent: dict[str, str] = {}
        last_write = time.monotonic()
        live.streams += 1
        try:
            while not live.closing.is_set():
                if c.accounts.session(token) is None:
                    await resp.write(b"event: signedout\ndata: {}\n\n")
                    break
                frags = live_fragments(c, live) if page == "overview" else {
                    "nav-review-count": str(c.store.mails.review_count() or "")}
                wrote = False
                for key, html in frags.items():
                    if sent.get(key) != html:
                        sent[key] = html
                        data = json.dumps({"id": key, "html": html})
                        await resp.write(f"data: {data}\n\n".encode())
                        wrote = True
                if not wrote and time.monotonic() - last_write > KEEPALIVE:
                    await resp.write(b": -\n\n")  # a comment: finds a browser that left
                    wrote = True
                if wrote:
                    last_write = time.monotonic()
                live.changed.clear()
                await first_of(live.changed.wait(), live.closing.wait(), timeout=TICK)
                await asyncio.sleep(0.2)  # a burst of events: one refresh
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            live.streams -= 1
        return resp

    router.add_get("/", overview)
    router.add_get("/events", events)


def close_streams(c: Console):
    """on_shutdown: end the event streams, so the server stops without waiting for them."""

    async def close(app: web.Application) -> None:
        live: Live | None = getattr(c, "live", None)
        if live is not None:
            live.closing.set()
            for _ in range(50):
                if not live.streams:
                    break
                await asyncio.sleep(0.02)

    return close
