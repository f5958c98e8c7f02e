"""The command line after review: --config anywhere, help for every action, exit codes,
preview and review decide as ingest does, dispatch and check tell the truth, user ids."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from daemon import bridge
from helpers import MAILS, ROOT, TEMPLATES, now_of, read_outbox, sample, write_config


def run_cli(capsys, *argv):
    from bridge.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def bridge_raw(*argv, env=None, timeout=60):
    """`python -m bridge` with the arguments exactly as given (no --config appended)."""
    import os

    return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


# -- 1. --config before the command ----------------------------------------------------------------
def test_config_before_the_command_is_used(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(cfg), "subscribers", "add", "0612345678")[0] == 0
    for argv in (["--config", str(cfg), "subscribers", "count"],
                 ["subscribers", "--config", str(cfg), "count"],
                 ["subscribers", "count", "--config", str(cfg)]):
        code, out, err = run_cli(capsys, *argv)
        assert (code, out.strip()) == (0, "1"), (argv, out, err)
    code, out, err = run_cli(capsys, "--config", str(cfg), "review", "list")
    assert code == 0 and out.strip() == "review queue is empty", (out, err)
    # a wrong path before the command is not replaced by ./config.toml
    code, out, err = run_cli(capsys, "--config", str(tmp_path / "nope.toml"), "status")
    assert code == 1 and "nope.toml: config file not found" in err, (out, err)


# -- 4. help lists the actions ---------------------------------------------------------------------
@pytest.mark.parametrize("command,actions", [
    ("subscribers", ("add", "remove", "count", "list", "show")),
    ("review", ("list", "show", "approve", "reject")),
])
def test_help_of_a_command_lists_its_actions(command, actions):
    p = bridge_raw(command, "--help")
    assert p.returncode == 0, p.stderr
    listed = {line.split()[0] for line in p.stdout.splitlines()
              if line.startswith("    ") and len(line.split()) > 1}
    assert set(actions) <= listed, p.stdout


# -- 5. exit codes of bridge run -------------------------------------------------------------------
def test_run_with_a_config_error_exits_78(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("rate = 1000.0", 'rate = "fast"'))
    p = bridge(cfg, "run", check=False, timeout=30)
    assert p.returncode == 78, (p.returncode, p.stderr)
    assert p.stderr.strip() == "bridge: dispatch.rate: must be a number, got 'fast'"
    # other commands keep exit 1 for one-line failures
    assert bridge(cfg, "status", check=False).returncode == 1


def test_run_with_a_missing_secret_exits_78(tmp_path):
    cfg = write_config(tmp_path, smtp=True)
    cfg.write_text(cfg.read_text().replace("enabled = true", (
        'enabled = true\nauth_username_env = "T_NOPE_USER"\nauth_password_env = "T_NOPE_PASS"')))
    p = bridge(cfg, "run", check=False, timeout=30)
    assert p.returncode == 78, (p.returncode, p.stderr)
    last = p.stderr.strip().splitlines()[-1]  # the daemon logs to stderr too
    assert last == "bridge: smtp.auth_username_env: environment variable T_NOPE_USER is not set"


def test_run_with_the_smtp_port_in_use_exits_78(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = write_config(tmp_path, smtp=True, smtp_port=busy.getsockname()[1])
        p = bridge(cfg, "run", check=False, timeout=30)
    assert p.returncode == 78, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines()[-1].startswith("bridge: cannot start:"), p.stderr


def test_run_while_another_daemon_owns_the_store_exits_78(tmp_path):
    from bridge.app import App
    from bridge.config import load

    cfg_path = write_config(tmp_path)
    owner = App(load(cfg_path))
    owner.dispatcher.acquire()
    try:
        p = bridge(cfg_path, "run", check=False, timeout=30)
    finally:
        owner.dispatcher.release()
        owner.store.close()
    assert p.returncode == 78, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines()[-1].startswith("bridge: another dispatcher"), p.stderr


# -- 12. user ids ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["user:", "user:abc def", "user: abc", "user:abc\tdef",
                                 "user:.abc", "user:abc/def"])
def test_subscribers_add_refuses_an_empty_or_spaced_user_id(tmp_path, capsys, bad):
    cfg = write_config(tmp_path)
    code, out, err = run_cli(capsys, "subscribers", "add", "0612345678", bad, "--config", str(cfg))
    assert code == 1 and err.startswith("bridge: not a valid user id"), (out, err)
    assert len(err.strip().splitlines()) == 1
    assert run_cli(capsys, "subscribers", "count", "--config", str(cfg))[1].strip() == "0"
    code, out, err = run_cli(capsys, "inbound", bad, "STOP", "--config", str(cfg))
    assert code == 1 and err.startswith("bridge: not a valid user id"), (out, err)


def test_subscribers_add_takes_a_business_scoped_user_id(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code, out, err = run_cli(capsys, "subscribers", "add", "user:NL.1502576394655843",
                             "--config", str(cfg))
    assert code == 0 and "added" in out, (out, err)
    code, out, err = run_cli(capsys, "subscribers", "list", "--unmasked", "--config", str(cfg))
    assert out.startswith("user:NL.1502576394655843\t"), out


# -- 2. preview decides as ingest does --------------------------------------------------------------
def _no_ticket(tmp_path):
    data = sample("01").replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
    f = tmp_path / "vague.eml"
    f.write_bytes(data)
    return f


def test_preview_of_a_mail_ingest_would_not_send(tmp_path, capsys):
    cfg = write_config(tmp_path)
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"garbage")
    cases = [
        (MAILS / "07-geen-storing.eml",
         "would be rejected: sender facturen@leverancier.example is not on the allow-list"),
        (garbage, "would be rejected: "),
        (_no_ticket(tmp_path), "would go to review: no ticket"),
    ]
    for f, expected in cases:
        code, out, err = run_cli(capsys, "preview", str(f), "--config", str(cfg))
        assert code == 1 and out.startswith(expected), (f, out, err)
        assert len(out.strip().splitlines()) == 1, out
    code, out, err = run_cli(capsys, "status", "--json", "--config", str(cfg))
    assert '"mails": {}' in out and '"deliveries": {}' in out, out


def test_preview_of_a_forward_follows_the_forward_rules(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "06-doorgestuurd-outlook.eml"),
                           "--now", now_of(MAILS / "06-doorgestuurd-outlook.eml"),
                           "--config", str(cfg))
    assert code == 0 and "Amersfoort" in out, out
    cfg.write_text(cfg.read_text().replace('forwarders = ["support@cbgconnect.example"]',
                                           "forwarders = []"))
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "06-doorgestuurd-outlook.eml"),
                           "--now", now_of(MAILS / "06-doorgestuurd-outlook.eml"),
                           "--config", str(cfg))
    assert code == 1 and out.startswith("would be rejected: "), out


def test_preview_and_ingest_agree_on_every_sample(tmp_path, capsys):
    """On a fresh store, preview says notice exactly when ingest says queued, review when
    review, rejected when rejected; and the notice is the text that gets sent."""
    import json

    files = sorted(MAILS.glob("*.eml")) + [_no_ticket(tmp_path)]
    for i, f in enumerate(files):
        d = tmp_path / str(i)
        d.mkdir()
        cfg = write_config(d)
        run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
        # both as of five minutes after the mail's Date: a fixed-date sample is not stale
        now = now_of(f)
        code, out, _ = run_cli(capsys, "preview", str(f), "--now", now, "--config", str(cfg))
        preview_text = out.strip()
        _, out, _ = run_cli(capsys, "ingest", "--json", str(f), "--now", now,
                            "--config", str(cfg))
        outcome = json.loads(out)["outcome"]
        assert {"queued": 0, "review": 1, "rejected": 1}[outcome] == code, (f.name, outcome, out)
        if outcome == "queued":
            run_cli(capsys, "dispatch", "--config", str(cfg))
            [msg] = read_outbox(d)
            assert msg["text"] == preview_text, f.name
        else:
            what = "would go to review" if outcome == "review" else "would be rejected"
            assert preview_text.startswith(what + ": "), (f.name, preview_text)


# -- 3. review approve renders the fallback template, without KPN's signature ----------------------
VAGUE = b"""\
From: "KPN Wholesale Storingsdienst" <storingsmeldingen@wholesale.kpn.example>
To: noc@cbgconnect.example
Subject: Verstoring regio Utrecht
Date: Sat, 28 Nov 2026 10:00:00 +0100
Message-ID: <vague-utrecht@wholesale.kpn.example>
Content-Type: text/plain; charset="utf-8"
MIME-Version: 1.0

