"""Logboek: every change made in the console or with the CLI's operator commands, newest
first: who, when, what, from where."""

from __future__ import annotations

from aiohttp import web

from bridge.web.console.context import Console

PAGE = 100
ACTIONS_NL = {
    "signin": "aangemeld", "signin.failed": "aanmelden mislukt",
    "signin.throttled": "aanmelden geblokkeerd (te veel pogingen)", "signout": "afgemeld",
    "review.approve": "controle goedgekeurd", "review.reject": "controle afgewezen",
    "notice.cancel": "melding gestopt", "sending.pause": "versturen gepauzeerd",
    "sending.resume": "versturen hervat", "template.save": "tekst bewaard",
    "template.restore": "oude versie teruggezet", "template.revert": "geleverde tekst terug",
    "message.send": "zelf een bericht verstuurd", "number.reveal": "nummer getoond",
    "subscriber.remove": "abonnee afgemeld", "subscriber.import": "lijst geïmporteerd",
    "user.add": "account gemaakt", "user.remove": "account verwijderd",
    "user.passwd": "wachtwoord gewijzigd",
}


def setup(router: web.UrlDispatcher, c: Console) -> None:
    async def page(request: web.Request) -> web.Response:
        try:
            offset = max(0, int(request.query.get("vanaf", "0")))
        except ValueError:
            offset = 0
        action = request.query.get("actie") or None
        entries = c.store.audit.entries(PAGE, offset, action=action)
        return c.page(request, "audit.html", entries=entries, offset=offset, page=PAGE,
                      total=c.store.audit.count(), actions=ACTIONS_NL, actie=action or "")

    router.add_get("/audit", page)
