"""The application's side of the channel port (bridge/switchboard.py) on a real store:
what a channel may ask, and that a store failure reaches it as StoreUnavailable."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from helpers import TEMPLATES

from bridge.checks import sample_reports
from bridge.core.models import InboundMessage, Organisation
from bridge.core.render import Renderer
from bridge.port import NoticeProgress, StoreUnavailable, TemplateFailed
from bridge.store import Store
from bridge.switchboard import Switchboard


def test_keyed_hash_progress_state_and_templates(tmp_path):
    store = Store.open(tmp_path / "bridge.db")
    handled = []
    sb = Switchboard(store, Renderer(TEMPLATES, Organisation()), max_age_hours=12.0,
                     handle_inbound=handled.append)
    try:
        a = sb.keyed_hash("cloud-cap", 86400, "+31612345678")
        assert a == sb.keyed_hash("cloud-cap", 86400, "+31612345678")  # stable in an epoch
        assert len(a.current) == 32 and "31612345678" not in a.current
        assert sb.keyed_hash("other", 86400, "+31612345678").current != a.current
        assert sb.keyed_hash("cloud-cap", 86400, "+31612345679").current != a.current

        report = sample_reports()[0]
        for n in ("+31611111111", "+31622222222"):
            store.subscribers.add(n, "cloud", "cli:test")
        with store.tx():
            nid = store.incidents.add_notice(incident_id=None, raw_mail_id=None, kind="storing",
                                             status="nieuw", template="t", text="x",
                                             report=report, fallback=False)
            store.deliveries.fan_out(nid, None)
        created = store.incidents.notice(nid)["created_at"]
        assert sb.notice_progress(nid) == NoticeProgress(waiting=2, stale=0, created_at=created)
        assert sb.notice_progress(nid + 1) is None
        assert sb.dispatch_max_age_hours == 12.0

        sb.state_set("cloud:x", "1")
        assert sb.state_get("cloud:x") == "1" and sb.state_get("cloud:y") is None

        assert sb.render_for_notice(["tekst", "r.ticket"], report,
                                    "a\n  b") == ["a b", report.ticket]
        assert sb.render_for_notice(["{{ r.kind }} {{ tekst }}"], report, "t") == ["storing t"]
        assert sb.render_for_notice(["r is none"], None, "") == ["True"]
        with pytest.raises(TemplateFailed):
            sb.render_for_notice(["r.nonexistent.deeper"], report, "")

        msg = InboundMessage(channel="cloud", sender="+31611111111", text="hallo",
                             message_id="m1", received_at=datetime.now(timezone.utc))
        asyncio.run(sb.inbound(msg))
        assert handled == [msg]
    finally:
        store.close()
    with pytest.raises(StoreUnavailable):  # the store is gone: not a sqlite3 error
        sb.state_get("cloud:x")
    with pytest.raises(StoreUnavailable):
        sb.requeue("wamid.x", 10.0, "131000 later", 3)
