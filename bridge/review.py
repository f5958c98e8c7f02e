"""What an operator decides and writes: the review queue's items (show, approve, reject)
and the operator's own free message, each into the store as a notice with its deliveries.

    review item -> bridge.analysis.analyse -> the notice approve would send
        (notices/fallback.j2 from the subject and first lines, or for an item held only by
        approval mode the notice its report makes) -> store (notice + deliveries, the item
        decided, one transaction) -> ReviewDecided

The daemon's :class:`bridge.app.App` exposes one :class:`ReviewDesk` as ``app.review``; the
command line (``bridge review``) and the console's review and send pages act through it.
"Now" comes from its clock unless a call passes one, as for :class:`bridge.pipeline.Pipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from bridge.analysis import Analysis, analyse
from bridge.config import Config
from bridge.core import incidents as core_incidents
from bridge.core.confidence import APPROVAL_REASON
from bridge.core.models import OutageReport, ParsedMail
from bridge.core.render import Rendered, Renderer, fallback_from_subject, normalise, shorten
from bridge.events import EventBus, ReviewDecided
from bridge.pipeline import Outcome, utc_now
from bridge.store import Store

# Log lines keep the logger name they had when this was part of the pipeline (operators
# filter the journal by it).
log = logging.getLogger("bridge.pipeline")


class ReviewDesk:
    """The review queue and the operator's free message. ``on_queued``: called after a
    notice was queued (wakes the dispatcher); ``events``: where :class:`ReviewDecided` is
    published; ``clock``: where "now" comes from when a call does not pass one (default:
    the real clock, :func:`bridge.pipeline.utc_now`)."""

    def __init__(self, cfg: Config, store: Store, renderer: Renderer,
                 on_queued: Callable[[], None] | None = None, events: EventBus | None = None,
                 clock: Callable[[], datetime] = utc_now):
        self.cfg = cfg
        self.store = store
        self.renderer = renderer
        self.on_queued = on_queued
        self.events = events
        self.clock = clock

    # -- review queue -----------------------------------------------------------------------------
    def _open_review(self, review_id: int):
        rv = self.store.mails.review(review_id)
        if rv is None:
            raise LookupError(f"no review item {review_id}")
        if rv["state"] != "open":
            raise LookupError(f"review item {review_id} is already {rv['state']}")
        return rv

    def review_notice(self, mail: ParsedMail, report: OutageReport | None,
                      now: datetime | None = None) -> Rendered:
        """The notice :meth:`approve` sends for a reviewed mail (``bridge review show`` prints it).

        ``notices/fallback.j2`` rendered for a report built from the mail's subject and first
        lines (KPN's greeting and signature left out, with ``parser.signature_pattern``), plus
        whatever facts were extracted (kind, services, places, times, ticket). The review item
        has no status (or no ticket), so no status template applies. When the template fails,
        the built-in text from the subject and first lines is sent instead.
        """
        subject = mail.effective.subject or ""
        lines = first_lines(mail.text, signature=self.cfg.parser.signature_pattern)
        base = report or OutageReport(ticket=None, kind="storing", status=None, subject=subject)
        r = dataclasses.replace(base, status=None, subject=subject,
                                description=base.description or lines)
        rendered = self.renderer.render_notice(r, now=now or self.clock())
        if rendered.template != "notices/fallback.j2" or rendered.fallback:
            if rendered.fallback:
                log.error("review: template %s failed (%s); using the built-in text",
                          rendered.template, rendered.error)
            text = fallback_from_subject(subject, lines, self.cfg.organisation)
            rendered = Rendered(text=text, template="notices/fallback.j2", fallback=True,
                                error=rendered.error, truncated=False)
        return rendered

    def review_preview(self, data: bytes) -> tuple[ParsedMail, OutageReport | None, str | None,
                                                    Rendered]:
        """For ``bridge review show``: the mail, its report (or the extraction error) and the
        exact notice approve would send."""
        mail, report, error = self._for_review(data)
        return mail, report, error, self.review_notice(mail, report)

    def _for_review(self, data: bytes, analysis: Analysis | None = None
                    ) -> tuple[ParsedMail, OutageReport | None, str | None]:
        """:func:`analyse` for the review queue: the mail (raises MailError when it is not
        readable), its report or None, and the extraction error (the bug that may have sent
        the mail to review)."""
        a = analysis or analyse(data, self.cfg)
        if a.mail is None:
            assert a.mail_error is not None
            raise a.mail_error
        return a.mail, a.report, a.error_text

    def review_draft(self, review_id: int, now: datetime | None = None,
                     analysis: Analysis | None = None) -> "ReviewDraft":
        """What a review item would send: the mail, the report to show in the form (for an
        item held by approval mode: with what the incident's last report adds, as processing
        would have sent it), the extraction error, and the exact notice :meth:`approve` sends
        now. ``analysis``: the mail already read by :func:`analyse` (in a worker thread; the
        store is only used from the caller's thread). Raises LookupError (no such item, or
        its mail is gone) and MailError."""
        rv = self.store.mails.review(review_id)
        if rv is None:
            raise LookupError(f"no review item {review_id}")
        stored = self.store.mails.get(rv["raw_mail_id"])
        if stored is None or stored.data is None:
            raise LookupError(f"the mail of review item {review_id} is no longer stored")
        mail, report, error = self._for_review(stored.data, analysis)
        now = now or self.clock()
        held = rv["reason"].startswith(APPROVAL_REASON) and _complete(report)
        if held:
            assert report is not None
            report = self._as_processing_would(report)
            rendered = self.draft_notice(report, now)
        else:
            rendered = self.review_notice(mail, report, now)
        return ReviewDraft(review=rv, mail=mail, report=report, error=error,
                           notice=rendered, held=held)

    def _as_processing_would(self, report: OutageReport) -> OutageReport:
        """``report`` carried over from its incident's last report (core.incidents), as
        processing would have sent it without approval mode."""
        known = self.store.incidents.get(self.cfg.senders.source, report.ticket or "")
        return core_incidents.carry_over(report, known.report) if known else report

    def draft_notice(self, report: OutageReport, now: datetime | None = None) -> Rendered:
        """The notice :meth:`approve_report` would send for ``report`` (an operator's
        corrected fields) as of ``now``: the template of its kind and status (fallback.j2
        without a status), with the incident's last report as ``previous``."""
        known = None
        if report.ticket and report.status and self.store is not None:
            known = self.store.incidents.get(self.cfg.senders.source, report.ticket)
        return self.renderer.render_notice(report, previous=known.report if known else None,
                                           now=now or self.clock())

    def approve(self, review_id: int, *, by: str | None = None) -> Outcome:
        """Send a reviewed mail as :meth:`review_notice` renders it (the fallback template,
        built from its subject and first lines). An item held only by approval mode
        (``[review] approval_mode``) sends the notice its report makes instead, threaded
        into its incident, as :meth:`approve_report`. ``by``: who decided (the console's
        user), passed on in :class:`ReviewDecided`."""
        draft = self.review_draft(review_id)
        if draft.held:
            assert draft.report is not None
            return self.approve_report(review_id, draft.report, by=by)
        with self.store.tx():
            rv = self._open_review(review_id)
            stored = self.store.mails.get(rv["raw_mail_id"])
            if stored is None or stored.data is None:
                raise LookupError(f"the mail of review item {review_id} is no longer stored")
            mail, report, error = self._for_review(stored.data)
            if error:
                log.warning("review %d: no report from the mail (%s); sending the fallback text",
                            review_id, error)
            rendered = self.review_notice(mail, report)
            notice_id, queued = self._send_reviewed(review_id, stored.id, report, rendered, None)
        return self._approved(review_id, stored.id, notice_id, queued,
                              report.ticket if report else None, by)

    def approve_report(self, review_id: int, report: OutageReport, *, by: str | None = None,
                       now: datetime | None = None) -> Outcome:
        """Approve a review item with an operator-given report (the console's corrected
        fields): send the notice :meth:`draft_notice` renders for it, as of ``now``. With a
        ticket and a status the notice belongs to the incident of that ticket (created when
        new): the incident records the report, and older unsent notices of it are superseded,
        as for a processed mail. Raises LookupError when the item is not open, or when the
        report is older than the incident's last notice (never send an older update after a
        newer one: reject the item instead)."""
        now = now or self.clock()
        source = self.cfg.senders.source
        with self.store.tx():
            rv = self._open_review(review_id)
            mail_id = rv["raw_mail_id"]
            incident_id = None
            known = None
            if report.ticket and report.status:
                known = self.store.incidents.get(source, report.ticket)
                if known is not None and core_incidents.is_older(report, known.report):
                    raise LookupError(
                        f"review item {review_id}: the report is older than the last notice of"
                        f" incident {known.id} ({known.status}); not sent")
            rendered = self.renderer.render_notice(
                report, previous=known.report if known else None, now=now)
            if rendered.fallback:
                log.error("review %d: template %s failed (%s); sending the built-in text",
                          review_id, rendered.template, rendered.error)
            if report.ticket and report.status:
                incident_id = self.store.incidents.save(source, report,
                                                         known.id if known else None)
            notice_id, queued = self._send_reviewed(review_id, mail_id, report, rendered,
                                                    incident_id)
        return self._approved(review_id, mail_id, notice_id, queued, report.ticket, by,
                              incident_id=incident_id)

    def _send_reviewed(self, review_id: int, mail_id: int, report: OutageReport | None,
                       rendered: Rendered, incident_id: int | None) -> tuple[int, int]:
        """In the caller's transaction: the notice, its deliveries, the item decided.
        Returns (notice id, recipients)."""
        notice_id = self.store.incidents.add_notice(
            incident_id=incident_id, raw_mail_id=mail_id,
            kind=report.kind if report else "storing", status=report.status if report else None,
            template=rendered.template, text=rendered.text, report=report,
            fallback=rendered.fallback)
        queued, _ = self.store.deliveries.fan_out(notice_id, incident_id)
        self.store.mails.decide_review(review_id, "approved", notice_id)
        self.store.mails.set_outcome(mail_id, "queued", f"approved in review {review_id}",
                                     incident_id=incident_id, notice_id=notice_id)
        return notice_id, queued

    def _approved(self, review_id: int, mail_id: int, notice_id: int, queued: int,
                  ticket: str | None, by: str | None, incident_id: int | None = None) -> Outcome:
        """After the commit: log, wake the dispatcher, publish :class:`ReviewDecided`."""
        log.info("review %d approved%s: notice %d to %d subscribers", review_id,
                 f" by {by}" if by else "", notice_id, queued)
        if self.on_queued:
            self.on_queued()
        if self.events:
            self.events.publish(ReviewDecided(review_id=review_id, mail_id=mail_id,
                                              decision="approved", notice_id=notice_id,
                                              recipients=queued, by=by))
        return Outcome(mail_id, "queued", f"approved in review {review_id}", incident_id,
                       notice_id, queued, ticket)

    def reject(self, review_id: int, *, reason: str | None = None, by: str | None = None) -> None:
        """Drop a review item; nothing is sent. ``reason`` (the operator's words) and ``by``
        go into the outcome reason and :class:`ReviewDecided`, so mail back can say who and
        why."""
        why = f"rejected in review {review_id}"
        if by:
            why += f" by {by}"
        if reason:
            why += f": {reason}"
        with self.store.tx():
            rv = self._open_review(review_id)
            self.store.mails.decide_review(review_id, "rejected")
            self.store.mails.set_outcome(rv["raw_mail_id"], "rejected", why)
        log.info("review %d rejected%s", review_id, f" by {by}" if by else "")
        if self.events:
            self.events.publish(ReviewDecided(review_id=review_id, mail_id=rv["raw_mail_id"],
                                              decision="rejected", reason=reason or None, by=by))

    # -- a message an operator writes -----------------------------------------------------------
    def message_text(self, text: str) -> str:
        """A free-text message as subscribers get it: whitespace tidied, cut to
        ``render.max_length`` at a word boundary (as every notice)."""
        out, _ = shorten(normalise(text), self.cfg.render.max_length)
        return out

    def send_message(self, text: str, *, by: str) -> Outcome:
        """Queue an operator's own message for every subscriber, through the outbox, as a
        notice without incident (template name ``notices/bericht.j2``, which the Cloud API
        maps to ``[channel.cloud.templates.bericht]`` or its fallback template). Raises
        ValueError for an empty text."""
        body = self.message_text(text)
        if not body:
            raise ValueError("the message is empty")
        with self.store.tx():
            notice_id = self.store.incidents.add_notice(
                incident_id=None, raw_mail_id=None, kind="bericht", status=None,
                template=MESSAGE_TEMPLATE, text=body, report=None, fallback=False)
            queued, _ = self.store.deliveries.fan_out(notice_id, None)
        log.info("message by %s: notice %d to %d subscribers", by, notice_id, queued)
        if self.on_queued:
            self.on_queued()
        return Outcome(0, "queued", f"written by {by}", None, notice_id, queued)


# The template name an operator's own message is stored (and mapped on the Cloud API) under.
MESSAGE_TEMPLATE = "notices/bericht.j2"


def _complete(report: OutageReport | None) -> bool:
    return report is not None and bool(report.ticket) and bool(report.status)


@dataclass(frozen=True)
class ReviewDraft:
    """A review item with what approving it now would send (:meth:`ReviewDesk.review_draft`)."""

    review: dict  # the review row (id, raw_mail_id, reason, state, ...)
    mail: ParsedMail
    report: OutageReport | None  # the extracted report (None: extraction failed)
    error: str | None  # the extraction error
    notice: Rendered  # exactly what approve sends now
    held: bool  # held only by approval mode: approve sends the report's own notice


_SALUTATIONS = ("beste", "geachte", "hallo", "dear", "hi")


def first_lines(text: str, n: int = 4, signature: str | re.Pattern | None = None) -> str:
    """The first non-empty lines of a mail body, skipping a salutation and stopping at the
    first line that matches ``signature`` (a greeting such as "Met vriendelijke groet")."""
    sig = re.compile(signature) if isinstance(signature, str) else signature
    lines: list[str] = []
    for ln in text.splitlines():
        if sig is not None and sig.match(ln):
            break
        if ln.strip():
            lines.append(ln.strip())
    if lines and lines[0].lower().rstrip(",").split()[0].rstrip(",") in _SALUTATIONS:
        lines = lines[1:]
    return "\n".join(lines[:n])
