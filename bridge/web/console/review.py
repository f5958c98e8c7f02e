"""Controle: the review queue. An item shows the mail beside the fields the bridge read;
the operator corrects fields (kind, status, ticket, places, postcodes, services, times,
description) and sees the notice change as they type (rendered in the notices' sandbox by
the review desk, :mod:`bridge.review`), then approves (sends exactly the text shown) or
rejects with a reason.

Unchanged fields send what ``bridge review approve`` sends (:meth:`ReviewDesk.approve`);
corrected fields send the notice of the corrected report
(:meth:`ReviewDesk.approve_report`). The decision, who made it and the corrections are in
the audit log; the forwarder's follow-up mail says who decided and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime, timezone

from aiohttp import web

from bridge.core.mail import MailError
from bridge.core.models import OutageReport
from bridge.core.phone import mask_text
from bridge.analysis import analyse
from bridge.store.mails import header_subject
from bridge.web.console.context import Console

KINDS = ("storing", "onderhoud")
STATUSES = ("", "nieuw", "update", "opgelost", "geannuleerd", "aangekondigd")
FIELDS = ("kind", "status", "ticket", "places", "postcodes", "services", "start", "end",
          "end_expected", "end_unknown", "description")
# What the operator reads for each field (the form's labels, in lower case).
FIELD_LABELS = {"kind": "soort", "status": "status", "ticket": "ticketnummer",
                "places": "plaatsen", "postcodes": "postcodes", "services": "diensten",
                "start": "begin", "end": "einde", "end_expected": "einde is een verwachting",
                "end_unknown": "einde nog onbekend", "description": "omschrijving"}


class FieldError(ValueError):
    pass


def form_values(c: Console, report: OutageReport | None) -> dict[str, str]:
    """A report as the form's field values (times local, lists comma-separated)."""
    if report is None:
        return {"kind": "storing", "status": "", "ticket": "", "places": "", "postcodes": "",
                "services": "", "start": "", "end": "", "end_expected": "",
                "end_unknown": "", "description": ""}

    def t(v: datetime | None) -> str:
        return v.astimezone(c.tz).strftime("%Y-%m-%dT%H:%M") if v else ""

    return {"kind": report.kind, "status": report.status or "", "ticket": report.ticket or "",
            "places": ", ".join(report.places), "postcodes": ", ".join(report.postcodes),
            "services": ", ".join(report.services), "start": t(report.start),
            "end": t(report.end), "end_expected": "1" if report.end_expected else "",
            "end_unknown": "1" if report.end_unknown else "",
            "description": report.description}


def report_from_form(c: Console, form: dict[str, str], base: OutageReport | None,
                     subject: str) -> OutageReport:
    """The operator's fields as a report (raises FieldError naming the field, in Dutch)."""
    kind = form.get("kind", "storing")
    if kind not in KINDS:
        raise FieldError("Soort: kies storing of onderhoud.")
    status = form.get("status", "")
    if status not in STATUSES:
        raise FieldError("Status: kies een status uit de lijst.")

    def items(name: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in form.get(name, "").replace("\n", ",").split(",")
                     if x.strip())

    def when(name: str, label: str) -> datetime | None:
        raw = form.get(name, "").strip()
        if not raw:
            return None
        try:
            local = datetime.fromisoformat(raw)
        except ValueError:
            raise FieldError(f"{label}: geen geldige datum en tijd ({raw}).") from None
        if local.tzinfo is None:
            local = local.replace(tzinfo=c.tz)
        return local.astimezone(timezone.utc)

    start, end = when("start", "Begin"), when("end", "Einde")
    if start and end and end < start:
        raise FieldError("Einde: ligt vóór het begin.")
    ticket = form.get("ticket", "").strip()[:64] or None
    base = base or OutageReport(ticket=None, kind="storing", status=None, subject=subject)
    return dataclasses.replace(
        base, kind=kind, status=status or None, ticket=ticket,  # type: ignore[arg-type]
        places=items("places"), postcodes=items("postcodes"), services=items("services"),
        start=start, end=end, end_expected=bool(form.get("end_expected")),
        end_unknown=bool(form.get("end_unknown")),
        description=form.get("description", "").strip()[:4000],
        subject=base.subject or subject, customer_signals=())


def _changed(form: dict[str, str], original: dict[str, str]) -> list[str]:
    return [f for f in FIELDS if form.get(f, "").strip() != original.get(f, "").strip()]


