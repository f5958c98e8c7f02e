"""Outgoing mail (issue 13): the [mail_out] table, composing our mails, the durable queue
with retries against a real relay (aiosmtpd on loopback), `bridge mail test` and the mail
templates in `bridge check`."""

from __future__ import annotations

import asyncio
import email
import shutil
import socket
import time
from datetime import datetime, timezone
from email import policy

import pytest

from daemon import bridge
from helpers import TEMPLATES, free_port, write_config
from smtp_relay import SmtpRelay

from bridge.app import App
from bridge.config import ConfigError, load
from bridge.events import MailProcessed
from bridge.mailout.compose import (MAX_REFERENCES, Letter, compose, reply_subject,
                                    thread_references)
from bridge.store import RawMail, Store
from bridge.store.mailout import QueuedMail

FWD = "support@cbgconnect.example"
OPERATOR = "beheer@cbgconnect.example"


def cfg_with(tmp_path, table: str, extra: str = ""):
    return load(write_config(tmp_path, extra=f"[mail_out]\n{table}\n{extra}"))


# -- [mail_out] --------------------------------------------------------------------------------
def test_off_without_the_table(cfg, app):
    assert cfg.mail_out is None and app.mailback is None


def test_defaults_are_written_once(tmp_path):
    s = cfg_with(tmp_path, 'host = "smtp.example.nl"\nfrom = "Bridge@CBGConnect.example"')\
        .mail_out
    assert (s.host, s.from_addr, s.tls, s.relay_port) == \
        ("smtp.example.nl", "bridge@cbgconnect.example", "starttls", 587)
    assert s.operators == () and s.receipts and s.receipts_per_hour == 20
    assert s.review_wait_minutes == 30 and s.fanout_failure_share == 0.1
    assert s.console_url == "" and s.stop_wait == 10
    for tls, port in (("none", 25), ("implicit", 465)):
        assert cfg_with(tmp_path, f'host = "h"\nfrom = "a@b.nl"\ntls = "{tls}"')\
            .mail_out.relay_port == port


@pytest.mark.parametrize("table,error", [
    ('from = "a@b.nl"', "mail_out.host: is required"),
    ('host = "h"', "mail_out.from: is required"),
    ('host = "h"\nfrom = "geen adres"', "mail_out.from: must be a mail address"),
    ('host = "h"\nfrom = "a@b.nl"\ntls = "ssl"', "mail_out.tls: must be one of none, starttls,"),
    ('host = "h"\nfrom = "a@b.nl"\nusername = "u"', "mail_out.password_env: set both"),
    ('host = "h"\nfrom = "a@b.nl"\noperators = ["beheer"]', "mail_out.operators: must be a mail"),
    ('host = "h"\nfrom = "a@b.nl"\nconsole_url = "bridge/console"',
     "mail_out.console_url: must start with http"),
    ('host = "h"\nfrom = "a@b.nl"\nfanout_failure_share = 1.5',
     "mail_out.fanout_failure_share: must be from 0.0 to 1.0"),
    ('host = "h"\nfrom = "a@b.nl"\noperator = ["x@y.nl"]', "mail_out.operator: unknown key"),
])
def test_config_errors_name_the_key(tmp_path, table, error):
    with pytest.raises(ConfigError) as e:
        cfg_with(tmp_path, table)
    assert str(e.value).startswith(error), e.value


def test_never_from_or_to_an_intake_address(tmp_path):
    smtp = "[smtp]\nrecipients = [\"storingen-bridge@cbgconnect.example\"]\n"
    path = write_config(tmp_path, smtp=True, smtp_port=free_port())
    text = path.read_text().replace("[smtp]\n", smtp)
    for key, value in (("from", '"storingen-bridge@cbgconnect.example"'),
                       ("operators", '["Storingen-Bridge@cbgconnect.example"]'),
                       ("receipts_copy_to", '"storingen-bridge@cbgconnect.example"')):
        table = f'[mail_out]\nhost = "h"\nfrom = "bridge@cbgconnect.example"\n{key} = {value}\n'
        path.write_text(text + table.replace('from = "bridge@cbgconnect.example"\n', "")
                        if key == "from" else text + table)
        with pytest.raises(ConfigError, match=f"mail_out.{key}: .* an address the bridge takes"):
            load(path)
    imap = ('[imap]\nhost = "127.0.0.1"\nuser = "storingen@cbgconnect.example"\n'
            'password_env = "X"\ntls = "none"\n')
    path.write_text(text + imap + '[mail_out]\nhost = "h"\nfrom = "storingen@cbgconnect.example"\n')
    with pytest.raises(ConfigError, match="mail_out.from"):
        load(path)


