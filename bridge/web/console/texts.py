"""Teksten: edit a template with a live preview rendered in the notices' sandbox against
the last real mails' reports and the samples of ``bridge check``; errors as ``bridge
check`` gives them (``path:line: problem``); save only what passes (atomically, into the
editable layer); earlier versions listed and restorable; back to the shipped text.
See :mod:`bridge.template_edit`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

from aiohttp import web

from bridge import template_edit as te
from bridge.core.models import OutageReport
from bridge.web.console.context import Console

REAL = 5  # last real reports to try a notice template on


def real_reports(c: Console) -> list[tuple[str, OutageReport]]:
    """The reports of the last notices made from mails, newest first."""
    out = []
    for n in c.store.notices.recent(40):
        row = c.store.notices.get(n["id"])
        if row and row.get("report"):
            try:
                report = OutageReport.from_json(json.loads(row["report"]))
            except (ValueError, KeyError, TypeError):
                continue
            label = f"melding {n['id']}" + (f" ({n['ticket']})" if n.get("ticket") else "")
            out.append((label, report))
        if len(out) >= REAL:
            break
    return out


def setup(router: web.UrlDispatcher, c: Console) -> None:
    cfg = c.cfg

    def name_of(request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in te.editable(cfg):
            raise web.HTTPNotFound(text="Deze tekst bestaat niet.")
        return name

    async def listing(request: web.Request) -> web.Response:
        names = te.editable(cfg)
        rows = []
        for name in names:
            p = te.edited_path(cfg, name)
            rows.append({"name": name, "folder": name.split("/")[0],
                         "edited": bool(p and p.is_file())})
        return c.page(request, "templates_list.html", rows=rows)

    async def run_trial(name: str, source: str) -> te.Trial:
        real = real_reports(c)
        return await asyncio.to_thread(te.trial, cfg, name, source, real,
                                       datetime.now(timezone.utc))

    async def editor(request: web.Request, *, source: str | None = None, status: int = 200,
                     error: str | None = None) -> web.Response:
        name = name_of(request)
        current, edited = te.current_source(cfg, name)
        text = current if source is None else source
        trial = await run_trial(name, text)
        return c.page(request, "template_edit.html", status=status, name=name, source=text,
                      edited=edited, trial=trial, error=error,
                      versions=c.store.template_versions.of(name),
                      klaar=request.query.get("klaar"))

    async def show(request: web.Request) -> web.Response:
        return await editor(request)

    async def preview(request: web.Request) -> web.Response:
        name = name_of(request)
        form = await c.form(request)
        trial = await run_trial(name, form.get("bron", ""))
        return c.page(request, "_template_preview.html", trial=trial, name=name)

    async def save(request: web.Request) -> web.StreamResponse:
        name = name_of(request)
        form = await c.form(request)
        source = form.get("bron", "")
        if form.get("actie") == "voorbeeld":  # without JavaScript: show the preview
            return await editor(request, source=source)
        try:
            # on the event loop: the store is not used from other threads (a few trial
            # renders, each under the sandbox's CPU deadline)
            te.save(cfg, c.store, name, source, c.user(request).name, real_reports(c),
                    datetime.now(timezone.utc))
        except te.TemplateRejected as e:
            return await editor(request, source=source, status=400,
                                error="Niet bewaard: de tekst heeft fouten. " + "; ".join(e.problems))
        except OSError as e:
            return await editor(request, source=source, status=500,
                                error=f"Niet bewaard: {e.strerror or e}")
        c.audit(request, "template.save", name, f"{len(source)} characters")
        raise c.redirect(f"/console/templates/{name}", "Bewaard: de nieuwe tekst geldt vanaf"
                                                      " de volgende melding.")

    async def restore(request: web.Request) -> web.StreamResponse:
        name = name_of(request)
        form = await c.form(request)
        try:
            version = int(form.get("versie", ""))
        except ValueError:
            raise web.HTTPBadRequest(text="Geen versie gekozen.") from None
        try:
            te.restore(cfg, c.store, name, version, c.user(request).name, real_reports(c),
                       datetime.now(timezone.utc))
        except LookupError as e:
            raise web.HTTPNotFound(text=str(e)) from None
        except te.TemplateRejected as e:
            return await editor(request, status=400, error="Deze versie heeft fouten en is niet"
                                " teruggezet: " + "; ".join(e.problems))
        c.audit(request, "template.restore", name, f"version {version}")
        raise c.redirect(f"/console/templates/{name}", f"Versie {version} teruggezet.")

    async def revert(request: web.Request) -> web.StreamResponse:
        name = name_of(request)
        done = te.revert(cfg, c.store, name, c.user(request).name)
        if done:
            c.audit(request, "template.revert", name, "back to the shipped text")
        raise c.redirect(f"/console/templates/{name}",
                         "De geleverde tekst geldt weer." if done else "Er was niets gewijzigd.")

    router.add_get("/templates", listing)
    router.add_get("/templates/{name:(notices|replies|mail)/[a-z0-9_]+\\.j2}", show)
    router.add_post("/templates/{name:(notices|replies|mail)/[a-z0-9_]+\\.j2}/preview", preview)
    router.add_post("/templates/{name:(notices|replies|mail)/[a-z0-9_]+\\.j2}/save", save)
    router.add_post("/templates/{name:(notices|replies|mail)/[a-z0-9_]+\\.j2}/restore", restore)
    router.add_post("/templates/{name:(notices|replies|mail)/[a-z0-9_]+\\.j2}/revert", revert)