Beste partner,

Er is een verstoring in de regio Utrecht. Internet kan traag zijn.
Wij houden u op de hoogte.

Met vriendelijke groet,
KPN Wholesale
"""


def _review_item(tmp_path, capsys, cfg, data=VAGUE):
    f = tmp_path / "vague.eml"
    f.write_bytes(data)
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    code, out, err = run_cli(capsys, "ingest", str(f), "--config", str(cfg))
    assert ": review: " in out, out
    code, out, err = run_cli(capsys, "review", "show", "1", "--config", str(cfg))
    assert code == 0, err
    marker = "--- notice (exactly what approve sends) ---\n"
    assert marker in out, out
    shown = out.split(marker, 1)[1].strip()
    code, out, err = run_cli(capsys, "review", "approve", "1", "--config", str(cfg))
    assert code == 0 and "queued for 1 subscribers" in out, (out, err)
    run_cli(capsys, "dispatch", "--config", str(cfg))
    [msg] = read_outbox(tmp_path)
    return shown, msg["text"]


def test_approve_sends_the_fallback_template_and_show_prints_it(tmp_path, capsys):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    fb = templates / "notices" / "fallback.j2"
    fb.write_text(fb.read_text() + "\nUit het fallback-sjabloon.\n")
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(str(TEMPLATES), str(templates)))
    shown, sent = _review_item(tmp_path, capsys, cfg)
    assert sent == shown
    assert sent.endswith("Uit het fallback-sjabloon."), sent
    assert "Verstoring regio Utrecht" in sent  # the subject
    assert "Er is een verstoring in de regio Utrecht." in sent  # the first lines
    assert "groet" not in sent.lower() and "KPN Wholesale" not in sent, sent
    assert "Beste partner" not in sent


def test_approve_falls_back_to_the_built_in_text_when_the_template_fails(tmp_path, capsys):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "notices" / "fallback.j2").write_text("{{ r.no_such_field }}\n")
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(str(TEMPLATES), str(templates)))
    shown, sent = _review_item(tmp_path, capsys, cfg)
    assert sent == shown
    assert "Verstoring regio Utrecht" in sent and "verstoring in de regio Utrecht" in sent, sent
    assert "groet" not in sent.lower() and "KPN Wholesale" not in sent, sent


def test_approved_text_of_a_kpn_mail_without_ticket_keeps_its_facts(tmp_path, capsys):
    shown, sent = _review_item(tmp_path, capsys, write_config(tmp_path), _no_ticket(tmp_path)
                               .read_bytes())
    assert sent == shown
    assert "Amersfoort" in sent and "groet" not in sent.lower(), sent


# -- 6. dispatch tells whether everything due was handled ------------------------------------------
def test_dispatch_exits_0_when_everything_due_was_sent(tmp_path, capsys):
    cfg = write_config(tmp_path)
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    run_cli(capsys, "ingest", str(MAILS / "01-storing-nieuw.eml"),
            "--now", now_of(MAILS / "01-storing-nieuw.eml"), "--config", str(cfg))
    code, out, err = run_cli(capsys, "dispatch", "--config", str(cfg))
    assert code == 0 and out.startswith("sent 1,"), (out, err)
    code, out, err = run_cli(capsys, "dispatch", "--config", str(cfg))  # nothing due: fine
    assert code == 0 and out.startswith("sent 0,"), (out, err)


def test_dispatch_with_the_channel_paused_exits_non_zero(tmp_path):
    cfg = write_config(tmp_path, channel="cloud", channel_extra=f"""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_env = "T_NO_CLOUD_TOKEN_SET"
        base_url = "http://127.0.0.1:{_closed_port()}"
        """)
    bridge(cfg, "subscribers", "add", "0612345678")
    bridge(cfg, "ingest", str(MAILS / "01-storing-nieuw.eml"),
           "--now", now_of(MAILS / "01-storing-nieuw.eml"))
    p = bridge(cfg, "dispatch", check=False)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout.startswith("sent 0,") and "waiting 1" in p.stdout, p.stdout
    line = p.stderr.strip().splitlines()[-1]  # after the channel's warning log line
    assert line.startswith("bridge: the channel is paused (") and "T_NO_CLOUD_TOKEN_SET" in line
    assert line.endswith("1 due deliveries not sent"), line


def test_dispatch_with_due_deliveries_left_waiting_exits_non_zero(tmp_path, capsys, monkeypatch):
    import bridge.app
    from bridge.channels.base import SendResult
    from helpers import Scripted

    later = SendResult("retry", error="busy", retry_after=600)
    channel = Scripted({"+31612345678": [later]})
    monkeypatch.setattr(bridge.app.App, "channel", property(lambda self: channel))
    cfg = write_config(tmp_path)
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    run_cli(capsys, "ingest", str(MAILS / "01-storing-nieuw.eml"),
            "--now", now_of(MAILS / "01-storing-nieuw.eml"), "--config", str(cfg))
    code, out, err = run_cli(capsys, "dispatch", "--config", str(cfg))
    assert len(channel.calls) == 1
    assert code == 1 and "retried 1" in out, (out, err)
    assert err.strip() == ("bridge: 1 due deliveries not sent yet (they wait for a retry;"
                           " bridge status shows them)"), err
    # a delivery that is not due yet is no failure
    code, out, err = run_cli(capsys, "dispatch", "--config", str(cfg))
    assert code == 0 and "waiting 1" in out, (out, err)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 7. check reports every secret that is not there -----------------------------------------------
def test_check_names_every_unset_secret_with_its_key_and_variable(tmp_path):
    cfg = write_config(tmp_path, smtp=True, channel="cloud", channel_extra="""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_env = "T_CHK_CLOUD_TOKEN"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """, extra="""\
        [web]
        verify_token_env = "T_CHK_VERIFY"
        app_secret_env = "T_CHK_APP_SECRET"

        [imap]
        host = "127.0.0.1"
        tls = "none"
        user = "storingen"
        password_env = "T_CHK_IMAP"
        """)
    cfg.write_text(cfg.read_text().replace("enabled = true", (
        'enabled = true\nauth_username_env = "T_CHK_SMTP_USER"\n'
        'auth_password_env = "T_CHK_SMTP_PASS"')))
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1, p.stdout
    for key, var in [("channel.cloud.token_env", "T_CHK_CLOUD_TOKEN"),
                     ("web.verify_token_env", "T_CHK_VERIFY"),
                     ("web.app_secret_env", "T_CHK_APP_SECRET"),
                     ("imap.password_env", "T_CHK_IMAP"),
                     ("smtp.auth_username_env", "T_CHK_SMTP_USER"),
                     ("smtp.auth_password_env", "T_CHK_SMTP_PASS")]:
        assert f": {key}: environment variable {var} is not set" in p.stdout, (key, p.stdout)
    assert f"{cfg}:" in p.stdout and "ok:" not in p.stdout
    assert "bridge: 6 problem(s) found" in p.stderr, p.stderr
    # all set: ok
    env = {v: "x" for v in ("T_CHK_CLOUD_TOKEN", "T_CHK_VERIFY", "T_CHK_APP_SECRET",
                            "T_CHK_IMAP", "T_CHK_SMTP_USER", "T_CHK_SMTP_PASS")}
    p = bridge(cfg, "check", env=env, check=False)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1].startswith("ok:"), p.stdout


def test_check_reports_the_mqtt_password_and_an_unreadable_token_file(tmp_path):
    cfg = write_config(tmp_path, channel="mqtt", channel_extra="""\
        [channel.mqtt]
        username = "bridge"
        password_env = "T_CHK_MQTT"
        """)
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1
    assert ": channel.mqtt.password_env: environment variable T_CHK_MQTT is not set" in p.stdout
    line = next(ln for ln in cfg.read_text().splitlines() if "password_env" in ln)
    assert f"{cfg}:{cfg.read_text().splitlines().index(line) + 1}: channel.mqtt" in p.stdout

    cfg = write_config(tmp_path, channel="cloud", channel_extra=f"""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_file = "{tmp_path / 'no-such-token'}"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """)
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1
    assert ": channel.cloud.token_file: cannot read " in p.stdout, p.stdout
    (tmp_path / "no-such-token").write_text("EAAG-token\n")
    assert bridge(cfg, "check").returncode == 0


# -- 8. a busy web port stops the daemon at start ---------------------------------------------------
def test_run_with_the_web_port_in_use_exits_78_at_once(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, extra=f"""\
            [web]
            port = {port}
            webhook = false
            """)
        p = bridge(cfg, "run", check=False, timeout=20)
    assert p.returncode == 78, (p.returncode, p.stderr)
    last = p.stderr.strip().splitlines()[-1]
    assert last == f"bridge: cannot start: web.port: 127.0.0.1:{port}: address already in use"
    assert "crashed" not in p.stderr


async def test_the_web_server_binds_in_start_and_serves_after_a_restart(tmp_path):
    import asyncio

    import aiohttp

    from bridge.app import App
    from bridge.config import load
    from bridge.web import build
    from helpers import free_port

    port = free_port()
    app = App(load(write_config(tmp_path, extra=f"[web]\nport = {port}\nwebhook = false\n")))
    server = build(app.cfg.extra["web"], app)
    try:
        await server.start()
        with socket.socket() as s:  # bound before run() is called
            assert s.connect_ex(("127.0.0.1", port)) == 0
        for _ in range(2):  # run, cancelled (as after a crash), run again: binds again
            task = asyncio.create_task(server.run())
            await asyncio.wait_for(server.started.wait(), 5)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert not server.started.is_set()
    finally:
        await server.stop()
        app.store.close()


# -- 9. parser.timezone defaults to organisation.timezone -------------------------------------------
def test_parser_timezone_defaults_to_the_organisation_timezone(tmp_path, capsys):
    from bridge.config import load

    cfg = write_config(tmp_path, extra='[organisation]\ntimezone = "America/New_York"\n')
    assert load(cfg).parser.timezone == "America/New_York"
    # "Starttijd: 28-11-2026 09:42" in the mail is 09:42 in New York, shown as 09:42
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "01-storing-nieuw.eml"),
                           "--now", now_of(MAILS / "01-storing-nieuw.eml"),
                           "--config", str(cfg))
    assert code == 0 and "sinds za 28 nov 09:42" in out, out

    cfg.write_text(cfg.read_text() + '\n[parser]\ntimezone = "Europe/Amsterdam"\n')
    assert load(cfg).parser.timezone == "Europe/Amsterdam"
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "01-storing-nieuw.eml"),
                           "--now", now_of(MAILS / "01-storing-nieuw.eml"),
                           "--config", str(cfg))
    assert code == 0 and "sinds za 28 nov 03:42" in out, out


# -- 11. no double full stops in replies and notices ------------------------------------------------
def test_no_reply_or_notice_template_renders_a_double_full_stop(app):
    from bridge.checks import sample_reports

    renderer, sentence = app.renderer, app.inbound.subscribe_sentence
    assert sentence.endswith(".")
    texts = {}
    for path in sorted((TEMPLATES / "replies").glob("*.j2")):
        for ctx in ({"subscribe_sentence": sentence}, {}):
            out = renderer.render_reply(path.stem, **ctx)
            assert not out.fallback, (path.name, out.error)
            texts[f"{path.name} {sorted(ctx)}"] = out.text
    reports = sample_reports()
    for path in sorted((TEMPLATES / "notices").glob("*.j2")):
        for i, report in enumerate(reports):
            if path.stem != "fallback" and path.stem != f"{report.kind}_{report.status}":
                continue
            out = renderer.render_notice(report, previous=reports[i - 1] if i else None)
            assert not out.fallback, (path.name, out.error)
            texts[f"{path.name} sample {i}"] = out.text
    # and the built-in texts that stand in when a reply template fails
    from bridge.core.render import _REPLY_DEFAULTS, default_reply_text

    for name in _REPLY_DEFAULTS:
        for ctx in ({"subscribe_sentence": sentence}, {}):
            texts[f"built-in {name} {sorted(ctx)}"] = default_reply_text(
                name, renderer.org, **ctx)
    assert any(sentence in t for t in texts.values())
    for name, text in texts.items():
        assert '.".' not in text and ".." not in text, (name, text)


def test_the_help_reply_quotes_the_subscribe_sentence_once_without_an_extra_stop(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code, out, err = run_cli(capsys, "inbound", "0612345678", "help", "--config", str(cfg))
    assert code == 0, err
    assert 'Stuur: "Ja ik wil storingsberichten van CBG Connect ontvangen."\n' in out, out
