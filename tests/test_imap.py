"""IMAP intake against a real, private Dovecot (tests/dovecot.py) and the real daemon process.

Each test starts Dovecot on a free port in its tmp dir, writes a bridge config with an
``[imap]`` section, and runs ``python -m bridge run`` as a subprocess; notices are read from
the console channel's ``outbox_file``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon import Daemon, bridge, wait_for  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from helpers import ROOT, write_config  # noqa: E402
from helpers import read_outbox as outbox  # noqa: E402
from helpers import dated_now  # noqa: E402

DATA = Path(__file__).parent / "data" / "imap"
PW_ENV = "BRIDGE_TEST_IMAP_PASSWORD"
SUBSCRIBER = "+31612345678"


# -- helpers ------------------------------------------------------------------------------------------
def storing(n: int, *, sender: str | None = None) -> bytes:
    """Sample 01 as a distinct mail: its own Message-ID and ticket (INC0000100nnnnn), dated
    now (the daemon sends a mail older than review.max_mail_age_hours to review)."""
    raw = dated_now((DATA / "01-storing-nieuw.eml").read_bytes())
    raw = raw.replace(b"<inc12345678.1@wholesale.kpn.example>",
                      f"<imap-test-{n}.{time.time_ns()}@wholesale.kpn.example>".encode())
    raw = raw.replace(b"INC000012345678", f"INC{100000000 + n:012d}".encode())
    if sender:
        raw = raw.replace(b"storingsmeldingen@wholesale.kpn.example", sender.encode())
    return raw


def imap_config(tmp: Path, dc: Dovecot, imap_extra: str = "", **imap) -> Path:
    """The test config (helpers.write_config) with an ``[imap]`` table for Dovecot ``dc``."""
    keys = {"host": "127.0.0.1", "port": dc.port, "tls": "none", "user": dc.user,
            "password_env": PW_ENV, "timeout": 3, "backoff_max": 2, "login_backoff": 60,
            "idle_renew": 60, "poll_interval": 0.2}
    keys.update(imap)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    return write_config(tmp, extra="[imap]\n" + lines + "\n" + textwrap.dedent(imap_extra))


def status(cfg: Path) -> dict:
    return json.loads(bridge(cfg, "status", "--json").stdout)


class Bridge(Daemon):
    def __init__(self, cfg: Path, dc: Dovecot, faults: str | None = None):
        env = {PW_ENV: dc.password}
        if faults:
            env["BRIDGE_FAULTS"] = faults
        super().__init__(cfg, env=env)
        self._log_start = 0

    def start(self, wait: bool = True) -> "Bridge":
        # The log file is shared by the daemons one test starts one after another: remember
        # where this one's lines begin, so its waits do not match an earlier daemon's lines.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start(wait)
        return self

    def own_log(self) -> str:
        """The lines this process wrote (not those of an earlier daemon in the same file)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def wait_connected(self, n: int = 1, timeout: float = 20) -> None:
        """Wait for this process's n-th 'connected' line (then a moment for IDLE to be under
        way)."""
        wait_for(lambda: self.own_log().count("imap: connected to") >= n or not self.alive(),
                 timeout=timeout, what=f"imap connection #{n}")
        assert self.alive(), self.log()
        time.sleep(0.3)

    def wait_dead(self, timeout: float = 20) -> int:
        assert self.proc
        return self.proc.wait(timeout)


@pytest.fixture
def dc(tmp_path):
    d = Dovecot(tmp_path / "dovecot").start()
    yield d
    d.cleanup()


@pytest.fixture
def subscribed():
    def add(cfg: Path) -> None:
        bridge(cfg, "subscribers", "add", SUBSCRIBER)
    return add


def run_bridge(tmp_path, dc, subscribed, faults=None, **imap) -> tuple[Path, Bridge]:
    cfg = imap_config(tmp_path, dc, **imap)
    subscribed(cfg)
    return cfg, Bridge(cfg, dc, faults).start(wait=False)


# -- config -------------------------------------------------------------------------------------------
def _parse(table: dict):
    from bridge.config import Section
    from bridge.intake.imap import parse_config

    return parse_config(Section(table, "imap"), Path("/etc/storingsbridge"))


