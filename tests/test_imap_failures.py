"""IMAP failures against a private Dovecot (tests/dovecot.py) set up like servers people
reported problems with, and the real daemon: the server going away, falling silent or
killing the daemon mid-work; refused logins, NO [LIMIT], a full mailbox, a folder name the
server refuses, servers without MOVE or UIDPLUS, a slow link, a mail that stalls the link,
a second daemon and mails vanishing under the intake. Each case ends with every mail
processed once, no mail of another client touched, and a bounded number of logins.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

from imap_helpers import (PW_ENV, Bridge, Daemon, Dovecot, bridge, dc,  # noqa: F401
                          imap_config, outbox, run_bridge, status, storing, subscribed, wait_for)
from slowproxy import SlowProxy


def logins(d: Bridge) -> int:
    """Successful logins of this bridge process (its log)."""
    return d.own_log().count("imap: logged in to")


def imap_status(cfg) -> dict:
    return ((status(cfg).get("daemon") or {}).get("parts") or {}).get("imap") or {}


def tickets(tmp_path) -> list[str]:
    return sorted(re.search(r"INC\d{12}", m["text"]).group(0) for m in outbox(tmp_path))


def mark_deleted(dc: Dovecot, uid: int) -> None:
    c = dc.client()
    try:
        c.select("INBOX")
        assert c.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    finally:
        c.logout()


# -- the server goes away, falls silent, or the daemon dies --------------------------------------------
def test_dovecot_restarted_mid_idle_reconnects_and_loses_nothing(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed)
    try:
        d.wait_connected()
        dc.append(storing(1))
        wait_for(lambda: len(outbox(tmp_path)) == 1, what="first notice")
        dc.stop()  # Dovecot says BYE to the idling bridge and closes
        wait_for(lambda: "connection closed by the server" in d.log(), timeout=10,
                 what="the bridge to notice the closed connection")
        dc.start()
        dc.append(storing(2))  # arrives while the bridge is still reconnecting
        d.wait_connected(2)
        dc.append(storing(3))
        wait_for(lambda: len(outbox(tmp_path)) >= 3, timeout=20, what="three notices")
        time.sleep(0.5)
        assert d.alive(), d.log()
    finally:
        assert d.stop() == 0, d.log()
    texts = [m["text"] for m in outbox(tmp_path)]
    assert len(texts) == 3
    for n in (1, 2, 3):
        assert sum(f"INC{100000000 + n:012d}" in t for t in texts) == 1
    assert "reconnecting in" in d.log()
    assert "crashed" not in d.log()  # a refused connection is a failure, not a crash
    assert sorted(dc.uids("Processed")) == [1, 2, 3] and dc.uids("INBOX") == []


def test_processed_folder_deleted_while_running_is_created_again(tmp_path, dc, subscribed):
    """A MOVE into a folder someone deleted (NO [TRYCREATE]) is not a permanent failure: the
    next connection creates the folder again and moves the mail; no pause."""
    cfg, d = run_bridge(tmp_path, dc, subscribed)
    try:
        d.wait_connected()
        dc.append(storing(1))
        wait_for(lambda: dc.uids("Processed") == [1], timeout=15, what="the first move")
        c = dc.client()
        try:
            assert c.delete("Processed")[0] == "OK"
        finally:
            c.logout()
        dc.append(storing(2))
        wait_for(lambda: dc.uids("Processed") == [1] and not dc.uids("INBOX"), timeout=20,
                 what="moved into the folder created again")
    finally:
        assert d.stop() == 0, d.log()
    assert "TRYCREATE" in d.log() and "paused" not in d.log()
    assert len(outbox(tmp_path)) == 2


def test_silent_server_is_a_dead_connection(tmp_path, dc, subscribed):
    """A server that stops answering (SIGSTOP) is given up after the deadline, not waited on."""
    cfg, d = run_bridge(tmp_path, dc, subscribed, idle_renew=2, timeout=1)
    try:
        d.wait_connected()
        log_text = dc.log()
        assert "Login: user=<kpnmail>" in log_text
        # Freeze every imap process of this Dovecot: the bridge's IDLE DONE gets no answer.
        frozen = [int(x) for x in re.findall(r"mpid=(\d+)", log_text)]
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        wait_for(lambda: "no answer within" in d.log(), timeout=15, what="the deadline to fire")
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        d.wait_connected(2)
        dc.append(storing(5))
        wait_for(lambda: len(outbox(tmp_path)) == 1, timeout=15, what="a notice after reconnecting")
    finally:
        assert d.stop() == 0, d.log()


def test_sigkill_after_fetch_before_commit_then_processed_after_restart(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed, faults="imap-after-fetch")
    d.wait_connected()
    dc.append(storing(1))
    assert d.wait_dead() == -signal.SIGKILL
    d._log.close()
    assert outbox(tmp_path) == []
    assert status(cfg)["mails"] == {}  # nothing was committed
    assert dc.uids("INBOX") == [1]

    d2 = Bridge(cfg, dc).start(wait=False)
    try:
        wait_for(lambda: outbox(tmp_path), timeout=15, what="the notice after restart")
        wait_for(lambda: dc.uids("Processed") == [1] and dc.uids("INBOX") == [], what="moved")
    finally:
        assert d2.stop() == 0, d2.log()
    assert len(outbox(tmp_path)) == 1
    assert status(cfg)["mails"] == {"queued": 1}


def test_sigkill_after_commit_before_move_is_not_processed_twice(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed, faults="imap-after-commit")
    d.wait_connected()
    dc.append(storing(1))
    assert d.wait_dead() == -signal.SIGKILL
    d._log.close()
    assert dc.uids("INBOX") == [1] and dc.uids("Processed") == []
    assert status(cfg)["mails"] == {"unprocessed": 1}

    d2 = Bridge(cfg, dc).start(wait=False)
    try:
        wait_for(lambda: dc.uids("Processed") == [1] and dc.uids("INBOX") == [], timeout=15,
                 what="moved after restart")
        wait_for(lambda: outbox(tmp_path), what="the notice")
        time.sleep(1.0)
    finally:
        assert d2.stop() == 0, d2.log()
    assert len(outbox(tmp_path)) == 1
    assert status(cfg)["mails"] == {"queued": 1}  # stored once, not twice


def test_login_failure_is_logged_clearly_and_not_hammered(tmp_path, dc, subscribed):
    cfg = imap_config(tmp_path, dc)
    subscribed(cfg)
    d = Daemon(cfg, env={PW_ENV: "wrong"}).start(wait=False)
    try:
        wait_for(lambda: "login as 'kpnmail'" in d.log(), timeout=15, what="the login error")
        time.sleep(3)
        assert d.alive(), d.log()
    finally:
        assert d.stop() == 0, d.log()
    assert "failed" in d.log() and "retrying in 60 s" in d.log()
    assert "login as 'kpnmail' refused" in imap_status(cfg)["alert"]
    assert dc.log().count("auth failed") + dc.log().count("Authentication failed") <= 2
    assert d.log().count("login as 'kpnmail'") == 1


def test_tls_mismatch_times_out_instead_of_hanging(tmp_path):
    """Plain IMAP to an IMAPS port: no greeting ever comes; the deadline ends the wait."""
    dc = Dovecot(tmp_path / "dovecot", imaps=True).start()
    try:
        from bridge.intake.imap import ImapIntake, ImapSettings
        from bridge.mailroom import Mailroom
        from bridge.store import Store

        store = Store.open(tmp_path / "b.db")
        os.environ[PW_ENV] = dc.password
        s = ImapSettings(host="127.0.0.1", port=dc.port, tls="none", user=dc.user,
                         password_env=PW_ENV, timeout=1, backoff_max=1)
        intake = ImapIntake(s, Mailroom(store))

        async def go():
            stop = asyncio.Event()
            task = asyncio.create_task(intake.run(stop))
            t = time.monotonic()
            while intake.last_error is None and time.monotonic() - t < 10:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 5)
            return time.monotonic() - t

        took = asyncio.run(go())
        assert intake.last_error and "greeting: no answer within 1 s" in intake.last_error
        assert took < 5
        store.close()
    finally:
        os.environ.pop(PW_ENV, None)
        dc.cleanup()



# -- the backoff remembers; permanent causes pause ----------------------------------------------------
def test_the_same_failure_backs_off_and_pauses_on_the_third_time(caplog):
    """A command failing the same way is reported once, backs off (1, 2 s), and the third
    time in a row pauses the intake; another command's success does not reset it."""
    from bridge.intake.imap import ImapIntake, ImapSettings
    from bridge.intake.imap.failures import Failure

    class Port:
        def state_get(self, key):
            return None

    s = ImapSettings(host="imap.example.nl", user="u", password_env="X", pause_retry=300)
    intake = ImapIntake(s, Port())
    bad = "BAD Error in IMAP command UID MOVE: Too long argument (0.001 + 0.000 secs)."
    with caplog.at_level("INFO", logger="bridge.intake.imap"):
        d1 = intake._failed(Failure("UID MOVE Processed", bad))
        intake._on_ok("SELECT INBOX")
        d2 = intake._failed(Failure("UID MOVE Processed", bad.replace("0.001", "0.002")))
        assert intake.paused is None
        d3 = intake._failed(Failure("UID MOVE Processed", bad))
    assert (d1, d2, d3) == (1.0, 2.0, 300)
    assert intake.paused and "UID MOVE Processed failed 3 times" in intake.paused
    assert intake.describe()["state"] == "paused" and intake.describe()["alert"] == intake.paused
    warnings = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert len(warnings) == 2  # the first failure (with the server's answer) and the pause
    assert "Too long argument" in warnings[0].getMessage()
    intake._resume()
    assert intake.paused is None and intake.describe()["alert"] is None