# -- composing ---------------------------------------------------------------------------------
def test_a_composed_mail_is_7bit_crlf_and_marked_automatic():
    data = compose(Letter(from_addr="bridge@cbgconnect.example", from_name="Storingsbridge Één",
                          to=(FWD,), subject="Re: Storing — Amersfoort", body="Hé, één regel\n",
                          message_id="sb.1.2@cbgconnect.example",
                          date=datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc),
                          auto_submitted="auto-replied", in_reply_to="orig@x",
                          references=("first@x", "orig@x")))
    assert data.isascii() and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    m = email.message_from_bytes(data, policy=policy.default)
    assert m["Auto-Submitted"] == "auto-replied" and m["X-Auto-Response-Suppress"] == "All"
    assert str(m["Subject"]) == "Re: Storing — Amersfoort"
    assert m["From"].addresses[0].display_name == "Storingsbridge Één"
    assert m["In-Reply-To"] == "<orig@x>" and m["References"] == "<first@x> <orig@x>"
    assert m.get_content().replace("\r\n", "\n") == "Hé, één regel\n"
    assert m["Content-Language"] == "nl"


def test_reply_subjects_and_references():
    assert reply_subject("FW: Storing") == "Re: FW: Storing"
    assert reply_subject("RE: Storing") == "RE: Storing"
    assert reply_subject("Antw: Storing") == "Antw: Storing"
    assert reply_subject("") == "Re: (geen onderwerp)"
    refs = thread_references(tuple(f"r{i}@x" for i in range(30)), "m@x", "ours@x")
    assert len(refs) == MAX_REFERENCES and refs[0] == "r0@x" and refs[-2:] == ("m@x", "ours@x")
    assert thread_references(("a@x",), "a@x") == ("a@x",)


# -- the queue against a real relay --------------------------------------------------------------
def app_with(tmp_path, relay: SmtpRelay, extra: str = "") -> App:
    return App(load(write_config(tmp_path, extra=relay.config(operators=(OPERATOR,),
                                                              extra=extra))))


async def run_part(app: App, seconds: float, between=None):
    from bridge.mailout import build

    part = build(app.cfg.mail_out, app)
    stop = asyncio.Event()
    task = asyncio.create_task(part.run(stop))
    try:
        if between is not None:
            await between(part)
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return part


def forwarded_mail(app: App, mid: str = "f1@cbgconnect.example") -> int:
    from test_receipts import plain

    mail_id = app.store.mails.add(RawMail(plain(mid), "smtp", envelope_from=FWD))
    assert app.pipeline.process(mail_id).outcome == "review"  # a forwarder's own words go to review
    return mail_id


async def test_a_refused_recipient_fails_for_good_a_passing_refusal_is_retried(tmp_path,
                                                                               monkeypatch):
    from bridge.mailout import service

    monkeypatch.setattr(service, "BACKOFF_BASE", 0.2)
    relay = SmtpRelay().start()
    app = app_with(tmp_path, relay)
    relay.refuse[OPERATOR] = "550 5.1.1 <beheer@cbgconnect.example>: no such user"
    relay.refuse[FWD] = "451 4.3.0 try again later"
    try:
        forwarded_mail(app)
        app.mailback.queue_alert("alert_stopping.j2", {"reden": "x", "sinds": None})

        async def heal(part):
            await asyncio.sleep(1.0)
            assert relay.messages == []
            del relay.refuse[FWD]  # the relay takes mail for the forwarder again

        part = await run_part(app, 1.5, heal)
        rows = {r["kind"]: r for r in app.store.mailout.recent()}
    finally:
        app.store.close()
        relay.stop()
    assert rows["alert"]["state"] == "failed" and rows["alert"]["attempts"] == 1
    assert "550 5.1.1" in rows["alert"]["error"]
    assert rows["receipt"]["state"] == "sent" and rows["receipt"]["attempts"] >= 2
    assert rows["receipt"]["response"].startswith("250 ")
    assert [m.rcpt_tos for m in relay.messages] == [[FWD]]
    assert part.failed == 1 and part.sent == 1


