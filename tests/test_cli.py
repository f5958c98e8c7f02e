"""The command line, as other tools and scripts use it: --config anywhere, help, ingest,
preview, subscribers, check, dispatch and run with their exit statuses.

The review queue commands are in test_review.py, config errors and secrets in test_config.py."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon import bridge
from helpers import (
    MAILS,
    ROOT,
    TEMPLATES,
    free_port,
    no_ticket_mail,
    now_of,
    read_outbox,
    run_cli,
    write_config,
)


def ingest(cfg, *files, json_out=True):
    # each fixed-date sample as of five minutes after its Date (a mail older than
    # review.max_mail_age_hours goes to review)
    out = []
    for f in files:
        p = bridge(cfg, "ingest", str(MAILS / f), "--now", now_of(MAILS / f),
                   *(["--json"] if json_out else []))
        out += [json.loads(line) for line in p.stdout.splitlines()]
    return out


# --- --config before or after the command; help lists every action ----------------------------


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


def bridge_raw(*argv, env=None, timeout=60):
    """`python -m bridge` with the arguments exactly as given (no --config appended)."""
    import os

    return subprocess.run([sys.executable, "-m", "bridge", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


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


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_outcomes_for_the_samples(tmp_path):
    cfg = write_config(tmp_path)
    bridge(cfg, "subscribers", "add", "0612345678")
    res = ingest(cfg, "01-storing-nieuw.eml", "06-doorgestuurd-outlook.eml",
                 "02-storing-update.eml", "01-storing-nieuw.eml", "03-storing-opgelost.eml",
                 "02-storing-update.eml", "04-voip-storing-html.eml",
                 "05-onderhoud-aangekondigd.eml", "07-geen-storing.eml")
    outcomes = [r["outcome"] for r in res]
    assert outcomes == ["queued", "duplicate", "queued", "duplicate", "queued", "duplicate",
                        "queued", "queued", "rejected"], res
    assert {k for k in res[0]} >= {"file", "outcome", "reason", "incident"}
    assert res[0]["incident"] == res[2]["incident"] == res[4]["incident"]
    assert res[6]["incident"] != res[0]["incident"]
    assert "not on the allow-list" in res[8]["reason"]
    # plain output: one line per file with outcome and reason
    p = bridge(cfg, "ingest", str(MAILS / "07-geen-storing.eml"))
    assert p.stdout.strip().endswith("rejected: sender facturen@leverancier.example is not on the allow-list")

    # one subscriber, 01 then 02 then 03 before any dispatch: the older unsent ones are
    # superseded, so the subscriber gets the newest state of each incident only
    p = bridge(cfg, "dispatch")
    assert p.stdout.startswith("sent 3,"), p.stdout
    texts = [m["text"] for m in read_outbox(tmp_path)]
    assert len(texts) == 3 and all(m["to"] == "+31612345678" for m in read_outbox(tmp_path))


def test_ingest_now_is_not_overtaken_by_a_running_daemon(tmp_path, capsys, monkeypatch):
    """A running daemon processes every stored mail without an outcome, as of its own clock.
    `bridge ingest --now` stores and decides its mail in one transaction, so the daemon never
    takes it between the two (it did: an old sample then went to review as stale)."""
    from bridge.app import App
    from bridge.config import load
    from bridge.pipeline import Pipeline

    cfg = write_config(tmp_path)
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    daemon = App(load(cfg))  # a second connection, as the daemon's
    taken = []
    original = Pipeline.process

    def process(self, mail_id, *args, **kwargs):
        if self is not daemon.pipeline:
            taken.extend(daemon.pipeline.process_pending())  # the daemon's poll, just then
        return original(self, mail_id, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "process", process)
    f = MAILS / "01-storing-nieuw.eml"
    code, out, err = run_cli(capsys, "ingest", "--json", str(f), "--now", now_of(f),
                             "--config", str(cfg))
    assert code == 0, err
    assert json.loads(out)["outcome"] == "queued", out
    assert taken == []


def test_ingest_refuses_a_file_over_smtp_max_size_as_smtp_does(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("port = 0", "port = 0\nmax_size = 2048", 1))
    big = tmp_path / "big.eml"
    big.write_bytes((MAILS / "01-storing-nieuw.eml").read_bytes() + b"x" * 3000 + b"\r\n")
    p = bridge(cfg, "ingest", "--json", str(big), str(MAILS / "07-geen-storing.eml"), check=False)
    assert p.returncode == 1, p.stdout
    first, second = (json.loads(line) for line in p.stdout.splitlines())
    assert first["outcome"] == "rejected" and first["mail"] is None
    assert first["reason"].startswith(f"larger than smtp.max_size ({big.stat().st_size} bytes, "
                                      f"at most 2048)"), first
    assert second["outcome"] == "rejected" and "allow-list" in second["reason"]  # the next file
    st = json.loads(bridge(cfg, "status", "--json").stdout)
    assert st["mails"] == {"rejected": 1}  # the big one was never stored
    p = bridge(cfg, "preview", str(big), check=False)
    assert p.returncode == 1 and p.stdout.startswith("would be rejected: larger than smtp.max_size")


def test_ingest_rejects_a_file_that_is_not_a_mail_as_not_a_mail(tmp_path):
    import os

    cfg = write_config(tmp_path)
    files = {"empty.eml": b"",
             "report.pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
             "random.bin": os.urandom(4096), "note.txt": b"Bel KPN even over de storing.\n",
             "melding.msg": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    p = bridge(cfg, "ingest", "--json", *(str(tmp_path / n) for n in files))
    results = {json.loads(line)["file"].rsplit("/", 1)[1]: json.loads(line)
               for line in p.stdout.splitlines()}
    for name, r in results.items():
        assert r["outcome"] == "rejected" and r["reason"].startswith("not a mail: "), (name, r)
        assert "allow-list" not in r["reason"] and "sender" not in r["reason"], (name, r)
    assert results["empty.eml"]["reason"] == "not a mail: an empty file"
    assert results["report.pdf"]["reason"] == "not a mail: a PDF document"
    assert results["melding.msg"]["reason"].startswith("not a mail: an Outlook .msg")
    for name in files:
        q = bridge(cfg, "preview", str(tmp_path / name), check=False)
        assert q.returncode == 1, q.stdout
        assert q.stdout.startswith("would be rejected: not a mail: "), q.stdout


# --- preview: decides as ingest does, stores nothing ------------------------------------------


def test_preview_prints_the_notice_and_stores_nothing(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "preview", str(MAILS / "01-storing-nieuw.eml"),
               "--now", now_of(MAILS / "01-storing-nieuw.eml"))
    assert "Amersfoort" in p.stdout and "Leusden" in p.stdout
    st = json.loads(bridge(cfg, "status", "--json").stdout)
    assert st["mails"] == {} and st["deliveries"] == {}


def test_preview_of_a_mail_ingest_would_not_send(tmp_path, capsys):
    cfg = write_config(tmp_path)
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"garbage")
    cases = [
        (MAILS / "07-geen-storing.eml",
         "would be rejected: sender facturen@leverancier.example is not on the allow-list"),
        (garbage, "would be rejected: "),
        (no_ticket_mail(tmp_path), "would go to review: no ticket"),
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

    files = sorted(MAILS.glob("*.eml")) + [no_ticket_mail(tmp_path)]
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


# --- subscribers: numbers and business-scoped user ids ----------------------------------------


def test_subscribers_commands_and_masking(tmp_path):
    cfg = write_config(tmp_path)
    out = bridge(cfg, "subscribers", "add", "06-12345678", "+31 6 2222 2222").stdout
    assert "+316****5678: added" in out
    assert "already subscribed" in bridge(cfg, "subscribers", "add", "0612345678").stdout
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "2"
    listing = bridge(cfg, "subscribers", "list").stdout
    assert "12345678" not in listing and "+316****5678" in listing
    assert "+31612345678" in bridge(cfg, "subscribers", "list", "--unmasked").stdout
    bad = bridge(cfg, "subscribers", "add", "0612345678", "12345", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("bridge: ")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "2"
    show = bridge(cfg, "subscribers", "show", "0612345678").stdout
    assert "number: +31612345678" in show and "consent_at" in show
    assert "removed" in bridge(cfg, "subscribers", "remove", "0612345678").stdout
    assert "nothing stored" in bridge(cfg, "subscribers", "show", "0612345678").stdout


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


# --- check (the templates; secrets and config keys: test_config.py) ---------------------------


def test_check_accepts_shipped_templates_and_reports_broken_ones(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "check")
    assert p.stdout.strip().splitlines()[-1].startswith("ok:"), p.stdout
    broken = tmp_path / "templates"
    shutil.copytree(TEMPLATES, broken)
    (broken / "notices" / "storing_nieuw.j2").write_text("Storing\n{% if r.places %}\nx\n")
    cfg.write_text(cfg.read_text().replace(f'templates_dir = "{TEMPLATES}"',
                                           f'templates_dir = "{broken}"'))
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1
    assert "storing_nieuw.j2:3:" in p.stdout, p.stdout


# --- a store file that is not a database ------------------------------------------------------


def test_a_store_file_that_is_not_a_database_is_a_one_line_error(tmp_path, capsys):
    from helpers import write_config

    cfg = write_config(tmp_path)
    (tmp_path / "bridge.db").write_bytes(b"this is not an SQLite database, just some text " * 20)
    code, out, err = run_cli(capsys, "status", "--config", str(cfg))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "bridge.db" in err, err


# --- dispatch: the exit status tells whether everything due was handled -----------------------


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
        base_url = "http://127.0.0.1:{free_port()}"
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


async def test_dispatch_with_the_cloud_channel_closes_its_connections(tmp_path, monkeypatch):
    """`bridge dispatch` against the (fake) Cloud API: sent, exit 0, and no "ERROR asyncio:
    Unclosed connector" on stderr (the channel's HTTP session was never closed: an ERROR
    line in every cron mail)."""
    import asyncio

    from fake_graph import FakeGraph
    from test_cloud import TOKEN_ENV, cloud_config

    async with FakeGraph() as fake:
        monkeypatch.setenv(TOKEN_ENV, fake.token)
        cfg = cloud_config(tmp_path, fake.base_url)
        await asyncio.to_thread(bridge, cfg, "subscribers", "add", "+31611111111")
        await asyncio.to_thread(bridge, cfg, "ingest", str(MAILS / "01-storing-nieuw.eml"),
                                "--now", now_of(MAILS / "01-storing-nieuw.eml"))
        p = await asyncio.to_thread(bridge, cfg, "dispatch", check=False)
    assert p.returncode == 0 and p.stdout.startswith("sent 1,"), (p.stdout, p.stderr)
    assert "Unclosed" not in p.stderr and " ERROR " not in p.stderr, p.stderr


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


# --- run: exit status 78 (EX_CONFIG) when the daemon cannot start -----------------------------


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


@pytest.mark.parametrize("web", ["webhook = false", "console = true"])
def test_run_with_the_web_port_in_use_exits_78_at_once(tmp_path, web):
    """With the webhook alone or with the operator console: one line, no crash loop."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = write_config(tmp_path, extra=f"""\
            [web]
            port = {port}
            {web}
            """)
        p = bridge(cfg, "run", check=False, timeout=20)
    assert p.returncode == 78, (p.returncode, p.stderr)
    last = p.stderr.strip().splitlines()[-1]
    assert last == f"bridge: cannot start: web.port: 127.0.0.1:{port}: address already in use"
    assert "crashed" not in p.stderr


def _as_service_user(argv: list[str]) -> tuple[list[str], str]:
    """``argv`` run as a user other than the store's owner, and that user's name. As root
    (file permissions do not stop root) the command runs as ``nobody`` through
    util-linux's setpriv; otherwise as ourselves, the test then taking the write
    permission away from the file (see the test)."""
    import os
    import pwd

    if os.geteuid() != 0:
        return argv, pwd.getpwuid(os.geteuid()).pw_name
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the daemon as another user"
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv], "nobody"


def test_run_with_a_store_the_service_user_cannot_write_exits_78_naming_path_and_user():
    """A store made by root with a CLI command before the first start (here: `bridge
    subscribers add`), which the service user can read but not write: the daemon went into
    a crash loop (each write failed, six crashes, exit 1, restarted by systemd). Now the
    start-up check (a write transaction, the folder, the -wal/-shm files) refuses to start
    with exit 78 and one line that names the path and the user."""
    import os
    import tempfile

    from helpers import ROOT

    # a folder every user can reach (pytest's tmp_path is private to root)
    tmp = Path(tempfile.mkdtemp(prefix="bridge-ro-store-"))
    try:
        tmp.chmod(0o755)
        cfg = write_config(tmp)
        bridge(cfg, "subscribers", "add", "0612345678")  # creates the store as us
        db = tmp / "bridge.db"
        argv, user = _as_service_user([sys.executable, "-m", "bridge", "run", "--config",
                                       str(cfg)])
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(tmp, nobody.pw_uid, nobody.pw_gid)  # the service user's own folder...
            assert db.stat().st_uid == 0  # ... holding a store root made
        else:
            db.chmod(0o444)
        p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 78, (p.returncode, p.stderr)
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith(f"bridge: {db}: cannot write the store as user {user} (uid "), \
            p.stderr
        assert "crashed" not in p.stderr and "Traceback" not in p.stderr
        # a folder that is a file: the same exit status, the path named
        (tmp / "notafolder").write_text("")
        cfg.write_text(cfg.read_text().replace(str(db), str(tmp / "notafolder" / "bridge.db")))
        p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 78, (p.returncode, p.stderr)
        assert p.stderr.strip().splitlines()[-1].startswith(
            f"bridge: {tmp / 'notafolder'}: not a folder"), p.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_run_with_a_file_beside_the_store_root_left_exits_78_naming_it():
    """`bridge dispatch` run as root makes the dispatcher lock and the send journal beside
    the store root's. The service user's start then ended in "bridge: cannot start:
    Permission denied", naming no file. Now the start-up check covers every file beside
    the store (store.errors.BESIDE) and names the one to chown, with exit 78."""
    import os
    import tempfile

    from helpers import ROOT

    tmp = Path(tempfile.mkdtemp(prefix="bridge-ro-lock-"))
    try:
        tmp.chmod(0o755)
        cfg = write_config(tmp)
        bridge(cfg, "subscribers", "add", "0612345678")
        bridge(cfg, "dispatch")  # the lock and the journal, made by us
        lock = tmp / "bridge.db.dispatch.lock"
        assert lock.exists() and (tmp / "bridge.db.sendjournal").exists()
        argv, user = _as_service_user([sys.executable, "-m", "bridge", "run", "--config",
                                       str(cfg)])
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            for f in [tmp, *tmp.iterdir()]:  # the store is the service user's, ...
                if f != lock:
                    os.chown(f, nobody.pw_uid, nobody.pw_gid)
            assert lock.stat().st_uid == 0  # ... the lock root's
        else:
            lock.chmod(0o444)
        p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 78, (p.returncode, p.stderr)
        assert p.stderr.strip().splitlines()[-1].startswith(
            f"bridge: {lock}: cannot write the store as user {user} (uid "), p.stderr
        assert "Traceback" not in p.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_file_the_daemon_writes_beside_the_store_is_checked_at_start(tmp_path):
    from bridge import outbox, runlock
    from bridge.store import sendjournal
    from bridge.store.errors import BESIDE

    store = tmp_path / "bridge.db"
    for made in (runlock.path_for(store), sendjournal.path_for(store),
                 Path(f"{store}{outbox.LOCK_SUFFIX}")):
        assert str(made).removeprefix(str(store)) in BESIDE, made


# --- usage errors, closed pipes, local times ------------------------------------------------


@pytest.mark.parametrize("argv", [["nope"], ["review", "approve"], ["review", "approve", "x"],
                                  ["subscribers"], ["status", "--bogus"]])
def test_usage_errors_exit_64(argv):
    """EX_USAGE (sysexits.h), not argparse's 2: 2 means a bug in this command line."""
    p = bridge_raw(*argv)
    assert p.returncode == 64, (argv, p.returncode, p.stderr)
    assert "usage:" in p.stderr and "Traceback" not in p.stderr