def test_over_quota_pauses_with_few_logins_and_resumes_when_space_is_freed(tmp_path, subscribed):
    """A server without MOVE answers UID COPY with NO [OVERQUOTA]: the mails are stored and
    notified, the intake pauses (one status line, at most 5 logins in the first minute),
    the mails stay in INBOX, and once the quota is raised they are moved, none twice."""
    dc = Dovecot(tmp_path / "dovecot", capability="IMAP4rev1 LITERAL+ UIDPLUS IDLE",
                 quota="8K").start()
    try:
        for n in range(5):
            dc.append(storing(n))
        cfg, d = run_bridge(tmp_path, dc, subscribed, pause_retry=20)
        try:
            wait_for(lambda: "paused:" in d.log(), timeout=30, what="the pause")
            t0 = time.monotonic()
            # notices do not wait for the move
            wait_for(lambda: len(outbox(tmp_path)) == 5, timeout=15, what="5 notices")
            st = wait_for(lambda: imap_status(cfg).get("paused") and imap_status(cfg),
                          timeout=15, what="the paused status")
            assert "OVERQUOTA" in st["paused"] and st["state"] == "paused"
            assert st["alert"] == st["paused"]
            out = bridge(cfg, "status").stdout
            assert "paused=UID COPY Processed refused by 127.0.0.1: NO [OVERQUOTA]" in out
            time.sleep(max(0.0, 60 - (time.monotonic() - t0)))
            first_minute = logins(d)
            assert first_minute <= 5, d.log()
            assert len(dc.uids("INBOX")) == 5 and dc.uids("Processed") == []
            assert d.log().count("imap: paused:") == 1  # reported once, repeats are quiet
            dc.stop()
            dc.quota = "10M"
            dc.start()
            wait_for(lambda: len(dc.uids("Processed")) == 5 and not dc.uids("INBOX"),
                     timeout=60, what="moved once the quota allows it")
            wait_for(lambda: not imap_status(cfg).get("paused"), timeout=15, what="resumed")
        finally:
            assert d.stop() == 0, d.log()
        assert "imap: resumed" in d.log()
        assert len(outbox(tmp_path)) == 5
        assert status(cfg)["mails"] == {"queued": 5}
        print(f"\nlogins in the first minute of NO [OVERQUOTA]: {first_minute}")
    finally:
        dc.cleanup()