def setup(router: web.UrlDispatcher, c: Console) -> None:
    desk = c.app.review

    async def review_list(request: web.Request) -> web.Response:
        show_all = bool(request.query.get("alles"))
        items = c.store.mails.reviews(None if show_all else "open")
        for r in items:
            r["subject"] = header_subject(r.pop("head", None))
        items.reverse()
        return c.page(request, "review_list.html", items=items[:200], show_all=show_all,
                      klaar=request.query.get("klaar"))

    async def load(review_id: int):
        """The item and what approving it sends. Reading the mail (slow) runs in a worker
        thread; the store is used from the event loop only."""
        rv = c.store.mails.review(review_id)
        stored = c.store.mails.get(rv["raw_mail_id"]) if rv else None
        analysis = None
        if stored is not None and stored.data is not None:
            analysis = await asyncio.to_thread(analyse, stored.data, c.cfg)
        try:
            return desk.review_draft(review_id, analysis=analysis)
        except LookupError as e:
            raise web.HTTPNotFound(text=str(e)) from None
        except MailError as e:
            raise web.HTTPNotFound(text=f"De mail is niet leesbaar: {e}") from None

    async def item(request: web.Request) -> web.Response:
        review_id = int(request.match_info["id"])
        draft = await load(review_id)
        values = form_values(c, draft.report)
        return c.page(request, "review.html", d=draft, rv=draft.review, values=values,
                      original=json.dumps(values), kinds=KINDS, statuses=STATUSES,
                      preview=draft.notice.text, preview_error=None, changed=[],
                      recipients=c.store.subscribers.count(),
                      subject=draft.mail.effective.subject, error=None)

    def draft_text(draft, form: dict[str, str]) -> tuple[str, list[str]]:
        """(the text approve would send for these fields, the fields changed)."""
        original = json.loads(form.get("original") or "{}")
        changed = _changed(form, original)
        if not changed:
            return draft.notice.text, []
        report = report_from_form(c, form, draft.report, draft.mail.effective.subject)
        return desk.draft_notice(report).text, changed

    async def preview(request: web.Request) -> web.Response:
        review_id = int(request.match_info["id"])
        draft = await load(review_id)
        form = await c.form(request)
        if "X-CSRF-Token" not in request.headers:  # the button without script: whole page
            return await _again(request, draft, form, None, status=200)
        try:
            text, changed = draft_text(draft, form)
            error = None
        except FieldError as e:
            text, changed, error = "", [], str(e)
        return c.page(request, "_review_preview.html", preview=text, preview_error=error,
                      changed=[FIELD_LABELS[f] for f in changed])

    async def approve(request: web.Request) -> web.StreamResponse:
        review_id = int(request.match_info["id"])
        draft = await load(review_id)
        form = await c.form(request)
        user = c.user(request).name
        try:
            original = json.loads(form.get("original") or "{}")
            changed = _changed(form, original)
            if changed:
                report = report_from_form(c, form, draft.report, draft.mail.effective.subject)
                outcome = desk.approve_report(review_id, report, by=user)
                detail = "corrected " + ", ".join(changed) + "; " + mask_text(
                    json.dumps({f: form.get(f, "") for f in changed}, ensure_ascii=False))
            else:
                outcome = desk.approve(review_id, by=user)
                detail = "as read"
        except FieldError as e:
            return await _again(request, draft, form, str(e))
        except LookupError as e:
            return await _again(request, draft, form, str(e))
        c.audit(request, "review.approve", f"review {review_id}",
                f"notice {outcome.notice_id} to {outcome.queued} subscribers; {detail}")
        raise c.redirect(f"/console/notices/{outcome.notice_id}",
                         f"Controle {review_id} goedgekeurd: melding {outcome.notice_id} gaat"
                         f" naar {outcome.queued} abonnees.")

    async def _again(request, draft, form, error: str | None,
                     status: int = 400) -> web.Response:
        changed: list[str] = []
        preview_error = None
        try:
            text, changed = draft_text(draft, form)
        except FieldError as e:
            text, preview_error = "", str(e)
        values = {f: form.get(f, "") for f in FIELDS}
        return c.page(request, "review.html", status=status, d=draft, rv=draft.review,
                      values=values, original=form.get("original", "{}"), kinds=KINDS,
                      statuses=STATUSES, preview=text, preview_error=preview_error,
                      changed=[FIELD_LABELS[f] for f in changed],
                      recipients=c.store.subscribers.count(),
                      subject=draft.mail.effective.subject, error=error)

    async def reject(request: web.Request) -> web.StreamResponse:
        review_id = int(request.match_info["id"])
        form = await c.form(request)
        reason = " ".join(form.get("reden", "").split())[:500]
        try:
            desk.reject(review_id, reason=reason or None, by=c.user(request).name)
        except LookupError as e:
            raise web.HTTPConflict(text=str(e)) from None
        c.audit(request, "review.reject", f"review {review_id}", reason or None)
        raise c.redirect("/console/review", f"Controle {review_id} afgewezen: er gaat niets"
                                            " naar de klanten.")

    router.add_get("/review", review_list)
    router.add_get("/review/{id:\\d+}", item)
    router.add_post("/review/{id:\\d+}/preview", preview)
    router.add_post("/review/{id:\\d+}/approve", approve)
    router.add_post("/review/{id:\\d+}/reject", reject)
