"""IMAP backlogs: many mails at once, and a mailbox full of mails when the bridge first
starts. Each mail is stored and moved exactly once, with UID MOVEs of at most 500 UIDs (so
the server's "* n EXPUNGE" answer stays short) and one login. The time for 2,000 mails is
measured by bench/imap_backlog.py, not here.
"""

from __future__ import annotations

import re
import time

from imap_helpers import (Bridge, Dovecot, dc, imap_config, outbox, run_bridge,  # noqa: F401
                          status, storing, subscribed, wait_for)


def test_fifty_mails_at_once_each_handled_exactly_once(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed)
    try:
        d.wait_connected()
        c = dc.client()
        try:
            for n in range(50):
                dc.append(storing(n), client=c)
        finally:
            c.logout()
        wait_for(lambda: len(outbox(tmp_path)) >= 50, timeout=30, what="50 notices")
        wait_for(lambda: len(dc.uids("Processed")) == 50 and not dc.uids("INBOX"), timeout=15,
                 what="50 mails moved")
        time.sleep(1.0)
    finally:
        assert d.stop() == 0, d.log()
    sent = outbox(tmp_path)
    assert len(sent) == 50
    tickets = [re.search(r"INC\d{12}", m["text"]).group(0) for m in sent]
    assert sorted(tickets) == sorted(f"INC{100000000 + n:012d}" for n in range(50))
    assert status(cfg)["mails"] == {"queued": 50}



def test_backlog_at_first_start_is_taken_in_batches_of_at_most_500(tmp_path):
    """Issue 16's server: 1,500 mails waiting, command lines limited to 4 k (a UID list of
    1,500 numbers was "BAD Too long argument" 79 times in 90 s), and 1,742 EXPUNGE lines
    after one MOVE used to break aioimaplib's parser."""
    dc = Dovecot(tmp_path / "dovecot", max_line_length=4096).start()
    try:
        dc.deliver([storing(n) for n in range(1500)])
        cfg = imap_config(tmp_path, dc, timeout=10)  # no subscribers: the intake is measured
        d = Bridge(cfg, dc).start(wait=False)
        try:
            wait_for(lambda: len(dc.uids("Processed")) == 1500, timeout=180,
                     what="1,500 moved")
            wait_for(lambda: status(cfg)["mails"] == {"queued": 1500}, timeout=30,
                     what="all processed")
        finally:
            assert d.stop() == 0, d.log()
        log = d.log()
        sizes = []
        for uids in re.findall(r"imap: moved UID (\S+) to Processed", log):
            n = 0
            for part in uids.split(","):
                a, _, b = part.partition(":")
                n += int(b or a) - int(a) + 1
            sizes.append(n)
        assert sum(sizes) == 1500 and max(sizes) <= 500
        assert log.count("imap: logged in to") == 1
        assert "RecursionError" not in log and "Fatal error" not in log and "BAD" not in log
        assert dc.uids("INBOX") == []
    finally:
        dc.cleanup()