async def test_a_mail_older_than_the_queue_lifetime_is_dropped(tmp_path):
    relay = SmtpRelay().start()
    app = app_with(tmp_path, relay, "queue_lifetime_hours = 1\n")
    try:
        forwarded_mail(app)
        app.store.db.execute("UPDATE mail_out SET created_at = created_at - 7200")
        await run_part(app, 0.5)
        [row] = app.store.mailout.recent()
    finally:
        app.store.close()
        relay.stop()
    assert row["state"] == "failed" and "gave up after 1 h" in row["error"]
    assert relay.messages == []


async def test_each_receipt_is_queued_once_and_rate_limited(tmp_path):
    relay = SmtpRelay().start()
    app = app_with(tmp_path, relay, "receipts_per_hour = 2\n")
    try:
        first = forwarded_mail(app, "a@x")
        app.events.publish(MailProcessed(mail_id=first, outcome="rejected", reason="again"))
        forwarded_mail(app, "b@x")
        forwarded_mail(app, "c@x")  # the third this hour to the same forwarder
        assert [r["dedupe_key"] for r in app.store.mailout.recent()] == ["receipt:2", "receipt:1"]
        assert any("more than 2 receipts an hour" in k for k in app.mailback.skipped)
        await run_part(app, 0.5)
    finally:
        app.store.close()
        relay.stop()
    assert len(relay.messages) == 2


async def test_a_stop_is_not_held_up_by_a_relay_that_does_not_answer(tmp_path):
    relay = SmtpRelay()  # its port takes connections and never answers (timeout 5 s)
    silent = socket.socket()
    silent.bind(("127.0.0.1", relay.port))
    silent.listen(8)
    app = app_with(tmp_path, relay, "stop_wait = 0.5\n")
    try:
        forwarded_mail(app)
        t = time.monotonic()
        await run_part(app, 0.3)  # the sender is stuck in the greeting when the stop comes
        took = time.monotonic() - t
        [row] = app.store.mailout.recent()
    finally:
        silent.close()
        app.store.close()
    assert took < 2.0
    assert row["state"] == "pending"  # kept for the next start


def test_the_store_keeps_its_message_id_key_and_purges_finished_mail(tmp_path):
    path = tmp_path / "s.db"
    store = Store.open(path)
    key = store.mailout.message_id_key()
    for i in range(3):
        store.mailout.enqueue(QueuedMail(kind="alert", sender="", recipients=(OPERATOR,),
                                         message_id=f"m{i}@x", data=b"x", dedupe_key=f"k{i}"))
    assert store.mailout.enqueue(QueuedMail(kind="alert", sender="", recipients=(OPERATOR,),
                                            message_id="dup@x", data=b"x", dedupe_key="k0")) is None
    store.mailout.mark_sent(1, "250 ok")
    store.mailout.mark_failed(2, "550 no")
    store.db.execute("UPDATE mail_out SET finished_at = 1 WHERE finished_at IS NOT NULL")
    assert store.purge(30)["mail_out"] == 2
    assert store.mailout.counts() == {"pending": 1}
    store.close()
    again = Store.open(path)
    assert again.mailout.message_id_key() == key and len(key) == 32
    again.close()


