"""The operator console: web pages where support staff see, correct, approve and stop what
goes to customers, and edit the texts with a live preview.

Mounted by :class:`bridge.web.server.WebServer` under ``/console/`` when ``[web] console =
true`` (a sub-application with its own middleware, so ``/healthz``, ``/metrics`` and a
channel's webhook are untouched). One module per page, each with ``setup(router,
console)``:

============== ============================================================================
auth           sign-in (throttled), sign-out, the session and CSRF guard for every page
overview       Overzicht: health, fan-outs under way, counts, last mails; live (events)
mails          Meldingen: mails, incidents, notices and their deliveries, reveal a number
review         Controle: a review item beside its fields; correct, preview, approve, reject
control        stop a notice, pause and resume all sending (each confirmed)
texts          Teksten: edit a template with a live preview; save, versions, restore
send           Zelf versturen: an operator's own message, preview, confirm, send
subscribers    Abonnees: count, chart, search, remove, import a list
audit          Logboek: every change, who and when
============== ============================================================================

Pages are server-rendered (``templates/console/``); ``static/console.js`` (vendored, no
build step, no CDN) adds live updates (server-sent events) and live previews, and every
page works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.web.console import (audit, auth, control, mails, overview, review, send,
                                subscribers, texts)
from bridge.web.console.context import PREFIX, Console

if TYPE_CHECKING:
    from bridge.app import App
    from bridge.web.server import WebSettings

__all__ = ["Console", "mount"]

STATIC = Path(__file__).parent / "static"


def mount(root: web.Application, settings: WebSettings, app: App) -> Console:
    """Add the console under ``/console/`` to the web server's application; returns it."""
    console = Console(settings, app)
    sub = web.Application(middlewares=[auth.guard(console)])
    sub.router.add_static("/static", STATIC, append_version=False)
    for module in (auth, overview, mails, review, control, texts, send, subscribers, audit):
        module.setup(sub.router, console)
    sub.on_shutdown.append(overview.close_streams(console))
    root.add_subapp(PREFIX, sub)
    root.router.add_get(PREFIX, _to_console)
    return console


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(PREFIX + "/")
