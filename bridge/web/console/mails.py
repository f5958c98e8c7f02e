"""Meldingen: every mail with its outcome and reason, what the bridge read in it and the
notice it made; every incident's timeline of notices; every notice's text and what became
of its deliveries ("what was sent to whom"), failures by reason, numbers masked unless an
operator reveals one (which the audit log records).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from bridge.core.models import OutageReport
from bridge.analysis import analyse
from bridge.store.mails import header_subject
from bridge.store.notices import DELIVERY_STATES
from bridge.web.console.context import Console

PAGE = 50
DELIVERY_PAGE = 100
# the delivery states in the operator's words
STATE_NL = {"pending": "wacht", "sending": "wordt verstuurd", "sent": "verstuurd",
            "delivered": "afgeleverd", "read": "gelezen", "failed": "mislukt",
            "superseded": "vervangen", "stale": "te oud", "cancelled": "gestopt"}
OUTCOME_NL = {"queued": "verstuurd", "duplicate": "dubbel", "review": "controle",
              "rejected": "geweigerd", None: "nog niet verwerkt"}


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(0, int(value or default))
    except ValueError:
        return default


def setup(router: web.UrlDispatcher, c: Console) -> None:
    async def mail_list(request: web.Request) -> web.Response:
        offset = _int(request.query.get("vanaf"))
        outcome = request.query.get("uitkomst") or None
        if outcome not in (None, *[k for k in OUTCOME_NL if k]):
            outcome = None
        mails = c.store.mails.recent(PAGE, offset, outcome)
        for m in mails:
            m["subject"] = header_subject(m.pop("head", None))
        incidents = c.store.notices.incidents(20)
        notices = c.store.notices.recent(20)
        return c.page(request, "mails.html", mails=mails, incidents=incidents, notices=notices,
                      offset=offset, page=PAGE, outcome=outcome, outcomes=OUTCOME_NL)

    async def mail(request: web.Request) -> web.Response:
        mail_id = int(request.match_info["id"])
        stored = c.store.mails.get(mail_id)
        if stored is None:
            raise web.HTTPNotFound(text="Deze mail bestaat niet (meer).")
        analysis = None
        if stored.data is not None:
            analysis = await asyncio.to_thread(analyse, stored.data, c.cfg)
        notice = c.store.notices.get(stored.notice_id) if stored.notice_id else None
        review = c.store.mails.review_of(mail_id)
        report = None
        if analysis is not None and analysis.report is not None:
            report = analysis.report.to_json()
        return c.page(request, "mail.html", m=stored, analysis=analysis, report=report,
                      notice=notice, review=review, outcomes=OUTCOME_NL,
                      subject=header_subject(stored.data))

    async def incident(request: web.Request) -> web.Response:
        incident_id = int(request.match_info["id"])
        inc = c.store.notices.incident(incident_id)
        if inc is None:
            raise web.HTTPNotFound(text="Dit incident bestaat niet.")
        report = OutageReport.from_json(json.loads(inc["report"])).to_json()
        return c.page(request, "incident.html", inc=inc, report=report,
                      timeline=c.store.notices.timeline(incident_id), states=STATE_NL)

    async def notice(request: web.Request) -> web.Response:
        notice_id = int(request.match_info["id"])
        n = c.store.notices.get(notice_id)
        if n is None:
            raise web.HTTPNotFound(text="Deze melding bestaat niet.")
        state = request.query.get("staat") or None
        if state not in (None, *DELIVERY_STATES):
            state = None
        offset = _int(request.query.get("vanaf"))
        rows = c.store.notices.deliveries(notice_id, state, DELIVERY_PAGE, offset)
        return c.page(request, "notice.html", n=n, counts=c.store.notices.counts(notice_id),
                      failures=c.store.notices.failures(notice_id), rows=rows, state=state,
                      states=STATE_NL, offset=offset, page=DELIVERY_PAGE,
                      revealed=None, klaar=request.query.get("klaar"))

    async def reveal(request: web.Request) -> web.Response:
        """Show one delivery's number; the audit log records who saw which delivery's."""
        notice_id = int(request.match_info["id"])
        form = await c.form(request)
        delivery_id = _int(form.get("levering"))
        number = c.store.notices.delivery_number(notice_id, delivery_id)
        n = c.store.notices.get(notice_id)
        if n is None or number is None:
            raise web.HTTPNotFound(text="Dit nummer is niet (meer) bewaard.")
        c.audit(request, "number.reveal", f"notice {notice_id}", f"delivery {delivery_id}")
        rows = c.store.notices.deliveries(notice_id, None, DELIVERY_PAGE, 0)
        return c.page(request, "notice.html", n=n, counts=c.store.notices.counts(notice_id),
                      failures=c.store.notices.failures(notice_id), rows=rows, state=None,
                      states=STATE_NL, offset=0, page=DELIVERY_PAGE,
                      revealed={"delivery": delivery_id, "number": number}, klaar=None)

    router.add_get("/mails", mail_list)
    router.add_get("/mails/{id:\\d+}", mail)
    router.add_get("/incidents/{id:\\d+}", incident)
    router.add_get("/notices/{id:\\d+}", notice)
    router.add_post("/notices/{id:\\d+}/reveal", reveal)