# -- CLI ---------------------------------------------------------------------------------------
def test_mail_test_reports_the_relays_answer_in_one_line(tmp_path):
    relay = SmtpRelay(tls=True, auth=("bridge", "geheim")).start()
    cfg = write_config(tmp_path, extra=relay.config())
    try:
        ok = bridge(cfg, "mail", "test", OPERATOR, env={"BRIDGE_TEST_RELAY_PASSWORD": "geheim"})
        wrong = bridge(cfg, "mail", "test", OPERATOR, check=False,
                       env={"BRIDGE_TEST_RELAY_PASSWORD": "fout"})
        unset = bridge(cfg, "mail", "test", OPERATOR, check=False,
                       env={"BRIDGE_TEST_RELAY_PASSWORD": ""})
    finally:
        relay.stop()
    down = bridge(cfg, "mail", "test", OPERATOR, check=False,
                  env={"BRIDGE_TEST_RELAY_PASSWORD": "geheim"})
    where = f"{OPERATOR} via localhost:{relay.port} (starttls, AUTH as bridge)"
    assert ok.stdout == f"sent: {where}: 250 2.0.0 Ok: queued as T1\n" and ok.stderr == ""
    [m] = relay.messages
    assert m.tls and m.login == "bridge" and m.rcpt_tos == [OPERATOR]
    assert str(m.message["Subject"]) == "Storingsbridge CBG Connect: testmail"
    assert m.message["Auto-Submitted"] == "auto-generated"
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.startswith(f"bridge: not sent: {where}: login: 535")
    assert wrong.stderr.count("\n") == 1
    assert unset.returncode == 1 and "BRIDGE_TEST_RELAY_PASSWORD is not set" in unset.stderr
    assert down.returncode == 1 and f"{where}: connect: " in down.stderr
    assert down.stderr.count("\n") == 1


def test_mail_test_without_mail_out_or_with_a_bad_address(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "mail", "test", OPERATOR, check=False)
    assert p.returncode == 1 and "mail back is off: add a [mail_out] table" in p.stderr
    cfg = write_config(tmp_path, extra='[mail_out]\nhost = "h"\nfrom = "a@b.nl"\n')
    p = bridge(cfg, "mail", "test", "beheer", check=False)
    assert p.returncode == 1 and "not a mail address" in p.stderr


def test_check_renders_the_mail_templates_with_line_numbers(tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    cfg = write_config(tmp_path, extra='[mail_out]\nhost = "h"\nfrom = "a@b.nl"\n'
                                       'username = "u"\npassword_env = "BRIDGE_T_NOT_SET"\n')
    cfg.write_text(cfg.read_text().replace(str(TEMPLATES), str(templates)))
    assert bridge(cfg, "check", check=False).stdout.count("BRIDGE_T_NOT_SET is not set") == 1
    review = templates / "mail" / "receipt_review.j2"
    lines = review.read_text().splitlines()
    n = next(i for i, ln in enumerate(lines, 1) if "controle.id" in ln)
    lines[n - 1] += " {{ controle.nummer.x }}"
    review.write_text("\n".join(lines) + "\n")
    (templates / "mail" / "alert_paused.j2").write_text("Onderwerp\n\n{% if %}\n")
    (templates / "mail" / "test.j2").unlink()
    p = bridge(cfg, "check", check=False, env={"BRIDGE_T_NOT_SET": "x"})
    assert p.returncode == 1
    assert f"{review}:{n}: sample 1: " in p.stdout
    assert f"{templates / 'mail' / 'alert_paused.j2'}:3: syntax error" in p.stdout
    assert f"{templates / 'mail' / 'test.j2'}:0: missing" in p.stdout
    assert "4 problem(s) found" in p.stderr, p.stdout  # the bad line fails both samples


def test_review_links_use_the_consoles_address(tmp_path):
    """Without [mail_out] console_url the links go to the operator console (web.public_url)."""
    from bridge.mailout.back import review_link

    relay = """
        [mail_out]
        host = "127.0.0.1"
        from = "bridge@cbgconnect.example"
        """
    web = """
        [web]
        port = 0
        console = true
        public_url = "https://bridge.cbgconnect.example/"
        """
    app = App(load(write_config(tmp_path, extra=relay + web)))
    try:
        url = app.mailback.console_url
        assert review_link(url, 7) == "https://bridge.cbgconnect.example/console/review/7"
    finally:
        app.store.close()
    (tmp_path / "own").mkdir()
    own = relay + '        console_url = "https://elders.example/r/{review}"\n' + web
    app = App(load(write_config(tmp_path / "own", extra=own)))
    try:
        assert review_link(app.mailback.console_url, 7) == "https://elders.example/r/7"
    finally:
        app.store.close()