def test_a_folder_name_the_server_refuses_pauses_until_fixed(tmp_path, dc, subscribed):
    cfg, d = run_bridge(tmp_path, dc, subscribed, processed_folder="Storingen/R&D",
                        pause_retry=30)
    dc.append(storing(1))
    try:
        wait_for(lambda: "paused:" in d.log(), timeout=20, what="the pause")
        time.sleep(3)
        assert logins(d) == 1
        st = wait_for(lambda: imap_status(cfg).get("paused") and imap_status(cfg), timeout=15,
                      what="the paused status")
        assert "CREATE Storingen/R&D refused" in st["paused"] and "[CANNOT]" in st["paused"]
    finally:
        assert d.stop() == 0, d.log()
    assert dc.uids("INBOX") == [1] and outbox(tmp_path) == []  # nothing taken, nothing lost
    # the operator fixes the name and restarts: the mail is processed
    cfg = imap_config(tmp_path, dc, processed_folder="Storingen R&D")
    d = Bridge(cfg, dc).start(wait=False)
    try:
        wait_for(lambda: dc.uids("Storingen R&-D") == [1], timeout=20, what="moved")
    finally:
        assert d.stop() == 0, d.log()
    assert len(outbox(tmp_path)) == 1


def test_no_limit_is_a_short_backoff_not_the_login_backoff(tmp_path, subscribed):
    """NO [LIMIT] (too many connections) at login: retried after seconds, not login_backoff."""
    dc = Dovecot(tmp_path / "dovecot", max_user_connections=2).start()
    held = [dc.client(), dc.client()]
    try:
        cfg, d = run_bridge(tmp_path, dc, subscribed, login_backoff=600, backoff_max=2)
        try:
            wait_for(lambda: "[LIMIT]" in d.log(), timeout=15, what="NO [LIMIT]")
            for c in held:
                c.logout()
            held = []
            d.wait_connected(timeout=10)
            dc.append(storing(1))
            wait_for(lambda: outbox(tmp_path), timeout=15, what="the notice")
        finally:
            assert d.stop() == 0, d.log()
        log = d.log()
        assert "retrying in 600 s" not in log and "reconnecting in 2 s" in log
    finally:
        for c in held:
            c.logout()
        dc.cleanup()


