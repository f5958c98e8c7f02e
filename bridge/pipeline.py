"""One mail's path through the core, and into the store as a notice with its deliveries.

    stored raw mail -> core.mail -> core.admission (automatic mail, senders, unreadable)
        -> core.report (+ core.calendar) -> core.incidents -> core.render
        -> store (incident + notice + deliveries, one transaction)

Decisions and notices are made as of "now": the real clock (the daemon), or a moment a
caller passes (``bridge ingest --now``, tests). The core reads no clock; this module hands
it the moment.

Every mail ends with an outcome and a reason, in the store and in one log line:
``queued`` (a notice for every subscriber), ``duplicate`` (nothing new, or older than what
was sent), ``review`` (a human decides) or ``rejected`` (an automatic mail, not from an
allowed sender, or not a mail at all). Where decoding the mail had to guess, the reason
says so ("...; decoding: body charset guessed as utf-8 (declared iso-8859-1)").
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from bridge import faults
from bridge.config import Config
from bridge.core import incidents as core_incidents
from bridge.core.admission import admit
from bridge.core.calendar import complete_report
from bridge.core.confidence import APPROVAL_REASON
from bridge.core.incidents import IncidentState
from bridge.core.mail import MailError, not_a_mail, parse_mail
from bridge.core.models import OutageReport, ParsedMail
from bridge.core.render import Rendered, Renderer, fallback_from_subject, normalise, shorten
from bridge.core.report import extract_report
from bridge.events import EventBus, MailProcessed, ReviewDecided
from bridge.store import Store, StoreError, write_problem
from bridge.store.mails import header_message_id
from bridge.templates import template_loader

log = logging.getLogger("bridge.pipeline")


@dataclass(frozen=True)
class Outcome:
    mail_id: int
    outcome: str  # queued, duplicate, review, rejected
    reason: str
    incident_id: int | None = None
    notice_id: int | None = None
    queued: int = 0  # subscribers the notice was queued for
    ticket: str | None = None
    earlier: bool = False  # decided before (by another process, or an earlier run)

    def to_json(self) -> dict:
        return {"mail": self.mail_id, "outcome": self.outcome, "reason": self.reason,
                "incident": self.incident_id, "notice": self.notice_id, "queued": self.queued,
                "ticket": self.ticket}


@dataclass(frozen=True)
class Preview:
    """What :meth:`Pipeline.preview` finds, as ingest would decide now: ``notice`` (with
    its text), ``duplicate``, ``outdated``, ``review`` or ``rejected``, and why.
    ``fallback`` says why the built-in text was used (a notice template failed), else None."""

    outcome: str
    reason: str
    text: str | None = None
    fallback: str | None = None


@dataclass(frozen=True)
class Judgement:
    """What processing decides for an admitted mail's report as of "now", with the store's
    incident of its ticket (``known``): ``notice`` (``report`` with what the update left out
    carried over, ``rendered`` the notice with the previous report's times as "(was ...)"),
    ``duplicate``, ``outdated`` or ``review``; ``reason`` says why."""

    action: str
    reason: str
    report: OutageReport
    known: IncidentState | None = None
    rendered: Rendered | None = None


def read_mail(data: bytes, cfg: Config) -> ParsedMail:
    """parse_mail as configured: which forwards are followed (the sender rules) and the
    charsets decoding may guess among."""
    return parse_mail(data, tz=cfg.parser.timezone, senders=cfg.senders,
                      charsets=cfg.mail.charsets)


def read_report(mail: ParsedMail, cfg: Config) -> OutageReport:
    """extract_report, with what the mail's iCalendar part adds (core.calendar)."""
    return complete_report(extract_report(mail, cfg.parser), mail.calendar)


def decoding_note(mail: ParsedMail) -> str:
    """"; decoding: ..." for an outcome reason when decoding had to guess, else ""."""
    return f"; decoding: {'; '.join(mail.notes)}" if mail.notes else ""


@dataclass(frozen=True)
class Analysis:
    """One mail read by the core: :func:`parse_mail`, then :func:`extract_report`, each
    with its result or its error. ``mail`` is None when the bytes are not a readable mail
    (``mail_error`` says why); ``report`` is None when extraction failed (``report_error``:
    the exception, a bug, which processing sends to review)."""

    mail: ParsedMail | None
    report: OutageReport | None = None
    mail_error: MailError | None = None
    report_error: Exception | None = None

    @property
    def error_text(self) -> str | None:
        """``Type: message`` of the extraction error, or None."""
        e = self.report_error
        return f"{type(e).__name__}: {e}" if e is not None else None


def analyse(data: bytes, cfg: Config) -> Analysis:
    """The one way a mail is read: by processing, ``bridge preview`` and the review queue.

    Pure and possibly slow (MIME walk, HTML to text, report extraction): the daemon runs it
    in a worker thread. Never raises for the mail's content; see :class:`Analysis`. Bytes
    that are not a mail at all (:func:`bridge.core.mail.not_a_mail`: an empty file, a PDF,
    random bytes) have no ``mail`` and the reason as ``mail_error``."""
    problem = not_a_mail(data)
    if problem:
        return Analysis(None, mail_error=MailError(problem))
    try:
        mail = read_mail(data, cfg)
    except MailError as e:
        return Analysis(None, mail_error=e)
    try:
        return Analysis(mail, read_report(mail, cfg))
    except Exception as e:  # noqa: BLE001 - processing decides (review), with the error
        return Analysis(mail, report_error=e)


def make_renderer(cfg: Config) -> Renderer:
    return Renderer(cfg.render.templates_dir, cfg.organisation,
                    max_length=cfg.render.max_length, time_limit=cfg.render.time_limit,
                    loader=template_loader(cfg.render.templates_dir, cfg.render.edited_dir))


def utc_now() -> datetime:
    """The real clock, timezone-aware (UTC): the daemon's "now"."""
    return datetime.now(timezone.utc)


class Pipeline:
    """``clock``: where "now" comes from when a call does not pass one (default: the real
    clock, :func:`utc_now`)."""

    def __init__(self, cfg: Config, store: Store, renderer: Renderer,
                 on_queued: Callable[[], None] | None = None, events: EventBus | None = None,
                 clock: Callable[[], datetime] = utc_now):
        self.cfg = cfg
        self.store = store
        self.renderer = renderer
        self.on_queued = on_queued
        self.events = events  # MailProcessed and ReviewDecided are published here
        self.clock = clock
        self.outcomes: dict[str, int] = {}  # for metrics

    # -- analysis without side effects ----------------------------------------------------------
    def preview(self, data: bytes, now: datetime | None = None) -> "Preview":
        """What processing would decide for this mail as of ``now`` (aware; default: the
        clock), and the exact notice text; stores and sends nothing.

        The same steps and the same decision code as :meth:`process`: a mail at all, its
        admission (automatic mail, the sender allow-list with the forward rules, a readable
        body), a repeat of a processed mail (same Message-ID or bytes), the report, and
        :meth:`_judge` with the incident the store holds for its ticket (an update rendered
        with the previous report's times, "(was 14:00)"; duplicate, outdated, review with
        the facts carried over). The store is only read (``bridge preview`` opens it
        read-only); without a store (``store`` None: none yet) the mail is judged on its
        own, as the first of its incident.
        """
        a = analyse(data, self.cfg)
        if a.mail is None:
            return Preview("rejected", f"not a mail: {a.mail_error}")
        mail = a.mail
        note = decoding_note(mail)
        admission = admit(mail, self.cfg.senders, self.cfg.automatic)
        if admission.outcome == "rejected":
            return Preview("rejected", admission.reason + note)
        if self.store is not None:
            repeat = self._repeat_of(0, {header_message_id(data), mail.effective.message_id},
                                     hashlib.sha256(data).hexdigest())
            if repeat:
                return Preview("duplicate", repeat)
        if admission.outcome == "review":
            return Preview("review", admission.reason + note)
        report = a.report
        if report is None:  # processing sends such a mail to review
            return Preview("review", f"could not be processed ({a.error_text})")
        j = self._judge(report, now or self.clock())
        if j.action != "notice" or j.rendered is None:
            return Preview(j.action, j.reason + (note if j.action == "review" else ""))
        rendered = j.rendered
        reason = j.reason
        if admission.forwarded_by:
            reason += f" (forwarded by {admission.forwarded_by})"
        fallback = None
        if rendered.fallback:
            fallback = f"template {rendered.template} failed ({rendered.error})"
            reason += f"; {fallback}, built-in text"
        return Preview("notice", reason + note, rendered.text, fallback)

    # -- the decisions processing and preview share ------------------------------------------------
    def _repeat_of(self, mail_id: int, message_ids: set[str | None], sha256: str) -> str | None:
        """Why the mail repeats one processed before (same Message-ID or bytes; ``mail_id``:
        the mail itself, left out), else None. Reads the store."""
        for mid in message_ids - {None}:
            earlier = self.store.mails.seen_before(mail_id, mid, sha256)
            if earlier:
                return f"same Message-ID or bytes as mail {earlier}"
        if self.store.mails.seen_before(mail_id, None, sha256):
            return "same bytes as an earlier mail"
        return None

    def _judge(self, report: OutageReport, now: datetime) -> Judgement:
        """:func:`bridge.core.incidents.decide` with the store's incident of the report's
        ticket, and for a notice its text (:meth:`Renderer.render_notice` with the previous
        report). Reads the store (nothing without one); writes nothing."""
        known = None
        if self.store is not None and report.ticket:
            known = self.store.incidents.get(self.cfg.senders.source, report.ticket)
        decision = core_incidents.decide(report, known, now=now, rules=self.cfg.review)
        if decision.action != "notice":
            return Judgement(decision.action, decision.reason, report, known)
        report = decision.report or report  # with facts the update left out carried over
        rendered = self.renderer.render_notice(report, previous=known.report if known else None,
                                               now=now)
        return Judgement("notice", decision.reason, report, known, rendered)

    # -- processing -------------------------------------------------------------------------------
    def process_pending(self) -> list[Outcome]:
        out = []
        while True:
            ids = self.store.mails.unprocessed(100)
            if not ids:
                return out
            for mail_id in ids:
                out.append(self.process(mail_id))

    async def process_async(self, mail_id: int) -> Outcome:
        """:meth:`process`, with the pure and possibly slow part (MIME walk, HTML to text,
        report extraction) in a worker thread, so a big mail does not stall the daemon."""
        stored = self.store.mails.get(mail_id)
        analysis = None
        if stored is not None and not stored.outcome:
            analysis = await asyncio.to_thread(analyse, stored.data or b"", self.cfg)
        return self.process(mail_id, analysis)

    def process(self, mail_id: int, analysis: Analysis | None = None,
                now: datetime | None = None) -> Outcome:
        """Decide one stored mail and store the outcome (with a notice and its deliveries when
        queued), as of ``now`` (aware; default: the clock when the decision is made)."""
        faults.point("process-mail")
        try:
            result = self._process(mail_id, analysis, now)
        except (StoreError, sqlite3.Error) as e:
            # The store failed: the mail stays unprocessed (nothing lost) and is retried.
            # A store that cannot be written now (disk full) pauses the processor, which
            # the store's health logs once a minute (bridge.storehealth): no ERROR per try.
            problem = write_problem(e)
            if problem is not None:
                log.info("mail %d: the store cannot be written (%s); it waits", mail_id,
                         problem)
            else:
                log.error("mail %d: store error, will retry: %s", mail_id, e)
            raise
        except Exception as e:
            # A bug in parsing or rendering must not lose the mail nor loop forever on it:
            # a human looks at it in the review queue.
            log.exception("mail %d: could not be processed", mail_id)
            reason = f"could not be processed ({type(e).__name__}: {e}); see the daemon log"
            with self.store.tx():
                result = self._done_meanwhile(mail_id)
                if result is None:
                    self.store.mails.add_review(mail_id, reason)
                    self.store.mails.set_outcome(mail_id, "review", reason)
                    result = Outcome(mail_id, "review", reason)
        self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1
        level = logging.WARNING if result.outcome in ("rejected", "review") else logging.INFO
        extra = f"; notice {result.notice_id} to {result.queued} subscribers" if result.notice_id else ""
        log.log(level, "mail %d: %s: %s%s", mail_id, result.outcome, result.reason, extra)
        if result.queued and not result.earlier and self.on_queued:
            self.on_queued()
        if self.events and not result.earlier:
            self.events.publish(MailProcessed(
                mail_id=mail_id, outcome=result.outcome, reason=result.reason,
                incident_id=result.incident_id, notice_id=result.notice_id,
                recipients=result.queued, ticket=result.ticket))
        return result

    def _process(self, mail_id: int, analysis: Analysis | None = None,
                 now: datetime | None = None) -> Outcome:
        stored = self.store.mails.get(mail_id)
        if stored is None:
            return Outcome(mail_id, "rejected", "no such mail")
        if stored.outcome:
            return self._done_meanwhile(mail_id) or Outcome(mail_id, stored.outcome, "")
        a = analysis or analyse(stored.data or b"", self.cfg)
        mail = a.mail
        if mail is None:
            return self._finish(mail_id, "rejected", f"not a mail: {a.mail_error}")

        # Rejections (automatic mail, senders) come before any incident or supersede work.
        note = decoding_note(mail)
        admission = admit(mail, self.cfg.senders, self.cfg.automatic)
        if admission.outcome == "rejected":
            return self._finish(mail_id, "rejected", admission.reason + note)

        repeat = self._repeat_of(mail_id, {stored.message_id, mail.effective.message_id},
                                 stored.sha256)
        if repeat:
            return self._finish(mail_id, "duplicate", repeat)
        if admission.outcome == "review":  # no readable report, or a forwarder's own words
            with self.store.tx():
                done = self._done_meanwhile(mail_id)
                if done:
                    return done
                self.store.mails.add_review(mail_id, admission.reason + note)
                return self._finish(mail_id, "review", admission.reason + note)

        report = a.report
        if report is None:
            assert a.report_error is not None
            raise a.report_error  # process() logs it and sends the mail to review
        source = self.cfg.senders.source
        with self.store.tx():
            done = self._done_meanwhile(mail_id)
            if done:
                return done
            j = self._judge(report, now or self.clock())
            known = j.known
            if j.action == "review":
                self.store.mails.add_review(mail_id, j.reason + note)
                return self._finish(mail_id, "review", j.reason + note, ticket=report.ticket)
            if j.action in ("duplicate", "outdated") or j.rendered is None:
                reason = j.reason if j.action == "duplicate" else f"outdated: {j.reason}"
                return self._finish(mail_id, "duplicate", reason,
                                    incident_id=known.id if known else None, ticket=report.ticket)
            report, rendered = j.report, j.rendered
            if rendered.fallback:
                log.error("mail %d: template %s failed (%s); sent the built-in text instead",
                          mail_id, rendered.template, rendered.error)
            incident_id = self.store.incidents.save(source, report, known.id if known else None)
            notice_id = self.store.incidents.add_notice(
                incident_id=incident_id, raw_mail_id=mail_id, kind=report.kind,
                status=report.status, template=rendered.template, text=rendered.text,
                report=report, fallback=rendered.fallback)
            queued, superseded = self.store.deliveries.fan_out(notice_id, incident_id)
            reason = j.reason
            if admission.forwarded_by:
                reason += f" (forwarded by {admission.forwarded_by})"
            if superseded:
                reason += f"; {superseded} older unsent deliveries superseded"
            reason += note
            return self._finish(mail_id, "queued", reason, incident_id=incident_id,
                                notice_id=notice_id, queued=queued, ticket=report.ticket)

    def _finish(self, mail_id: int, outcome: str, reason: str, *, incident_id: int | None = None,
                notice_id: int | None = None, queued: int = 0, ticket: str | None = None) -> Outcome:
        with self.store.tx():
            done = self._done_meanwhile(mail_id)
            if done:
                return done
            self.store.mails.set_outcome(mail_id, outcome, reason, incident_id=incident_id,
                                         notice_id=notice_id)
        return Outcome(mail_id, outcome, reason, incident_id, notice_id, queued, ticket)

    def _done_meanwhile(self, mail_id: int) -> Outcome | None:
        """In a transaction: the outcome another process (`bridge ingest` and the daemon both
        process unprocessed mails) gave this mail since we read it, which stands."""
        row = self.store.mails.outcome(mail_id)
        if row is None:
            return None
        return Outcome(mail_id, row["outcome"], row["reason"] or "", row["incident_id"],
                       row["notice_id"], row["recipients"] if row["notice_id"] else 0,
                       earlier=True)

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
    """A review item with what approving it now would send (:meth:`Pipeline.review_draft`)."""

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
