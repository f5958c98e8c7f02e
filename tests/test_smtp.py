"""SMTP intake end to end: smtplib against the running daemon on a free port."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3

import pytest

from daemon import Daemon, bridge, wait_for
from helpers import free_port, read_outbox, sample, sample_now, samples_now, write_config

KPN = "storingsmeldingen@wholesale.kpn.example"
NUMBERS = ["+31611111111", "+31622222222"]


@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    bridge(cfg, "subscribers", "add", *NUMBERS)
    d = Daemon(cfg, port=port).start()
    yield d
    if d.alive():
        assert d.stop() == 0, d.log()


def send(port: int, data: bytes, sender: str = KPN, rcpt: str = "noc@localhost"):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return s.sendmail(sender, [rcpt], data)


def test_mail_over_smtp_reaches_every_subscriber_once(daemon, tmp_path):
    # dated now (the daemon sends older mails to review), the forward moved with it
    mail, forward = samples_now("01", "06")
    send(daemon.port, mail)
    lines = wait_for(lambda: len(read_outbox(tmp_path)) >= 2 and read_outbox(tmp_path),
                     what="two messages")
    assert sorted(m["to"] for m in lines) == NUMBERS
    assert all("Amersfoort" in m["text"] for m in lines)
    assert {m["notice_id"] for m in lines} == {1}
    # the same mail again, and the forward by support: duplicates, nothing more sent
    send(daemon.port, mail)
    send(daemon.port, forward, sender="support@cbgconnect.example")
    out = bridge(daemon.config, "status", "--json").stdout
    wait_for(lambda: '"duplicate": 2' in bridge(daemon.config, "status", "--json").stdout,
             what="two duplicates")
    assert len(read_outbox(tmp_path)) == 2, out
    assert daemon.stop() == 0
    assert "mail 3: duplicate" in daemon.log() or "duplicate" in daemon.log()


def test_sender_not_on_allow_list_gets_550(daemon, tmp_path):
    with pytest.raises(smtplib.SMTPSenderRefused) as e:
        send(daemon.port, sample("07"), sender="facturen@leverancier.example")
    assert e.value.smtp_code == 550
    daemon.stop()
    assert "sender not on the allow-list" in daemon.log()


def test_size_limit_552(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = true\nmax_size = 2048"))
    d = Daemon(cfg, port=port).start()
    try:
        with pytest.raises(smtplib.SMTPException) as e:
            send(port, sample("01") + b"x" * 4096)
        assert "552" in str(e.value)
    finally:
        assert d.stop() == 0


def test_unknown_recipient_550(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    cfg.write_text(cfg.read_text().replace("enabled = true",
                                           'enabled = true\nrecipients = ["storingen@isp.example"]'))
    d = Daemon(cfg, port=port).start()
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            send(port, sample("01"), rcpt="other@isp.example")
        assert e.value.recipients["other@isp.example"][0] == 550
        assert send(port, sample("01"), rcpt="Storingen@isp.example") == {}
    finally:
        assert d.stop() == 0


def test_mail_is_committed_before_250_sigkill_right_after(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    bridge(cfg, "subscribers", "add", NUMBERS[0])
    # The processor is made to die before touching the mail: only the commit can save it.
    d = Daemon(cfg, port=port, env={"BRIDGE_FAULTS": "process-mail"}).start()
    send(port, sample_now("01"))
    d.kill()
    db = sqlite3.connect(tmp_path / "bridge.db")
    rows = db.execute("SELECT message_id, outcome FROM raw_mails").fetchall()
    db.close()
    assert rows == [("inc12345678.1@wholesale.kpn.example", None)]
    d2 = Daemon(cfg, port=port).start()
    wait_for(lambda: read_outbox(tmp_path), what="the notice after restart")
    assert d2.stop() == 0
    assert [m["to"] for m in read_outbox(tmp_path)] == [NUMBERS[0]]


async def test_storage_failure_answers_451(tmp_path):
    from bridge.config import load
    from bridge.intake.smtp import SmtpIntake
    from bridge.mailroom import Mailroom
    from bridge.store import Store
    from bridge.store.db import Database

    cfg = load(write_config(tmp_path, smtp=True, smtp_port=0))
    store = Store(Database(tmp_path / "bridge.db", busy_timeout=0.1))
    intake = SmtpIntake(cfg.smtp, cfg.senders, Mailroom(store))
    await intake.start()
    blocker = sqlite3.connect(tmp_path / "bridge.db", timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        def client():
            with smtplib.SMTP("127.0.0.1", intake.port, timeout=10) as s:
                s.ehlo()
                s.mail(KPN)
                s.rcpt("noc@localhost")
                return s.data(sample("01"))

        code, msg = await asyncio.to_thread(client)
        assert code == 451, msg
    finally:
        blocker.rollback()
        blocker.close()
        await intake.stop()
        store.close()


def test_auth_and_starttls(tmp_path):
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    cfg.write_text(cfg.read_text().replace("enabled = true", (
        'enabled = true\nauth_username_env = "T_SMTP_USER"\nauth_password_env = "T_SMTP_PASS"\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_starttls = true')))
    d = Daemon(cfg, port=port, env={"T_SMTP_USER": "kpn", "T_SMTP_PASS": "geheim"}).start()
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # no TLS: refused
            s.ehlo()
            code, _ = s.mail(KPN)
            assert code == 530
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # TLS, wrong password
            s.starttls(context=ctx)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login("kpn", "fout")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # TLS and AUTH: accepted
            s.starttls(context=ctx)
            s.login("kpn", "geheim")
            assert s.sendmail(KPN, ["noc@localhost"], sample("01")) == {}
    finally:
        assert d.stop() == 0, d.log()
    assert "failed LOGIN login" in d.log() or "failed PLAIN login" in d.log()


def test_missing_secret_is_a_clear_error(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    cfg.write_text(cfg.read_text().replace("enabled = true", (
        'enabled = true\nauth_username_env = "T_NOPE_USER"\nauth_password_env = "T_NOPE_PASS"')))
    p = bridge(cfg, "run", check=False)
    assert p.returncode == 78  # EX_CONFIG: systemd does not restart it in a loop
    assert "smtp.auth_username_env: environment variable T_NOPE_USER is not set" in p.stderr
