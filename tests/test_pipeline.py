"""Processing a stored mail into its outcome (queued, duplicate, review, rejected): each mail
gets one outcome, however many processes work on it."""

from __future__ import annotations

import pytest


# --- one mail processed by two processes at once (bridge ingest and the daemon) ---------------


@pytest.mark.parametrize("outcome", ["queued", "review"])
def test_a_mail_processed_by_two_processes_at_once_keeps_its_first_outcome(tmp_path, monkeypatch,
                                                                           outcome):
    """`bridge ingest` stores a mail, then processes it; the daemon's processor may pick the
    same unprocessed mail meanwhile. The second must not overwrite the outcome (a queued
    mail reported as duplicate) nor add a second review item."""
    import bridge.analysis
    from bridge.app import App
    from bridge.config import load
    from bridge.store import RawMail
    from helpers import sample_now, write_config

    cfg = load(write_config(tmp_path))
    cli, daemon = App(cfg), App(cfg)
    try:
        cli.store.subscribers.add("+31612345678", "console", "cli:test")
        data = sample_now("01")  # both processes decide as of the clock
        if outcome == "review":  # no ticket, no status (as in test_cli)
            data = data.replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
        mail_id = cli.store.mails.add(RawMail(data=data, source="cli"))
        real = bridge.analysis.extract_report
        raced = []

        def racing(m, rules):
            if not raced:  # the daemon processes the mail while the CLI is extracting
                raced.append(None)
                raced[0] = daemon.pipeline.process(mail_id)
            return real(m, rules)

        monkeypatch.setattr(bridge.analysis, "extract_report", racing)
        second = cli.pipeline.process(mail_id)
        assert raced[0].outcome == outcome
        stored = cli.store.mails.get(mail_id)
        assert stored.outcome == outcome and second.outcome == outcome, (stored, second)
        # The CLI reports what the daemon did: the same notice, queued for the same subscribers.
        assert (second.notice_id, second.queued) == (raced[0].notice_id, raced[0].queued)
        assert second.queued == (outcome == "queued") and second.earlier
        assert cli.store.db.scalar("SELECT count(*) FROM review") == (outcome == "review")
        assert cli.store.db.scalar("SELECT count(*) FROM notices") == (outcome == "queued")
    finally:
        cli.store.close()
        daemon.store.close()
