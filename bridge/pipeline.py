"""One mail's path through the core, and into the store as a notice with its deliveries.

    stored raw mail -> bridge.analysis (core.mail, core.report + core.calendar)
        -> core.admission (automatic mail, senders, unreadable) -> core.incidents
        -> core.render -> store (incident + notice + deliveries, one transaction)

Decisions and notices are made as of "now": the real clock (the daemon), or a moment a
caller passes (``bridge ingest --now``, tests). The core reads no clock; this module hands
it the moment.

Every mail ends with an outcome and a reason, in the store and in one log line:
``queued`` (a notice for every subscriber), ``duplicate`` (nothing new, or older than what
was sent), ``review`` (a human decides) or ``rejected`` (an automatic mail, not from an
allowed sender, or not a mail at all). Where decoding the mail had to guess, the reason
says so ("...; decoding: body charset guessed as utf-8 (declared iso-8859-1)").

How a mail is read is :mod:`bridge.analysis`; what a person decides for a mail sent to
review (and the operator's own message) is :mod:`bridge.review`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from bridge import faults
from bridge.analysis import Analysis, analyse, decoding_note
from bridge.config import Config
from bridge.core import incidents as core_incidents
from bridge.core.admission import admit
from bridge.core.incidents import IncidentState
from bridge.core.models import OutageReport
from bridge.core.render import Rendered, Renderer
from bridge.events import EventBus, MailProcessed
from bridge.store import Store, StoreError, write_problem
from bridge.store.mails import header_message_id

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
        self.events = events  # MailProcessed is published here
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
