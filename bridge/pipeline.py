"""One mail's path through the core, and into the store as a notice with its deliveries.

    stored raw mail -> core.mail -> core.senders -> core.report -> core.incidents
        -> core.render -> store (incident + notice + deliveries, one transaction)

Every mail ends with an outcome and a reason, in the store and in one log line:
``queued`` (a notice for every subscriber), ``duplicate`` (nothing new, or older than what
was sent), ``review`` (a human decides) or ``rejected`` (not from an allowed sender, or not
a mail at all).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Callable

from bridge import faults
from bridge.config import Config
from bridge.core import incidents as core_incidents
from bridge.core.mail import MailError, parse_mail
from bridge.core.models import OutageReport, ParsedMail
from bridge.core.render import Renderer, fallback_from_subject
from bridge.core.report import extract_report
from bridge.core.senders import authorise
from bridge.store import Store, StoreError

log = logging.getLogger("bridge.pipeline")


@dataclass(frozen=True)
class Outcome:
    mail_id: int
    outcome: str  # queued, duplicate, review, rejected
    reason: str
    incident_id: int | None = None
    notice_id: int | None = None
    queued: int = 0  # deliveries created
    ticket: str | None = None

    def to_json(self) -> dict:
        return {"mail": self.mail_id, "outcome": self.outcome, "reason": self.reason,
                "incident": self.incident_id, "notice": self.notice_id, "queued": self.queued,
                "ticket": self.ticket}


@dataclass(frozen=True)
class Preview:
    """What :meth:`Pipeline.preview` finds: ``notice`` (with its text), ``review`` or
    ``rejected``, and why."""

    outcome: str
    reason: str
    text: str | None = None


def make_renderer(cfg: Config) -> Renderer:
    return Renderer(cfg.render.templates_dir, cfg.organisation,
                    max_length=cfg.render.max_length, time_limit=cfg.render.time_limit)


class Pipeline:
    def __init__(self, cfg: Config, store: Store, renderer: Renderer,
                 on_queued: Callable[[], None] | None = None):
        self.cfg = cfg
        self.store = store
        self.renderer = renderer
        self.on_queued = on_queued
        self.outcomes: dict[str, int] = {}  # for metrics

    # -- analysis without side effects ----------------------------------------------------------
    def analyse(self, data: bytes) -> tuple[ParsedMail, OutageReport]:
        mail = parse_mail(data, tz=self.cfg.parser.timezone)
        return mail, extract_report(mail, self.cfg.parser)

    def analyse_for_review(self, data: bytes) -> tuple[ParsedMail, OutageReport | None, str | None]:
        """Like :meth:`analyse`, but a failing report extraction (the bug that may have sent
        the mail to review) gives no report and the error instead of raising."""
        mail = parse_mail(data, tz=self.cfg.parser.timezone)
        try:
            return mail, extract_report(mail, self.cfg.parser), None
        except Exception as e:
            return mail, None, f"{type(e).__name__}: {e}"

    def preview(self, data: bytes) -> "Preview":
        """What processing would decide for this mail, and the exact notice text; stores and
        sends nothing.

        The same steps as :meth:`process`: a readable mail, the sender allow-list (with the
        forward rules), the report, the review rule. Without the store it judges the mail on
        its own: it cannot know earlier mails, so a repeat is previewed as new (ingest would
        say ``duplicate``) and an update is rendered without the incident's previous report.
        """
        try:
            mail = parse_mail(data, tz=self.cfg.parser.timezone)
        except MailError as e:
            return Preview("rejected", f"not a readable mail: {e}")
        verdict = authorise(mail, self.cfg.senders)
        if not verdict.allowed:
            return Preview("rejected", verdict.reason)
        try:
            report = extract_report(mail, self.cfg.parser)
        except Exception as e:  # processing sends such a mail to review
            return Preview("review", f"could not be processed ({type(e).__name__}: {e})")
        decision = core_incidents.decide(report, None)
        if decision.action != "notice":
            return Preview("review", decision.reason)
        rendered = self.renderer.render_notice(report)
        reason = decision.reason
        if verdict.forwarded_by:
            reason += f" (forwarded by {verdict.forwarded_by})"
        if rendered.fallback:
            reason += f"; template {rendered.template} failed ({rendered.error}), built-in text"
        return Preview("notice", reason, rendered.text)

    # -- processing -------------------------------------------------------------------------------
    def process_pending(self) -> list[Outcome]:
        out = []
        while True:
            ids = self.store.mails.unprocessed(100)
            if not ids:
                return out
            for mail_id in ids:
                out.append(self.process(mail_id))

    def process(self, mail_id: int) -> Outcome:
        faults.point("process-mail")
        try:
            result = self._process(mail_id)
        except (StoreError, sqlite3.Error) as e:
            # The store failed: the mail stays unprocessed (nothing lost) and is retried.
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
        if result.queued and self.on_queued:
            self.on_queued()
        return result

    def _process(self, mail_id: int) -> Outcome:
        stored = self.store.mails.get(mail_id)
        if stored is None:
            return Outcome(mail_id, "rejected", "no such mail")
        if stored.outcome:
            return Outcome(mail_id, stored.outcome, stored.reason or "", stored.incident_id,
                           stored.notice_id)
        data = stored.data or b""
        try:
            mail = parse_mail(data, tz=self.cfg.parser.timezone)
        except MailError as e:
            return self._finish(mail_id, "rejected", f"not a readable mail: {e}")

        verdict = authorise(mail, self.cfg.senders)
        if not verdict.allowed:
            return self._finish(mail_id, "rejected", verdict.reason)

        for mid in {stored.message_id, mail.effective.message_id} - {None}:
            earlier = self.store.mails.seen_before(mail_id, mid, stored.sha256)
            if earlier:
                return self._finish(mail_id, "duplicate",
                                    f"same Message-ID or bytes as mail {earlier}")
        if self.store.mails.seen_before(mail_id, None, stored.sha256):
            return self._finish(mail_id, "duplicate", "same bytes as an earlier mail")

        report = extract_report(mail, self.cfg.parser)
        source = self.cfg.senders.source
        with self.store.tx():
            done = self._done_meanwhile(mail_id)
            if done:
                return done
            known = self.store.incidents.get(source, report.ticket) if report.ticket else None
            decision = core_incidents.decide(report, known)
            if decision.action == "review":
                self.store.mails.add_review(mail_id, decision.reason)
                return self._finish(mail_id, "review", decision.reason, ticket=report.ticket)
            if decision.action in ("duplicate", "outdated"):
                reason = decision.reason if decision.action == "duplicate" else f"outdated: {decision.reason}"
                return self._finish(mail_id, "duplicate", reason,
                                    incident_id=known.id if known else None, ticket=report.ticket)

            rendered = self.renderer.render_notice(report, previous=known.report if known else None)
            if rendered.fallback:
                log.error("mail %d: template %s failed (%s); sent the built-in text instead",
                          mail_id, rendered.template, rendered.error)
            incident_id = self.store.incidents.save(source, report, known.id if known else None)
            notice_id = self.store.incidents.add_notice(
                incident_id=incident_id, raw_mail_id=mail_id, kind=report.kind,
                status=report.status, template=rendered.template, text=rendered.text,
                report=report, fallback=rendered.fallback)
            queued, superseded = self.store.deliveries.fan_out(notice_id, incident_id)
            reason = decision.reason
            if verdict.forwarded_by:
                reason += f" (forwarded by {verdict.forwarded_by})"
            if superseded:
                reason += f"; {superseded} older unsent deliveries superseded"
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
                       row["notice_id"])

    # -- review queue -----------------------------------------------------------------------------
    def _open_review(self, review_id: int):
        rv = self.store.mails.review(review_id)
        if rv is None:
            raise LookupError(f"no review item {review_id}")
        if rv["state"] != "open":
            raise LookupError(f"review item {review_id} is already {rv['state']}")
        return rv

    def approve(self, review_id: int) -> Outcome:
        """Send a reviewed mail with the fallback text built from its subject and first lines."""
        with self.store.tx():
            rv = self._open_review(review_id)
            stored = self.store.mails.get(rv["raw_mail_id"])
            if stored is None or stored.data is None:
                raise LookupError(f"the mail of review item {review_id} is no longer stored")
            mail, report, error = self.analyse_for_review(stored.data)
            if error:
                log.warning("review %d: no report from the mail (%s); sending the fallback text",
                            review_id, error)
            text = fallback_from_subject(mail.effective.subject, first_lines(mail.text),
                                         self.cfg.organisation)
            notice_id = self.store.incidents.add_notice(
                incident_id=None, raw_mail_id=stored.id, kind=report.kind if report else "storing",
                status=report.status if report else None, template="review", text=text,
                report=report, fallback=True)
            queued, _ = self.store.deliveries.fan_out(notice_id, None)
            self.store.mails.decide_review(review_id, "approved", notice_id)
            self.store.mails.set_outcome(stored.id, "queued", f"approved in review {review_id}",
                                         notice_id=notice_id)
        log.info("review %d approved: notice %d to %d subscribers", review_id, notice_id, queued)
        if self.on_queued:
            self.on_queued()
        return Outcome(stored.id, "queued", f"approved in review {review_id}", None, notice_id,
                       queued, report.ticket if report else None)

    def reject(self, review_id: int) -> None:
        with self.store.tx():
            rv = self._open_review(review_id)
            self.store.mails.decide_review(review_id, "rejected")
            self.store.mails.set_outcome(rv["raw_mail_id"], "rejected",
                                         f"rejected in review {review_id}")
        log.info("review %d rejected", review_id)


def first_lines(text: str, n: int = 4) -> str:
    """The first non-empty lines of a mail body, skipping a salutation."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].lower().rstrip(",").split()[0] in ("beste", "geachte", "hallo", "dear", "hi"):
        lines = lines[1:]
    return "\n".join(lines[:n])