# -- only our own mails --------------------------------------------------------------------------------
def _colleague_mail() -> bytes:
    return (b"From: collega@cbgconnect.example\r\nTo: storingen@cbgconnect.example\r\n"
            b"Subject: lunch?\r\nMessage-ID: <lunch@cbgconnect.example>\r\n\r\nom 12 uur\r\n")


def test_without_uidplus_nothing_is_expunged(tmp_path, subscribed):
    """No MOVE, no UIDPLUS: our mails are copied and left marked \\Deleted (never EXPUNGE,
    RFC 4549 §4.2.4); the colleague's deleted mail stays; said once in the log."""
    dc = Dovecot(tmp_path / "dovecot", capability="IMAP4rev1 LITERAL+ IDLE").start()
    try:
        dc.append(_colleague_mail())
        mark_deleted(dc, 1)
        cfg, d = run_bridge(tmp_path, dc, subscribed)
        try:
            d.wait_connected()
            dc.append(storing(1))
            dc.append(storing(2))
            wait_for(lambda: len(dc.uids("Processed")) == 2, timeout=15, what="copied")
            wait_for(lambda: imap_status(cfg).get("left_deleted") == 2, timeout=15,
                     what="status")
        finally:
            assert d.stop() == 0, d.log()
        assert d.log().count("has neither MOVE nor UIDPLUS") == 1
        flags = dc.flags("INBOX")
        assert sorted(flags) == [1, 2, 3] and all("\\Deleted" in f for f in flags.values())
        d = Bridge(cfg, dc).start(wait=False)  # a restart takes nothing again
        try:
            d.wait_connected()
            time.sleep(1)
        finally:
            assert d.stop() == 0, d.log()
        assert len(outbox(tmp_path)) == 2 and len(dc.uids("Processed")) == 2
        assert sorted(dc.flags("INBOX")) == [1, 2, 3]
    finally:
        dc.cleanup()


def test_uid_expunge_leaves_another_clients_deleted_mail(tmp_path, subscribed):
    dc = Dovecot(tmp_path / "dovecot", capability="IMAP4rev1 LITERAL+ UIDPLUS IDLE").start()
    try:
        dc.append(_colleague_mail())
        mark_deleted(dc, 1)
        cfg, d = run_bridge(tmp_path, dc, subscribed)
        try:
            d.wait_connected()
            dc.append(storing(1))
            wait_for(lambda: dc.uids("Processed") == [1] and dc.uids("INBOX") == [1],
                     timeout=15, what="ours moved, the colleague's left")
        finally:
            assert d.stop() == 0, d.log()
        assert "\\Deleted" in dc.flags("INBOX")[1]
        assert dc.message_ids("INBOX") == ["<lunch@cbgconnect.example>"]
        assert len(outbox(tmp_path)) == 1
    finally:
        dc.cleanup()


# -- timeouts of silence, not of size -------------------------------------------------------------------
def _large(n: int, megabytes: float, marker: bytes = b"") -> bytes:
    raw = storing(n)
    head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    filler = (b"Bijlage regel met tekst om de mail groot te maken......................." + nl)
    lines = int(megabytes * (1 << 20) / len(filler))
    return head + nl + nl + body + nl + marker + nl + filler * lines


