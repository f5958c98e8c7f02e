"""Stopping what goes out: "stop sending" for one notice (its unsent deliveries are
cancelled) and a pause of all sending (kept in the store, so the daemon's dispatcher and
``bridge dispatch`` hold every delivery until someone resumes).

Each is asked for twice: the first POST shows what will happen (how many messages, in
Dutch) with a confirm button; only the confirmed POST changes anything, and the audit log
records it. The same as ``bridge notices cancel ID``, ``bridge pause`` and ``bridge resume``.
"""

from __future__ import annotations

from aiohttp import web

from bridge.web.console.context import Console


def setup(router: web.UrlDispatcher, c: Console) -> None:
    async def stop_notice(request: web.Request) -> web.StreamResponse:
        notice_id = int(request.match_info["id"])
        n = c.store.notices.get(notice_id)
        if n is None:
            raise web.HTTPNotFound(text="Deze melding bestaat niet.")
        form = await c.form(request)
        waiting = c.store.notices.counts(notice_id).get("pending", 0)
        if form.get("bevestigd") != "ja":
            return c.page(request, "confirm.html", titel=f"Melding {notice_id} stoppen?",
                          uitleg=f"{waiting} berichten van deze melding zijn nog niet"
                                 " verstuurd. Die worden geschrapt; wat al verstuurd is, blijft"
                                 " verstuurd.", actie=request.path, knop="Ja, stop deze melding",
                          terug=f"/console/notices/{notice_id}", velden={})
        cancelled = c.store.notices.cancel(notice_id)
        c.audit(request, "notice.cancel", f"notice {notice_id}",
                f"{cancelled} unsent deliveries cancelled")
        raise c.redirect(f"/console/notices/{notice_id}",
                         f"Melding {notice_id} gestopt: {cancelled} berichten geschrapt.")

    async def pause(request: web.Request) -> web.StreamResponse:
        form = await c.form(request)
        reason = " ".join(form.get("reden", "").split())[:300]
        if c.store.control.paused() is not None:
            raise c.redirect("/console/", "Versturen was al gepauzeerd.")
        if form.get("bevestigd") != "ja":
            return c.page(request, "confirm.html", titel="Al het versturen pauzeren?",
                          uitleg=f"Er gaat niets meer naar klanten tot iemand het versturen"
                                 f" hervat. {c.store.deliveries.pending()} berichten wachten"
                                 " nu; nieuwe meldingen wachten ook.",
                          actie=request.path, knop="Ja, pauzeer het versturen",
                          terug="/console/", velden={"reden": reason})
        c.store.control.pause(c.user(request).name, reason)
        c.audit(request, "sending.pause", "all sending", reason or None)
        raise c.redirect("/console/", "Versturen gepauzeerd.")

    async def resume(request: web.Request) -> web.StreamResponse:
        form = await c.form(request)
        p = c.store.control.paused()
        if p is None:
            raise c.redirect("/console/", "Versturen was niet gepauzeerd.")
        if form.get("bevestigd") != "ja":
            return c.page(request, "confirm.html", titel="Versturen hervatten?",
                          uitleg=f"{c.store.deliveries.pending()} berichten wachten en gaan"
                                 " dan meteen naar de klanten.", actie=request.path,
                          knop="Ja, hervat het versturen", terug="/console/", velden={})
        c.store.control.resume()
        c.audit(request, "sending.resume", "all sending", f"was {p.describe()}")
        c.app.wake_dispatcher()
        raise c.redirect("/console/", "Versturen hervat.")

    router.add_post("/notices/{id:\\d+}/stop", stop_notice)
    router.add_post("/pause", pause)
    router.add_post("/resume", resume)