def test_output_piped_into_head_ends_quietly(tmp_path):
    """`bridge subscribers list | head` printed a BrokenPipeError "internal error"."""
    cfg = write_config(tmp_path)
    numbers = tmp_path / "n.txt"
    numbers.write_text("".join(f"06{20000000 + i}\n" for i in range(3000)))
    bridge(cfg, "subscribers", "import", str(numbers))
    p = subprocess.run(f"{sys.executable} -m bridge subscribers list --config {cfg} | head -3",
                       shell=True, capture_output=True, text=True, cwd=ROOT, timeout=60,
                       executable="/bin/bash")
    assert p.stdout.count("\n") == 3 and p.stderr == "", p.stderr
    p = subprocess.run(f"set -o pipefail; {sys.executable} -m bridge subscribers list"
                       f" --config {cfg} | head -1", shell=True, capture_output=True, text=True,
                       cwd=ROOT, timeout=60, executable="/bin/bash")
    assert p.returncode == 141 and p.stderr == "", (p.returncode, p.stderr)


def test_status_and_subscribers_list_show_local_time(tmp_path, capsys):
    """Times in organisation.timezone (Europe/Amsterdam), whatever the machine's zone."""
    import os

    cfg = write_config(tmp_path)
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        code, out, _ = run_cli(capsys, "subscribers", "list", "--config", str(cfg))
    finally:
        if old is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = old
        time.tzset()
    offset = out.split("since ")[1].strip()[-6:]
    assert offset in ("+01:00", "+02:00"), out


