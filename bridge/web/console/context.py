"""What every console page shares: the App, the page templates, the signed-in user, the
CSRF check, the audit log, time and number formatting, and security headers.

Pages are Jinja templates in ``templates/console/`` (HTML autoescaped, not the notices'
sandbox: these are the project's own templates). Times are shown in the organisation's
zone (``organisation.timezone``, Europe/Amsterdam); numbers masked (``+316****5678``)
unless an operator reveals one, which the audit log records.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from zoneinfo import ZoneInfo

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from bridge.accounts import Accounts, csrf_ok, csrf_token
from bridge.core.phone import mask, mask_text
from bridge.mailout.reasons import in_dutch
from bridge.store.users import Session

if TYPE_CHECKING:
    from bridge.app import App
    from bridge.web.server import WebSettings

PREFIX = "/console"
SESSION_COOKIE = "bridge_session"
LOGIN_COOKIE = "bridge_signin"  # the sign-in form's own CSRF secret, before a session
SHIPPED = Path(__file__).resolve().parents[3] / "templates" / "console"

MENU = (  # (path, label): the menu in plain Dutch
    ("/console/", "Overzicht"),
    ("/console/mails", "Meldingen"),
    ("/console/review", "Controle"),
    ("/console/templates", "Teksten"),
    ("/console/subscribers", "Abonnees"),
    ("/console/send", "Zelf versturen"),
    ("/console/audit", "Logboek"),
)

# Content-Security-Policy: only our own script and style, no inline code, no frames.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self';"
                                " img-src 'self' data:; connect-src 'self'; form-action 'self';"
                                " frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class User:
    """The signed-in operator of a request."""

    name: str
    token: str  # the cookie's session token (its CSRF token is derived from it)
    session: Session

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


USER = web.RequestKey("user", User)  # request[USER]: set by the guard (bridge.web.console.auth)

_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")


def whatsapp_html(text: str) -> Markup:
    """A WhatsApp text as the app shows it: *bold* and _italic_, line breaks kept
    (escaped first: the text is never trusted as HTML)."""
    out = html.escape(text or "")
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return Markup(out)


class Console:
    """The console's shared state; one per web server."""

    def __init__(self, settings: WebSettings, app: App):
        self.settings = settings
        self.app = app
        self.cfg = app.cfg
        self.store = app.store
        self.tz = ZoneInfo(app.cfg.organisation.timezone)
        self.accounts = Accounts(app.store, settings.session_hours, settings.idle_minutes)
        self.secure = settings.public_url.startswith("https://")
        self.url = settings.console_url
        self.live = None  # the overview's Live (event streams), set by overview.setup
        folders = [str(app.cfg.render.templates_dir / "console"), str(SHIPPED)]
        self.env = Environment(loader=FileSystemLoader(folders),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(lokaal=self.local, masker=mask_number, whatsapp=whatsapp_html,
                                tekst_masker=mask_text, aantal=count_nl,
                                uitleg=lambda reason: in_dutch(reason or "") or "")
        self.env.globals.update(menu=MENU, org=app.cfg.organisation)

    # -- formatting -----------------------------------------------------------------------------
    def local(self, t: float | datetime | None, fmt: str = "%d-%m-%Y %H:%M") -> str:
        """A time (Unix seconds or an aware datetime) in the organisation's zone."""
        if t is None or t == "":
            return "-"
        when = t if isinstance(t, datetime) else datetime.fromtimestamp(float(t), timezone.utc)
        return when.astimezone(self.tz).strftime(fmt)

    # -- requests -------------------------------------------------------------------------------
    def address(self, request: web.Request) -> str | None:
        """The browser's address. Behind a reverse proxy on this machine (a loopback peer),
        the last X-Forwarded-For entry: the one the proxy wrote (docs/console.md)."""
        peer = request.remote
        fwd = request.headers.get("X-Forwarded-For")
        if fwd and peer in ("127.0.0.1", "::1"):
            return fwd.split(",")[-1].strip()[:64] or peer
        return peer

    def user(self, request: web.Request) -> User:
        """The signed-in user (the auth middleware guarantees one on console pages)."""
        return request[USER]

    def page(self, request: web.Request, template: str, status: int = 200,
             **ctx: Any) -> web.Response:
        """Render a page (or a fragment: a template whose name starts with "_")."""
        user: User | None = request.get(USER)
        body = self.env.get_template(template).render(
            user=user, csrf=user.csrf if user else ctx.pop("csrf", ""), path=request.path,
            review_count=self._review_count() if user else 0, paused=self._paused() if user else None,
            lokaal=self.local, **ctx)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def _review_count(self) -> int:
        return self.store.mails.review_count()

    def _paused(self):
        return self.store.control.paused()

    async def form(self, request: web.Request) -> dict[str, str]:
        """The POSTed form (cached by aiohttp after the CSRF middleware read it)."""
        data = await request.post()
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def audit(self, request: web.Request, action: str, target: str | None = None,
              detail: str | None = None) -> None:
        """Record a change in the audit log: who (the signed-in user), when, what."""
        self.store.audit.record(self.user(request).name, action, target, detail,
                                self.address(request))

    def redirect(self, location: str, note: str | None = None) -> web.HTTPSeeOther:
        """After a POST: see the result page (303), with a short note to show."""
        if note:
            from urllib.parse import quote

            location += ("&" if "?" in location else "?") + "klaar=" + quote(note)
        return web.HTTPSeeOther(location)

    def started(self, port: int | None) -> None:
        """The web server is listening: say where the console is (the log line a newcomer
        reads after ``bridge run``)."""
        import logging

        if not self.settings.public_url and port:
            self.url = f"http://{self.settings.host}:{port}/console/"
        n = self.store.users.count()
        hint = "" if n else "; no accounts yet: make one with `bridge users add NAME`"
        logging.getLogger("bridge.web").info("console: %s%s", self.url, hint)

    def check_csrf(self, request: web.Request, given: str | None) -> bool:
        user: User | None = request.get(USER)
        if user is not None:
            return csrf_ok(user.token, given)
        return csrf_ok(request.cookies.get(LOGIN_COOKIE), given)


def mask_number(value: str | None) -> str:
    return mask(value) if value else "-"


def count_nl(n: int, one: str, many: str) -> str:
    """"1 abonnee", "3 abonnees"."""
    return f"{n} {one if n == 1 else many}"
