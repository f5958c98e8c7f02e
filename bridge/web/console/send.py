"""Zelf versturen: an operator writes a message (as support did by hand before the
bridge), sees it as subscribers will (tidied and cut as every notice), confirms with the
number of recipients, and it goes through the outbox like any notice
(:meth:`bridge.review.ReviewDesk.send_message`). On the Cloud API it goes as the
configured template (``[channel.cloud.templates.bericht]``, else the fallback template).
"""

from __future__ import annotations

from aiohttp import web

from bridge.web.console.context import Console

MAX_INPUT = 4000  # characters typed; the message itself is cut to render.max_length


def setup(router: web.UrlDispatcher, c: Console) -> None:
    desk = c.app.review

    def common(text: str) -> dict:
        shown = desk.message_text(text)
        return {"tekst": text, "bericht": shown, "ingekort": len(" ".join(text.split())) >
                len(" ".join(shown.split())) and bool(shown),
                "ontvangers": c.store.subscribers.count(),
                "max_lengte": c.cfg.render.max_length, "kanaal": c.cfg.channel.type}

    async def page(request: web.Request) -> web.Response:
        return c.page(request, "send.html", stap="schrijven", **common(""))

    async def preview(request: web.Request) -> web.Response:
        form = await c.form(request)
        return c.page(request, "_send_preview.html", **common(form.get("tekst", "")[:MAX_INPUT]))

    async def send(request: web.Request) -> web.StreamResponse:
        form = await c.form(request)
        text = form.get("tekst", "")[:MAX_INPUT]
        ctx = common(text)
        if not ctx["bericht"]:
            return c.page(request, "send.html", status=400, stap="schrijven",
                          fout="Schrijf eerst een bericht.", **ctx)
        if form.get("bevestigd") != "ja":
            return c.page(request, "send.html", stap="bevestigen", **ctx)
        outcome = desk.send_message(text, by=c.user(request).name)
        c.audit(request, "message.send", f"notice {outcome.notice_id}",
                f"to {outcome.queued} subscribers: {ctx['bericht'][:200]}")
        raise c.redirect(f"/console/notices/{outcome.notice_id}",
                         f"Bericht verstuurd: melding {outcome.notice_id} gaat naar"
                         f" {outcome.queued} abonnees.")

    router.add_get("/send", page)
    router.add_post("/send/preview", preview)
    router.add_post("/send", send)