# --- review list: a header row and the subject ------------------------------------------------


def test_review_list_has_a_header_and_the_subject(tmp_path, capsys):
    cfg = write_config(tmp_path)
    run_cli(capsys, "ingest", str(no_ticket_mail(tmp_path)), "--config", str(cfg))
    code, out, _ = run_cli(capsys, "review", "list", "--config", str(cfg))
    header, row = out.splitlines()
    assert header.split("\t") == ["id", "state", "waiting since", "from", "subject", "reason"]
    cols = row.split("\t")
    assert cols[0] == "1" and cols[1] == "open"
    assert cols[4].startswith("Storingsmelding KPN"), cols
    assert cols[5] == "no ticket found in the mail"


def test_review_reject_with_a_reason_and_the_audit_log(tmp_path, capsys):
    cfg = write_config(tmp_path)
    run_cli(capsys, "ingest", str(no_ticket_mail(tmp_path)), "--config", str(cfg))
    code, out, err = run_cli(capsys, "review", "reject", "1", "--reason", "geen storing",
                             "--config", str(cfg))
    assert code == 0, err
    from bridge.store import Store
    from bridge.config import load

    st = Store.open(load(cfg).store.path)
    try:
        [e] = st.audit.entries()
        assert e.action == "review.reject" and e.actor.startswith("cli") and e.detail == "geen storing"
        assert st.mails.get(1).reason.endswith(": geen storing")
    finally:
        st.close()


