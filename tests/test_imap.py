"""IMAP intake, the everyday flow, against a real private Dovecot (tests/dovecot.py) and the
real daemon process: a mail becomes a notice and is moved (or flagged), rejected mails go to
their folder, servers without IDLE/MOVE, IMAPS. Commands and their encoding:
test_imap_commands.py; failures: test_imap_failures.py; backlogs: test_imap_backlog.py.
"""

from __future__ import annotations

import time

from imap_helpers import (DATA, SUBSCRIBER, Bridge, Dovecot, bridge, dc, imap_config,  # noqa: F401
                          outbox, run_bridge, status, storing, subscribed, wait_for)


def test_append_while_idling_becomes_a_notice_and_is_moved(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed)
    try:
        d.wait_connected()
        t0 = time.time()
        dc.append(storing(1))
        sent = wait_for(lambda: outbox(tmp_path), timeout=10, what="the notice")
        assert len(sent) == 1 and sent[0]["to"] == SUBSCRIBER
        assert "INC000100000001" in sent[0]["text"]
        wait_for(lambda: dc.uids("Processed") and not dc.uids("INBOX"), what="moved to Processed")
        # the status the daemon writes for `bridge status` every 5 s: one written while the
        # intake was still fetching, storing or moving the mail says idling false, so wait
        # for one written after it went back to IDLE
        def imap_part() -> dict:
            return ((status(cfg)["daemon"] or {}).get("parts") or {}).get("imap") or {}

        imap = wait_for(lambda: (st := imap_part()).get("last_uid") == 1 and st.get("idling")
                        and st, timeout=30, what="status with the IMAP part idling after UID 1")
        assert imap["connected"] is True and imap["idling"] is True
        assert imap["uidvalidity"] and imap["last_mail_at"] >= t0 - 1
        assert imap["last_error"] is None
        out = bridge(cfg, "status").stdout
        assert "imap: " in out and "connected=True" in out
    finally:
        assert d.stop() == 0, d.log()
    assert status(cfg)["mails"] == {"queued": 1}


def test_unlisted_senders_end_in_the_rejected_folder(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed)
    try:
        d.wait_connected()
        dc.append((DATA / "07-geen-storing.eml").read_bytes())
        dc.append(storing(1, sender="storing@not-kpn.example"))
        dc.append(storing(2))
        wait_for(lambda: len(dc.uids("Rejected")) == 2 and len(dc.uids("Processed")) == 1,
                 timeout=15, what="two rejected, one processed")
        time.sleep(0.5)
    finally:
        assert d.stop() == 0, d.log()
    assert dc.uids("INBOX") == []
    assert [m for m in outbox(tmp_path)] and len(outbox(tmp_path)) == 1
    assert status(cfg)["mails"] == {"queued": 1, "rejected": 2}


def test_server_without_idle_and_move_is_polled_and_copy_expunged(tmp_path, subscribed):
    dc = Dovecot(tmp_path / "dovecot", capability="IMAP4rev1 LITERAL+ UIDPLUS").start()
    try:
        cfg, d = run_bridge(tmp_path, dc, subscribed)
        try:
            d.wait_connected()
            assert "(the server has no IDLE)" in d.log()
            dc.append(storing(1))
            dc.append((DATA / "07-geen-storing.eml").read_bytes())
            wait_for(lambda: dc.uids("Processed") == [1] and dc.uids("Rejected") == [1]
                     and dc.uids("INBOX") == [], timeout=15, what="copied and expunged")
        finally:
            assert d.stop() == 0, d.log()
        assert len(outbox(tmp_path)) == 1
    finally:
        dc.cleanup()


def test_flag_mode_and_uidvalidity_change_send_nothing_twice(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed, processed_folder="", rejected_folder="")
    try:
        d.wait_connected()
        dc.append(storing(1))
        wait_for(lambda: "\\Seen" in dc.flags("INBOX").get(1, ""), timeout=10, what="flag \\Seen")
        wait_for(lambda: outbox(tmp_path), what="the notice")
    finally:
        assert d.stop() == 0, d.log()
    # Restart with the same UIDVALIDITY: the seen mail (UID <= last UID) is left alone.
    d = Bridge(cfg, dc).start(wait=False)
    try:
        d.wait_connected()
        time.sleep(0.5)
    finally:
        assert d.stop() == 0, d.log()
    assert status(cfg)["mails"] == {"queued": 1}

    # New UIDVALIDITY (the server lost its UID list) and the mail unseen again: stored again,
    # recognised by Message-ID, not sent twice.
    dc.stop()
    maildir = dc.root / "mail" / dc.user
    for p in maildir.rglob("dovecot-uidlist"):
        p.unlink()
    for p in maildir.rglob("dovecot.index*"):
        p.unlink()
    for p in (maildir / "cur").iterdir():
        p.rename(p.with_name(p.name.split(":2,")[0] + ":2,"))
    dc.start()
    d = Bridge(cfg, dc).start(wait=False)
    try:
        d.wait_connected()
        wait_for(lambda: status(cfg)["mails"] == {"queued": 1, "duplicate": 1}, timeout=10,
                 what="the mail seen again as a duplicate")
        wait_for(lambda: "\\Seen" in next(iter(dc.flags("INBOX").values()), ""), what="flagged")
    finally:
        assert d.stop() == 0, d.log()
    assert "UIDVALIDITY of INBOX changed" in d.log()
    assert len(outbox(tmp_path)) == 1


def test_imaps_with_a_self_signed_certificate(tmp_path, subscribed):
    dc = Dovecot(tmp_path / "dovecot", imaps=True).start()
    try:
        cfg = imap_config(tmp_path, dc, tls="imaps", tls_ca_file=str(dc.cert))
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            d.wait_connected()
            dc.append(storing(1))
            wait_for(lambda: outbox(tmp_path), timeout=10, what="the notice over IMAPS")
            wait_for(lambda: dc.uids("Processed") == [1], what="moved")
        finally:
            assert d.stop() == 0, d.log()
    finally:
        dc.cleanup()
