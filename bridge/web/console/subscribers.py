"""Abonnees: how many, a chart of subscribes and unsubscribes per day (counted without
ids, :mod:`bridge.store.tally`), search by number, remove (confirmed, erased as for STOP),
and import a list with the per-line outcome of ``bridge subscribers import``
(:func:`bridge.importer.import_list`).
"""

from __future__ import annotations

from aiohttp import web

from bridge.core.importing import NumberListError
from bridge.core.phone import PhoneError, mask, normalise
from bridge.importer import WelcomeRefused, eta, import_list, welcome_problem
from bridge.web.console.chart import day_chart
from bridge.web.console.context import Console

DAYS = 30
MAX_FILE = 4 * 1024 * 1024  # bytes (web.max_body limits the request as a whole)


def setup(router: web.UrlDispatcher, c: Console) -> None:
    subs = c.store.subscribers

    def overview(request: web.Request, status: int = 200, **ctx) -> web.Response:
        days = c.store.tally.per_day(DAYS, c.cfg.organisation.timezone)
        return c.page(request, "subscribers.html", status=status, count=subs.count(),
                      chart=day_chart(days), days=days,
                      welcome_ok=welcome_problem(c.app) is None,
                      klaar=request.query.get("klaar"), **ctx)

    async def page(request: web.Request) -> web.Response:
        q = request.query.get("nummer", "").strip()
        found = None
        error = None
        if q:
            try:
                number = normalise(q, "NL")
            except PhoneError as e:
                error = f"Geen geldig nummer: {e}"
            else:
                s = subs.get(number)
                found = {"number": number, "sub": s,
                         "pending": c.store.deliveries.waiting_for(s.id) if s else 0}
        return overview(request, zoek=q, found=found, zoekfout=error)

    async def remove(request: web.Request) -> web.StreamResponse:
        form = await c.form(request)
        try:
            number = normalise(form.get("nummer", ""), "NL")
        except PhoneError as e:
            return overview(request, status=400, zoekfout=f"Geen geldig nummer: {e}")
        if subs.get(number) is None:
            raise c.redirect("/console/subscribers", f"{mask(number)} is geen abonnee.")
        if form.get("bevestigd") != "ja":
            return c.page(request, "confirm.html", titel=f"{mask(number)} afmelden?",
                          uitleg="Het nummer wordt afgemeld en alles wat erover bewaard is,"
                                 " wordt gewist (zoals bij STOP). Berichten die nog wachten,"
                                 " gaan niet meer.", actie=request.path,
                          knop="Ja, afmelden en wissen", terug="/console/subscribers",
                          velden={"nummer": number})
        removed = subs.remove(number)
        c.store.db.scrub()
        if removed:
            c.audit(request, "subscriber.remove", mask(number))
        raise c.redirect("/console/subscribers", f"{mask(number)} is afgemeld en gewist.")

    async def do_import(request: web.Request) -> web.Response:
        data = await request.post()
        upload = data.get("bestand")
        if not isinstance(upload, web.FileField):
            return overview(request, status=400, importfout="Kies eerst een bestand.")
        raw = upload.file.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            return overview(request, status=400, importfout="Het bestand is te groot (max 4 MB).")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")  # Excel's CSV on Dutch Windows
        dry = data.get("proberen") == "ja"
        welcome = data.get("welkom") == "ja" and welcome_problem(c.app) is None
        reason = str(data.get("reden") or "").strip()[:300] or None
        column = str(data.get("kolom") or "").strip() or None
        name = upload.filename or "upload"
        try:
            result = import_list(c.app, text, name, column=column, reason=reason,
                                 dry_run=dry, welcome=welcome)
        except (NumberListError, WelcomeRefused) as e:
            return overview(request, status=400, importfout=f"{name}: {e}")
        counts = {r: result.count(r) for r in ("added", "already subscribed", "invalid")}
        if not dry:
            c.audit(request, "subscriber.import", name,
                    f"added {counts['added']}, already subscribed {counts['already subscribed']},"
                    f" invalid {counts['invalid']}" + (f"; reason: {reason}" if reason else "")
                    + (f"; {result.welcome} welcome messages" if result.welcome else ""))
        return c.page(request, "import_result.html", result=result, counts=counts, dry=dry,
                      name=name, welcome_eta=eta(result.welcome_hours) if result.welcome else "")

    router.add_get("/subscribers", page)
    router.add_post("/subscribers/remove", remove)
    router.add_post("/subscribers/import", do_import)