def test_large_mail_on_a_slow_link_completes(tmp_path, dc, subscribed):
    """A 2.5 MB mail at 250 kB/s takes ~10 s with a 1.5 s timeout: data keeps flowing, so the
    connection is alive; the small mail fetched in the same command is stored too."""
    proxy = SlowProxy(dc.port, rate=250_000).start()
    try:
        dc.append(_large(1, 2.5))
        dc.append(storing(2))
        cfg = imap_config(tmp_path, dc, port=proxy.port, timeout=1.5)
        subscribed(cfg)
        t0 = time.monotonic()
        d = Bridge(cfg, dc).start(wait=False)
        try:
            wait_for(lambda: "(2 bytes)" in d.log() or d.log().count("imap: mail ") >= 2,
                     timeout=60, what="both stored")
            took = time.monotonic() - t0
            wait_for(lambda: not dc.uids("INBOX"), timeout=20, what="both moved")
        finally:
            assert d.stop() == 0, d.log()
        log = d.log()
        assert "no answer within" not in log and "reconnecting" not in log
        assert logins(d) == 1
        assert len(dc.uids("Processed")) + len(dc.uids("Rejected")) == 2
        assert sum(status(cfg)["mails"].values()) == 2
        assert took > 8  # it really was slow
        print(f"\n2.5 MB mail at 250 kB/s with timeout 1.5 s: stored after {took:.1f} s")
    finally:
        proxy.stop()


def test_a_mail_that_stalls_the_link_is_held_and_the_others_go_on(tmp_path, dc, subscribed):
    marker = b"X-STALL-HERE-4711"
    for n, raw in ((1, storing(1)), (2, _large(2, 0.01, marker)), (3, storing(3))):
        dc.append(raw)
    proxy = SlowProxy(dc.port, stall_on=marker).start()
    try:
        cfg = imap_config(tmp_path, dc, port=proxy.port, timeout=1)
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            wait_for(lambda: sorted(dc.uids("Processed")) == [1, 2], timeout=40,
                     what="the two other mails moved")  # new UIDs in Processed: 1 and 2
            st = wait_for(lambda: imap_status(cfg).get("held") == [2] and imap_status(cfg),
                          timeout=15, what="UID 2 held")
            assert st["alert"] and "could not be fetched" in st["alert"]
            time.sleep(2)
        finally:
            assert d.stop() == 0, d.log()
        assert dc.uids("INBOX") == [2]
        assert logins(d) <= 4, d.log()
        assert d.log().count("UID 2 in INBOX could not be fetched") == 1
        assert tickets(tmp_path) == ["INC000100000001", "INC000100000003"]
    finally:
        proxy.stop()
    # the link is fine again and the daemon restarts: the held mail is tried at once
    cfg = imap_config(tmp_path, dc)
    d = Bridge(cfg, dc).start(wait=False)
    try:
        wait_for(lambda: dc.uids("INBOX") == [], timeout=20, what="the held mail taken")
        wait_for(lambda: len(outbox(tmp_path)) == 3, timeout=15, what="its notice")
    finally:
        assert d.stop() == 0, d.log()
    assert tickets(tmp_path) == ["INC000100000001", "INC000100000002", "INC000100000003"]


# -- one daemon per mailbox ------------------------------------------------------------------------------
def test_a_second_daemon_on_the_mailbox_refuses_and_takes_over_when_the_first_stops(
        tmp_path, dc):
    dirs = [tmp_path / "a", tmp_path / "b"]
    cfgs = []
    for p in dirs:
        p.mkdir()
        cfgs.append(imap_config(p, dc, pause_retry=2))
        bridge(cfgs[-1], "subscribers", "add", "+31612345678")
    a = Bridge(cfgs[0], dc).start(wait=False)
    b = None
    try:
        a.wait_connected()
        b = Bridge(cfgs[1], dc).start(wait=False)
        wait_for(lambda: "another storingsbridge" in b.log(), timeout=15, what="the refusal")
        for n in range(10):
            dc.append(storing(n))
        wait_for(lambda: len(dc.uids("Processed")) == 10, timeout=30, what="10 moved")
        time.sleep(3)  # b retries every 2 s meanwhile, and keeps refusing
        st = wait_for(lambda: imap_status(cfgs[1]).get("paused") and imap_status(cfgs[1]),
                      timeout=10, what="b's status")
        assert st["state"] == "paused" and "another storingsbridge" in st["paused"]
        assert outbox(dirs[1]) == [] and len(outbox(dirs[0])) == 10
        assert "imap: connected to" not in b.log()
        assert b.log().count("imap: paused:") == 1
        assert a.stop() == 0, a.log()  # a clean stop releases the lock
        b.wait_connected(timeout=15)
        dc.append(storing(10))
        wait_for(lambda: len(outbox(dirs[1])) == 1, timeout=15, what="b's notice")
    finally:
        if a.alive():
            a.stop()
        if b is not None:
            assert b.stop() == 0, b.log()
    every = sorted(re.search(r"INC\d{12}", m["text"]).group(0)
                   for p in dirs for m in outbox(p))
    assert every == sorted(f"INC{100000000 + n:012d}" for n in range(11))


