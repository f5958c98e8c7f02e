"""Threading and dedupe decisions (pure)."""

from datetime import datetime, timedelta, timezone

import pytest

from bridge.core.incidents import IncidentState, decide, is_older
from bridge.core.models import OutageReport

T0 = datetime(2026, 11, 28, 8, 45, tzinfo=timezone.utc)


def rep(status="nieuw", end=T0 + timedelta(hours=5), sent=T0, ticket="INC1", **kw):
    return OutageReport(ticket=ticket, kind="storing", status=status, subject="s", end=end,
                        end_expected=True, sent_at=sent, **kw)


def known(r, id=1):
    return IncidentState(id=id, status=r.status, report=r)


def test_new_incident_is_a_notice():
    assert decide(rep(), None).action == "notice"


@pytest.mark.parametrize("kw,why", [({"ticket": None}, "ticket"), ({"status": None}, "status")])
def test_missing_ticket_or_status_goes_to_review(kw, why):
    d = decide(rep(**kw), None)
    assert d.action == "review" and why in d.reason


def test_same_status_and_end_is_duplicate_even_from_another_path():
    first = rep()
    forwarded = rep(sent=T0 + timedelta(minutes=6), description="other words")
    assert decide(forwarded, known(first)).action == "duplicate"


def test_changed_expected_end_is_a_notice():
    d = decide(rep(status="nieuw", end=T0 + timedelta(hours=8), sent=T0 + timedelta(hours=1)),
               known(rep()))
    assert d.action == "notice" and "expected end" in d.reason


def test_new_status_is_a_notice():
    d = decide(rep(status="update", sent=T0 + timedelta(hours=2)), known(rep()))
    assert d.action == "notice" and "nieuw -> update" in d.reason


def test_older_update_after_newer_is_outdated():
    newer = rep(status="opgelost", sent=T0 + timedelta(hours=8))
    older = rep(status="update", end=T0 + timedelta(hours=9), sent=T0 + timedelta(hours=3))
    assert decide(older, known(newer)).action == "outdated"


def test_without_times_status_order_decides():
    resolved = rep(status="opgelost", sent=None)
    late_new = rep(status="nieuw", sent=None, end=None)
    assert is_older(late_new, resolved)
    assert decide(late_new, known(resolved)).action == "outdated"