def test_config_defaults_and_validation():
    from bridge.config import ConfigError

    s = _parse({"host": "imap.example.nl", "user": "noc", "password_env": "IMAP_PW"})
    assert (s.tls, s.port, s.folder, s.mode) == ("imaps", 993, "INBOX", "idle")
    assert s.processed_folder and s.rejected_folder
    assert s.idle_renew < 29 * 60
    with pytest.raises(ConfigError, match=r"imap\.tls: STARTTLS is not supported: aioimaplib"):
        _parse({"host": "imap.example.nl", "user": "noc", "password_env": "X", "tls": "starttls"})
    with pytest.raises(ConfigError, match=r"imap\.tls: plain IMAP .* loopback"):
        _parse({"host": "imap.example.nl", "user": "noc", "password_env": "X", "tls": "none"})
    assert _parse({"host": "::1", "user": "u", "password_env": "X", "tls": "none"}).port == 143
    with pytest.raises(ConfigError, match=r"imap\.idle_renew"):
        _parse({"host": "h", "user": "u", "password_env": "X", "idle_renew": 1800})
    with pytest.raises(ConfigError, match=r"imap\.processed_folder: must differ"):
        _parse({"host": "h", "user": "u", "password_env": "X", "processed_folder": "inbox"})
    with pytest.raises(ConfigError, match=r"imap\.passwd: unknown key"):
        _parse({"host": "h", "user": "u", "password_env": "X", "passwd": "x"})


def test_bridge_check_refuses_starttls(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [store]
        path = "{tmp_path / 'b.db'}"
        [render]
        templates_dir = "{ROOT / 'templates'}"
        [imap]
        host = "imap.example.nl"
        user = "noc"
        password_env = "IMAP_PW"
        tls = "starttls"
        """))
    p = bridge(cfg, "check", check=False)
    assert p.returncode != 0
    assert "aioimaplib has no STARTTLS" in p.stdout + p.stderr


def test_parse_fetch_uid_before_and_after_literal():
    from bridge.intake.imap import parse_fetch

    lines = [b"1 FETCH (UID 7 BODY[] {3}", bytearray(b"abc"), b")",
             b"* 2 FETCH (BODY[] {2}", bytearray(b"de"), b" UID 9)",
             b"3 FETCH (FLAGS (\\Seen) UID 4)", b"Fetch completed."]
    assert parse_fetch(lines) == {7: b"abc", 9: b"de"}


# -- against Dovecot ------------------------------------------------------------------------------------
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
        # the status the daemon writes for `bridge status`
        imap = wait_for(lambda: ((status(cfg)["daemon"] or {}).get("parts") or {}).get("imap", {})
                        .get("last_uid") == 1 and status(cfg)["daemon"]["parts"]["imap"],
                        timeout=15, what="status with the IMAP part")
        assert imap["connected"] is True and imap["idling"] is True
        assert imap["uidvalidity"] and imap["last_mail_at"] >= t0 - 1
        assert imap["last_error"] is None
        out = bridge(cfg, "status").stdout
        assert "imap: " in out and "connected=True" in out
    finally:
        assert d.stop() == 0, d.log()
    assert status(cfg)["mails"] == {"queued": 1}


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
    assert sorted(dc.uids("Processed")) == [1, 2, 3] and dc.uids("INBOX") == []


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
    assert dc.log().count("auth failed") + dc.log().count("Authentication failed") <= 2
    assert d.log().count("login as 'kpnmail'") == 1


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


def test_tls_mismatch_times_out_instead_of_hanging(tmp_path):
    """Plain IMAP to an IMAPS port: no greeting ever comes; the deadline ends the wait."""
    dc = Dovecot(tmp_path / "dovecot", imaps=True).start()
    try:
        from bridge.intake.imap import ImapIntake, ImapSettings
        from bridge.store import Store

        class App:
            store = Store.open(tmp_path / "b.db")

            def mail_stored(self, mail_id):
                pass

        os.environ[PW_ENV] = dc.password
        s = ImapSettings(host="127.0.0.1", port=dc.port, tls="none", user=dc.user,
                         password_env=PW_ENV, timeout=1, backoff_max=1)
        intake = ImapIntake(s, App())

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
        App.store.close()
    finally:
        os.environ.pop(PW_ENV, None)
        dc.cleanup()