# --- users, notices, pause, resume ------------------------------------------------------------


def test_users_add_list_passwd_remove(tmp_path):
    cfg = write_config(tmp_path, extra="[web]\nport = 0\nconsole = true\n")
    p = subprocess.run([sys.executable, "-m", "bridge", "users", "add", "anna", "--config",
                        str(cfg)], input="een lang wachtwoord\n", capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "user anna: added" in p.stdout and "sign in at http://127.0.0.1:0/console/" in p.stdout
    again = subprocess.run([sys.executable, "-m", "bridge", "users", "add", "anna", "--config",
                            str(cfg)], input="een lang wachtwoord\n", capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
    assert again.returncode == 1 and "exists already" in again.stderr
    short = subprocess.run([sys.executable, "-m", "bridge", "users", "add", "bert", "--config",
                            str(cfg)], input="kort\n", capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    empty = subprocess.run([sys.executable, "-m", "bridge", "users", "add", "bert", "--config",
                            str(cfg)], input="", capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
    assert empty.returncode == 1 and "no password" in empty.stderr
    listing = bridge(cfg, "users", "list").stdout.splitlines()
    assert listing[0].split("\t") == ["name", "created", "last sign-in", "sessions"]
    assert listing[1].startswith("anna\t") and len(listing) == 2
    from bridge.accounts import Accounts
    from bridge.config import load
    from bridge.store import Store

    p = subprocess.run([sys.executable, "-m", "bridge", "users", "passwd", "anna", "--config",
                        str(cfg)], input="een ander wachtwoord\n", capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and "password changed" in p.stdout, p.stderr
    st = Store.open(load(cfg).store.path)
    try:
        acc = Accounts(st)
        assert acc.sign_in("anna", "een lang wachtwoord", "127.0.0.1").token is None
        assert acc.sign_in("anna", "een ander wachtwoord", "127.0.0.1").token is not None
        # the hash is argon2id, never the password
        h = st.users.get("anna").password_hash
        assert h.startswith("$argon2id$") and "ander" not in h
    finally:
        st.close()
    assert "removed" in bridge(cfg, "users", "remove", "anna").stdout
    assert bridge(cfg, "users", "remove", "anna", check=False).returncode == 1
    st = Store.open(load(cfg).store.path)
    try:
        actions = [e.action for e in st.audit.entries()]
    finally:
        st.close()
    assert actions == ["user.remove", "user.passwd", "user.add"]


def test_notices_list_show_cancel_and_pause_resume(tmp_path):
    cfg = write_config(tmp_path)
    for n in ("0612345678", "0612345679"):
        bridge(cfg, "subscribers", "add", n)
    ingest(cfg, "01-storing-nieuw.eml")
    listing = bridge(cfg, "notices", "list").stdout.splitlines()
    assert listing[0].split("\t") == ["id", "created", "kind", "ticket", "recipients",
                                      "deliveries"]
    assert listing[1].split("\t")[2:] == ["storing nieuw", "INC000012345678", "2", "pending 2"]
    show = bridge(cfg, "notices", "show", "1").stdout
    assert "deliveries: pending 2" in show and "Amersfoort" in show
    # pause: dispatch refuses, nothing is sent; resume: sent
    p = bridge(cfg, "pause", "onderhoud aan de bridge")
    assert "sending paused; 2 deliveries wait" in p.stdout
    assert "PAUSED by cli" in bridge(cfg, "status").stdout
    d = bridge(cfg, "dispatch", check=False)
    assert d.returncode == 1 and "sending is paused by cli" in d.stderr
    assert read_outbox(tmp_path) == []
    assert "already paused" in bridge(cfg, "pause").stdout
    assert "sending resumed" in bridge(cfg, "resume").stdout
    assert "was not paused" in bridge(cfg, "resume").stdout
    # cancel: the unsent deliveries of a notice
    ingest(cfg, "05-onderhoud-aangekondigd.eml")
    assert "2 unsent deliveries cancelled" in bridge(cfg, "notices", "cancel", "2").stdout
    bridge(cfg, "dispatch")
    assert len(read_outbox(tmp_path)) == 2  # notice 1 only
    show = bridge(cfg, "notices", "show", "2").stdout
    assert "deliveries: cancelled 2" in show
    assert bridge(cfg, "notices", "show", "9", check=False).returncode == 1
    show = bridge(cfg, "notices", "show", "1").stdout
    assert "deliveries: sent 2" in show


def test_users_add_at_a_terminal_asks_twice(tmp_path):
    """At a terminal the password is typed twice and must match (getpass, no echo)."""
    import fcntl
    import os
    import select
    import termios

    cfg = write_config(tmp_path)
    results = []
    for first, second in (("een lang wachtwoord", "een ander wachtwoord"),
                          ("een lang wachtwoord", "een lang wachtwoord")):
        master, slave = os.openpty()
        # the pty becomes the command's controlling terminal: getpass reads /dev/tty
        p = subprocess.Popen([sys.executable, "-m", "bridge", "users", "add", "anna",
                              "--config", str(cfg)], stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             start_new_session=True,
                             preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        # getpass flushes what was typed before it asks: answer each prompt when it shows
        for prompt, answer in ((b"Password: ", first), (b"(again): ", second)):
            seen = b""
            while not seen.endswith(prompt):
                assert select.select([master], [], [], 30)[0], f"no prompt: {seen!r}"
                seen += os.read(master, 100)
            os.write(master, answer.encode() + b"\n")
        out, err = p.communicate(timeout=60)
        os.close(master)
        results.append((p.returncode, out, err))
    (code1, _, err1), (code2, out2, err2) = results
    assert code1 == 1 and "the passwords differ; nothing changed" in err1, err1
    assert code2 == 0 and "user anna: added" in out2, err2


# --- status: how sending goes in one line; a daemon killed with SIGKILL is seen at once -------


def test_status_says_how_sending_goes_in_one_line(tmp_path):
    cfg = write_config(tmp_path)
    for n in ("+31611111111", "+31622222222"):
        bridge(cfg, "subscribers", "add", n)
    ingest(cfg, "01-storing-nieuw.eml")
    out = bridge(cfg, "status").stdout.splitlines()
    [line] = [x for x in out if x.startswith("sending:")]
    assert line == ("sending:         stopped: the daemon is not running; queue 2,"
                    " throttled 0, retrying 0"), line
    bridge(cfg, "pause", "onderhoud")
    [line] = [x for x in bridge(cfg, "status").stdout.splitlines() if x.startswith("sending:")]
    assert line.startswith("sending:         PAUSED by cli") and "onderhoud" in line, line
    assert "queue 2, throttled 0, retrying 0" in line
    doc = json.loads(bridge(cfg, "status", "--json").stdout)["sending"]
    assert doc["state"] == "paused" and doc["queue"] == 2 and doc["throttled"] == 0


def test_status_does_not_say_ok_from_a_heartbeat_that_stopped_coming():
    """A daemon that runs (its run lock is held) but has written no status for a minute: a
    stuck event loop (SIGSTOP, a frozen loop) or a store that cannot take the write. Its
    last status said ok, and `bridge status` kept saying ok for as long as that lasted."""
    import time

    from bridge.cli_status import sending_doc, status_line

    now = time.time()
    sending = {"state": "ok", "reason": None, "since": None, "rate": 80.0, "retrying": 0,
               "throttled": 0}
    fresh = {"running": True, "updated_at": now - 4, "sending": sending}
    assert sending_doc(fresh, None, 3)["state"] == "ok"
    old = {"running": True, "updated_at": now - 60, "sending": sending}
    doc = sending_doc(old, None, 3)
    assert doc["state"] == "unknown", doc
    line = status_line(doc)
    assert line.startswith("unknown: no status from the running daemon for 60 s"), line
    assert "queue 3" in line and "rate" not in line


def test_the_run_lock_is_taken_on_a_full_disk(tmp_path):
    """A daemon started while the disk is full starts paused (issue 15), but taking the run
    lock wrote the pid into the lock file, and ENOSPC there stopped the start with a
    traceback. The lock is what matters; the pid is a courtesy. (/dev/full answers every
    write with ENOSPC, and cannot be truncated.)"""
    from bridge import runlock

    store = tmp_path / "bridge.db"
    runlock.path_for(store).symlink_to("/dev/full")
    f = runlock.hold(store)
    try:
        assert runlock.daemon_running(store) is True
    finally:
        f.close()
    assert runlock.daemon_running(store) is False


def test_status_notices_a_daemon_killed_with_sigkill_at_once(tmp_path):
    from daemon import Daemon, wait_for

    cfg = write_config(tmp_path)
    # the store made first: a status racing the daemon's first start over the migration
    # fails ("duplicate column name"), a separate matter
    assert "never ran on this store" in bridge(cfg, "status").stdout
    d = Daemon(cfg).start(wait=False)
    try:
        def running():
            doc = json.loads(bridge(cfg, "status", "--json").stdout)
            sending = doc["sending"]
            return doc["daemon"] and doc["daemon"]["running"] and sending["state"] == "ok" \
                and doc
        doc = wait_for(running, timeout=30, what="the daemon running", step=0.2)
        assert doc["daemon"]["sending"]["rate"] == 1000.0
        line = [x for x in bridge(cfg, "status").stdout.splitlines() if x.startswith("sending:")]
        assert line == ["sending:         ok; rate 1000/s, queue 0, throttled 0, retrying 0"]
    finally:
        d.kill()  # SIGKILL: no stop, its last heartbeat in the store still says "running"
    doc = json.loads(bridge(cfg, "status", "--json").stdout)
    assert doc["daemon"]["running"] is False, doc["daemon"]
    assert "killed" in doc["daemon"]["note"]
    assert doc["sending"]["state"] == "stopped"
    out = bridge(cfg, "status").stdout
    assert "daemon:          not running" in out, out
    # and the next start takes the lock again
    d2 = Daemon(cfg).start(wait=False)
    try:
        wait_for(lambda: json.loads(bridge(cfg, "status", "--json").stdout)["daemon"]["running"],
                 timeout=30, what="the daemon running again", step=0.2)
    finally:
        assert d2.stop() == 0
    assert json.loads(bridge(cfg, "status", "--json").stdout)["daemon"]["running"] is False
