"""When in doubt, review: the checks that keep a report the bridge cannot vouch for away from
customers, each with a reason an operator understands.

Pure: no I/O and no clock. "Now" is handed in by the shell (the daemon's real clock, or
``bridge ingest --now``); every datetime is timezone-aware. :func:`doubt` is called by
:func:`bridge.core.incidents.decide` after the threading checks (a duplicate or an outdated
report is not sent anyway), so these rules only stop reports that would otherwise reach
customers:

* **stale** -- the mail's Date (of the original, for a forward) is more than
  ``max_mail_age_hours`` before now: its facts may no longer hold;
* **window over** -- a maintenance announcement (``aangekondigd``, ``nieuw``, ``update``)
  whose window has already ended (its end, else its start plus the announced downtime);
* **no window** -- such a maintenance notice with no start and no end;
* **one customer** -- the mail is about one end customer's line (a service ticket), not an
  area: :attr:`OutageReport.customer_signals` from the report reader (customer labels,
  phrases, a street address);
* **thin outage** -- a new or updated outage that names no place, postcode, service or time
  (start, end, "end unknown", downtime); an update passes only when it says something new
  compared with the incident's previous report (another description).

Reasons are English, like the other outcome reasons in the store, the log and ``bridge
ingest`` output; times in them are local (``ReviewRules.timezone``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.core.models import OutageReport

__all__ = ["APPROVAL_REASON", "DEFAULT_REVIEW_RULES", "ReviewRules", "doubt", "window_end"]

_ANNOUNCING = ("aangekondigd", "nieuw", "update")


@dataclass(frozen=True)
class ReviewRules:
    """What :func:`doubt` checks against (config ``[review]``).

    ``max_mail_age_hours``: a mail dated longer ago than this when it is processed goes to
    review. ``timezone``: the IANA zone the reasons show times in (the organisation's).
    ``approval_mode``: every notice waits for a person's approval (reason
    :data:`APPROVAL_REASON`)."""

    max_mail_age_hours: float = 6.0
    timezone: str = "Europe/Amsterdam"
    approval_mode: bool = False


# The review reason of a report held only because of ``[review] approval_mode``; approving
# such an item sends the notice the report makes (not the fallback text of a vague mail).
APPROVAL_REASON = "approval mode: every notice waits for a person's approval"


DEFAULT_REVIEW_RULES = ReviewRules()


def window_end(report: OutageReport) -> datetime | None:
    """When a maintenance window ends: its end, else its start plus the announced downtime,
    else None (no way to tell)."""
    if report.end is not None:
        return report.end
    if report.start is not None and report.downtime_minutes:
        return report.start + timedelta(minutes=report.downtime_minutes)
    return None


def _local(dt: datetime, tz: str) -> str:
    return dt.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _names_something(report: OutageReport) -> bool:
    """Whether a report names a place, postcode, service or time (start, end, an unknown
    end, downtime)."""
    return bool(report.places or report.postcodes or report.services or report.start
                or report.end or report.end_unknown or report.downtime_minutes)


def doubt(report: OutageReport, previous: OutageReport | None, now: datetime | None,
          rules: ReviewRules = DEFAULT_REVIEW_RULES) -> str | None:
    """Why ``report`` (of an allowed sender, with ticket and status) must not reach customers
    without a human, or None. See the module docstring for the checks, in their order.

    ``previous``: the incident's last report that made a notice, or None. ``now``: the moment
    of deciding, timezone-aware; None skips the checks that need it (stale, window over).
    Raises ``ValueError`` for a naive ``now``."""
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = rules.timezone
    if now is not None and report.sent_at is not None:
        age = now - report.sent_at
        if age > timedelta(hours=rules.max_mail_age_hours):
            return (f"stale mail: dated {_local(report.sent_at, tz)} ({tz}), {_span(age)} "
                    f"before it was processed; more than review.max_mail_age_hours "
                    f"({rules.max_mail_age_hours:g} h), so its facts may no longer hold")
    if report.kind == "onderhoud" and report.status in _ANNOUNCING:
        if report.start is None and report.end is None:
            return ("maintenance notice without a window: no start or end time found in "
                    "the mail")
        ends = window_end(report)
        if now is not None and ends is not None and ends <= now:
            return (f"maintenance window already over: it ended {_local(ends, tz)} ({tz}), "
                    f"before the mail was processed")
    if report.customer_signals:
        return ("about one customer's line, not an area outage: "
                + ", ".join(report.customer_signals))
    if report.kind == "storing" and report.status in ("nieuw", "update"):
        if not _names_something(report):
            what = "outage update" if report.status == "update" else "new outage"
            if report.status == "update" and previous is not None:
                said = " ".join(report.description.split())
                if not said or said == " ".join(previous.description.split()):
                    return (f"{what} names no place, service or time, and says nothing new "
                            f"compared with the incident's previous report")
            else:
                return f"{what} names no place, service or time"
    if rules.approval_mode:
        return APPROVAL_REASON
    return None