def test_mails_vanishing_under_the_intake_pause_it(tmp_path, dc, subscribed):
    """Another program (an old install without the lock) takes the mails between the
    bridge's SEARCH and its FETCH: the bridge notices, stores nothing, and pauses."""
    for n in range(3):
        dc.append(storing(n))
    taken = []

    def other_reader(data: bytes) -> None:
        if b"RFC822.SIZE" in data and not taken:
            c = dc.client()
            try:
                c.create("Elders")
                c.select("INBOX")
                c.uid("MOVE", "1:*", "Elders")
                taken.append(True)
            finally:
                c.logout()

    proxy = SlowProxy(dc.port, on_client=other_reader).start()
    try:
        cfg = imap_config(tmp_path, dc, port=proxy.port)
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            st = wait_for(lambda: imap_status(cfg).get("paused") and imap_status(cfg),
                          timeout=20, what="the pause")
            assert "mails vanish from 'INBOX'" in st["paused"]
        finally:
            assert d.stop() == 0, d.log()
        assert "vanished from INBOX before it could be fetched" in d.log()
        assert status(cfg)["mails"] == {} and outbox(tmp_path) == []
        assert len(dc.uids("Elders")) == 3
    finally:
        proxy.stop()


def test_a_full_store_leaves_mails_on_the_server_until_space_returns(tmp_path, dc, subscribed):
    """A full disk (the store's page cap, set from outside through BRIDGE_FAULT_PAGE_CAP,
    see bridge/store/db.py): the intake cannot commit, so it neither moves nor marks a
    mail; the daemon stays up, and once space returns every mail is processed once and
    moved."""
    from diskfull import PAD

    cfg = imap_config(tmp_path, dc)
    subscribed(cfg)
    cap = tmp_path / "page_cap"
    cap.write_text("")
    d = Bridge(cfg, dc)
    d.env["BRIDGE_FAULT_PAGE_CAP"] = str(cap)
    d.start(wait=False)
    try:
        d.wait_connected()
        dc.append(storing(1))
        wait_for(lambda: len(outbox(tmp_path)) == 1, what="the first notice")
        wait_for(lambda: dc.uids("Processed") == [1], what="the first mail moved")
        cap.write_text("full")
        for n in (2, 3, 4):  # ~10 KB each, as KPN's HTML mails: more than the store has
            dc.append(storing(n) + PAD)
        wait_for(lambda: "the store cannot commit" in d.log(), timeout=20,
                 what="the intake to meet the full store")
        time.sleep(6)  # several tries, each refused
        assert d.alive(), d.log()
        # a mail may have slipped into pages the store still had free; the others wait
        # on the server, neither moved nor lost
        assert len(outbox(tmp_path)) < 4
        assert len(dc.uids("INBOX")) >= 4 - len(outbox(tmp_path)) >= 1
        cap.write_text("")  # space returns
        wait_for(lambda: len(outbox(tmp_path)) == 4 and not dc.uids("INBOX"), timeout=60,
                 what="the three mails processed and moved")
        time.sleep(0.5)
    finally:
        assert d.stop() == 0, d.log()
    assert tickets(tmp_path) == [f"INC{100000000 + n:012d}" for n in (1, 2, 3, 4)]
    assert sorted(dc.uids("Processed")) == [1, 2, 3, 4]
    log = d.log()
    assert "crashed" not in log and "Traceback" not in log
    assert not [line for line in log.splitlines() if " ERROR " in line], log
