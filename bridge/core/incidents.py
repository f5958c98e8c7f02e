"""Threading and dedupe decisions: given what we know of an incident, is this report new?

Pure: the caller reads the incident's state from the store, and the moment of deciding from
its clock, and acts on the decision. The doubts that send a report to review (stale, a
maintenance window already over or missing, one customer's line, a thin outage) are in
:mod:`bridge.core.confidence`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridge.core.confidence import DEFAULT_REVIEW_RULES, ReviewRules, doubt
from bridge.core.models import STATUS_RANK, OutageReport

Action = Literal["notice", "duplicate", "outdated", "review"]


@dataclass(frozen=True)
class IncidentState:
    """The store's view of one incident: the last report that made a notice."""

    id: int
    status: str
    report: OutageReport


@dataclass(frozen=True)
class Decision:
    """``report``: for a notice about a known incident, the report to render and store: the
    mail's, with the facts it leaves out carried over from the incident's last report
    (:func:`carry_over`); None otherwise (use the mail's report)."""

    action: Action
    reason: str
    report: OutageReport | None = None


def carry_over(report: OutageReport, previous: OutageReport) -> OutageReport:
    """``report`` with what it leaves out taken from ``previous`` (the incident's last report
    of the same kind): places and postcodes when it names neither, services, start and
    downtime when it names none; for a new or updated report that says nothing about its end
    (no end, not "unknown") and names no other start, the previous end with its flags (a
    moved window with only a new start does not keep the old end). An update that only adds news
    ("the engineer is on site") thus keeps the incident's place and expected end, in its
    notice and for the next update's "(was …)". The description is never carried over."""
    if report.kind != previous.kind:
        return report
    changes: dict = {}
    if not report.places and not report.postcodes:
        changes.update(places=previous.places, postcodes=previous.postcodes)
    if not report.services:
        changes["services"] = previous.services
    if report.start is None:
        changes["start"] = previous.start
    if report.downtime_minutes is None:
        changes["downtime_minutes"] = previous.downtime_minutes
    if (report.status in ("nieuw", "update") and report.end is None and not report.end_unknown
            and previous.status in ("nieuw", "update", "aangekondigd")
            and report.start in (None, previous.start)):
        changes.update(end=previous.end, end_expected=previous.end_expected,
                       end_unknown=previous.end_unknown)
    changes = {k: v for k, v in changes.items() if v != getattr(report, k)}
    return dataclasses.replace(report, **changes) if changes else report


def needs_review(report: OutageReport) -> str | None:
    """Why a report cannot go to customers without a human, or None."""
    missing = [name for name, v in (("ticket", report.ticket), ("status", report.status)) if not v]
    if missing:
        return "no " + " and no ".join(missing) + " found in the mail"
    return None


def is_older(report: OutageReport, known: OutageReport) -> bool:
    """True when ``report`` describes an earlier moment of the incident than ``known``.

    Mail times decide; equal or missing times fall back to the usual order of statuses
    (nieuw < update < opgelost), so a late copy of "nieuw" never follows "opgelost". Two
    revisions of one calendar event (maintenance invitations) are ordered by their
    iCalendar SEQUENCE first (RFC 5545 3.8.7.4).
    """
    if report.sequence is not None and known.sequence is not None \
            and report.sequence != known.sequence:
        return report.sequence < known.sequence
    if report.sent_at and known.sent_at and report.sent_at != known.sent_at:
        return report.sent_at < known.sent_at
    return STATUS_RANK.get(report.status or "", 0) < STATUS_RANK.get(known.status or "", 0)


def decide(report: OutageReport, known: IncidentState | None, *, now: datetime | None = None,
           rules: ReviewRules = DEFAULT_REVIEW_RULES) -> Decision:
    """What to do with a report of an allowed sender, as of ``now``.

    - no ticket or no status: review (a human decides; never straight to customers);
    - same status and same (expected) end as the last notice: duplicate (e.g. the same mail
      by IMAP and by a forward); compared after :func:`carry_over`, so an update that leaves
      the end out has the incident's end;
    - older than the last notice: outdated (never send an older update after a newer one);
    - a doubt of :func:`bridge.core.confidence.doubt` (stale, maintenance window over or
      missing, one customer's line, a thin outage): review, with its reason;
    - unknown incident: a notice; otherwise (a new status, a changed expected end): a notice
      with the carried-over report in ``Decision.report``.

    ``now``: the moment of deciding, a timezone-aware datetime the shell passes in (the
    daemon's clock, ``bridge ingest --now``); None skips the checks that need it.
    ``rules``: config ``[review]``.
    """
    why = needs_review(report)
    if why:
        return Decision("review", why)
    full = report
    if known is not None:
        full = carry_over(report, known.report)
        if full.key_facts() == known.report.key_facts():
            return Decision(
                "duplicate",
                f"incident {known.id} already has status {known.status} with the same end time",
            )
        if is_older(full, known.report):
            return Decision(
                "outdated",
                f"older than the last update of incident {known.id} ({known.status}); not sent",
            )
    why = doubt(report, known.report if known else None, now, rules)
    if why:
        return Decision("review", why)
    if known is None:
        return Decision("notice", f"new {report.kind} {report.ticket} ({report.status})")
    if full.status != known.status:
        change = f"status {known.status} -> {full.status}"
    else:
        change = "expected end changed" if full.end != known.report.end else "end time changed"
    return Decision("notice", f"incident {known.id}: {change}", full)
