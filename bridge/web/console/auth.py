"""Sign-in and sign-out, and the guard every console request passes.

- No page without a session: a GET goes to the sign-in page (and back afterwards), any
  other request is refused (401).
- Every POST carries the CSRF token of its session (a form field ``csrf`` or the header
  ``X-CSRF-Token`` of the live preview's fetch); the sign-in form, before there is a
  session, carries the token of its own short-lived cookie. A POST without the right one
  is refused (403) and changes nothing.
- The session cookie is HttpOnly, SameSite=Strict, path /console, and Secure when the
  console is served behind TLS (``web.public_url`` https://).
- Sign-in attempts are throttled per account and per address (:mod:`bridge.accounts`);
  every sign-in, failure and sign-out is in the audit log.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from aiohttp import web

from bridge.web.console.context import (LOGIN_COOKIE, PREFIX, SECURITY_HEADERS, SESSION_COOKIE,
                                        USER, Console, User)

PUBLIC = (PREFIX + "/login", PREFIX + "/static/")


def guard(c: Console):
    """The middleware: session, CSRF, security headers."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            resp = await _guarded(c, request, handler)
        except web.HTTPException as e:
            e.headers.update(SECURITY_HEADERS)
            raise
        resp.headers.update(SECURITY_HEADERS)
        return resp

    return middleware


async def _guarded(c: Console, request: web.Request, handler):
    path = request.path
    token = request.cookies.get(SESSION_COOKIE)
    session = c.accounts.session(token) if token else None
    if session is not None and token:
        request[USER] = User(session.user, token, session)
    public = path == PUBLIC[0] or path.startswith(PUBLIC[1])
    if session is None and not public:
        if request.method == "GET" and not path.endswith("/events"):
            raise web.HTTPSeeOther(f"{PREFIX}/login?volgende={quote(request.path_qs)}")
        return web.Response(status=401, text="Niet aangemeld: meld je opnieuw aan.")
    if request.method == "POST":
        data = await request.post()
        given = data.get("csrf") if isinstance(data.get("csrf"), str) else None
        given = given or request.headers.get("X-CSRF-Token")
        if not c.check_csrf(request, given):  # type: ignore[arg-type]
            return c.page(request, "error.html", status=403, titel="Formulier verlopen",
                          melding="Dit formulier is verlopen of komt niet van deze console."
                                  " Laad de pagina opnieuw en probeer het nog eens.")
    return await handler(request)


def setup(router: web.UrlDispatcher, c: Console) -> None:
    async def login_page(request: web.Request) -> web.Response:
        if request.get(USER) is not None:
            raise web.HTTPSeeOther(PREFIX + "/")
        return _login_form(c, request)

    async def login(request: web.Request) -> web.StreamResponse:
        form = await c.form(request)
        name, password = form.get("naam", ""), form.get("wachtwoord", "")
        address = c.address(request)
        result = await c.accounts.sign_in_async(name, password, address)
        who = name.strip().lower()[:64] or "-"
        if result.throttled:
            minutes = max(1, round(result.throttled / 60))
            c.store.audit.record(who, "signin.throttled", None, None, address)
            return _login_form(c, request, status=429, naam=name,
                               fout=f"Te veel mislukte pogingen. Probeer het over {minutes}"
                                    f" {'minuut' if minutes == 1 else 'minuten'} opnieuw.")
        if result.token is None:
            c.store.audit.record(who, "signin.failed", None, None, address)
            return _login_form(c, request, status=401, naam=name,
                               fout="Naam of wachtwoord klopt niet.")
        c.store.audit.record(result.user.name, "signin", None, None, address)  # type: ignore[union-attr]
        target = form.get("volgende", "")
        if not target.startswith(PREFIX + "/") or target.startswith("//"):
            target = PREFIX + "/"
        resp = web.HTTPSeeOther(target)
        resp.set_cookie(SESSION_COOKIE, result.token, path=PREFIX, httponly=True,
                        samesite="Strict", secure=c.secure,
                        max_age=int(c.settings.session_hours * 3600))
        resp.del_cookie(LOGIN_COOKIE, path=PREFIX)
        raise resp

    async def logout(request: web.Request) -> web.StreamResponse:
        user = c.user(request)
        c.audit(request, "signout")
        c.accounts.sign_out(user.token)
        resp = web.HTTPSeeOther(PREFIX + "/login?uit=1")
        resp.del_cookie(SESSION_COOKIE, path=PREFIX)
        raise resp

    router.add_get("/login", login_page)
    router.add_post("/login", login)
    router.add_post("/logout", logout)


def _login_form(c: Console, request: web.Request, status: int = 200, **ctx) -> web.Response:
    """The sign-in page, with a fresh cookie whose HMAC is the form's CSRF token."""
    secret = secrets.token_urlsafe(24)
    from bridge.accounts import csrf_token

    resp = c.page(request, "login.html", status=status, csrf=csrf_token(secret),
                  volgende=request.query.get("volgende", ""),
                  uit=bool(request.query.get("uit")), **ctx)
    resp.set_cookie(LOGIN_COOKIE, secret, path=PREFIX, httponly=True, samesite="Strict",
                    secure=c.secure, max_age=3600)
    return resp
