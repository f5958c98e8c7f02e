"""Bringing the existing list in: `bridge subscribers import FILE|-` (issue 12), and the
per-number checks `bridge subscribers add` shares with it."""

from __future__ import annotations

import io
import time

import pytest

from daemon import bridge
from helpers import MAILS, read_outbox, sample_now, write_config

from bridge.core.importing import NumberListError, check_number, read_numbers


def run_import(cfg, path, *extra, stdin=None):
    import subprocess
    import sys

    from helpers import ROOT

    return subprocess.run([sys.executable, "-m", "bridge", "subscribers", "import", str(path),
                           *extra, "--config", str(cfg)], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


LIST = """\
telefoonnummer
06-12345678
0612345678

# oud nummer, niet meer gebruiken
0800-1234567
020-1234567
abc
3.16123E+10
+32 470 12 34 56
0900 1234567
"""


# -- reading the list (pure) ----------------------------------------------------------------------
def test_read_numbers_line_by_line():
    lines, skipped = read_numbers(LIST)
    assert skipped == 3  # header, blank, comment
    got = [(ln.line, ln.raw, ln.number, bool(ln.problem), bool(ln.warning)) for ln in lines]
    assert got == [
        (2, "06-12345678", "+31612345678", False, False),
        (3, "0612345678", "+31612345678", False, False),
        (6, "0800-1234567", None, True, False),
        (7, "020-1234567", "+31201234567", False, True),
        (8, "abc", None, True, False),
        (9, "3.16123E+10", None, True, False),
        (10, "+32 470 12 34 56", "+32470123456", False, False),
        (11, "0900 1234567", None, True, False),
    ]
    assert "toll-free" in lines[2].problem and "premium-rate" in lines[7].problem
    assert "scientific notation" in lines[5].problem
    assert "fixed-line" in lines[3].warning
    for ln in lines:  # a reason never repeats the input (it may end up where input may not)
        assert ln.problem is None or "1234567" not in ln.problem


def test_read_numbers_csv_with_a_number_column():
    text = "naam;Mobiel nummer;plaats\nSanne;06 1234 5678;Ermelo\nJan;;Putten\n\nPiet;0622222222;\n"
    lines, skipped = read_numbers(text)
    assert [(ln.line, ln.raw, ln.number, ln.problem) for ln in lines] == [
        (2, "06 1234 5678", "+31612345678", None),
        (3, "", None, "the number column is empty"),
        (5, "0622222222", "+31622222222", None),
    ]
    assert skipped == 2  # header and blank line
    lines, _ = read_numbers("id,tel2\n1,0612345678\n", column="tel2")
    assert lines[0].number == "+31612345678"
    with pytest.raises(NumberListError, match="header row that names the number column"):
        read_numbers("naam,plaats\nSanne,Ermelo\n")
    with pytest.raises(NumberListError, match="no column 'gsm'"):
        read_numbers("naam,tel\nSanne,0612345678\n", column="gsm")


def test_check_number_refuses_numbers_that_cannot_have_whatsapp():
    assert check_number("06-12345678") == ("+31612345678", None, None)
    assert check_number("0800-1234567")[0] is None
    assert check_number("0906-1234567")[0] is None
    number, problem, warning = check_number("085 486 9699")  # VoIP, like our own number
    assert number == "+31854869699" and problem is None and "VoIP" in warning


# -- the command ----------------------------------------------------------------------------------
def test_import_outcomes_summary_and_exit_status(tmp_path):
    cfg = write_config(tmp_path)
    bridge(cfg, "subscribers", "add", "+32470123456")
    listing = tmp_path / "leden.txt"
    listing.write_text(LIST)
    p = run_import(cfg, listing, "--reason", "broadcast list before 2026-12")
    assert p.returncode == 1, p.stderr  # some lines were invalid ...
    out = p.stdout.splitlines()
    assert out[:8] == [
        "line 2: 06-12345678: added",
        "line 3: 0612345678: already subscribed (same number as line 2)",
        "line 6: 0800-1234567: invalid: a toll-free number (such as 0800) cannot have WhatsApp",
        "line 7: 020-1234567: added (warning: a fixed-line number: it gets the messages only if"
        " it has WhatsApp (Business))",
        "line 8: abc: invalid: only digits, spaces, '-', '.', '(', ')' and a leading '+' are"
        " allowed",
        "line 9: 3.16123E+10: invalid: a number written in scientific notation (as Excel does):"
        " its last digits are lost; export the column as text",
        "line 10: +32 470 12 34 56: already subscribed",
        "line 11: 0900 1234567: invalid: a premium-rate number (such as 0900, 0906, 0909) cannot"
        " have WhatsApp",
    ]
    assert out[8] == ("added 2, already subscribed 2, invalid 4 (8 lines with a number, 3 blank,"
                      " comment or header lines skipped)")
    # ... and the valid ones are in all the same, with the import as their consent proof
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "3"
    shown = bridge(cfg, "subscribers", "show", "0612345678").stdout
    assert "consent_message_id: import:leden.txt" in shown
    assert "consent_note: broadcast list before 2026-12" in shown
    assert "consent_wording: import by the operator" in shown
    # importing again: everything already there -> exit 0
    clean = tmp_path / "schoon.csv"
    clean.write_text("nummer,naam\n06-12345678,Sanne\n020-1234567,Jan\n")
    p = run_import(cfg, clean)
    assert p.returncode == 0, p.stdout
    assert p.stdout.splitlines()[-1].startswith("added 0, already subscribed 2, invalid 0")


def test_import_from_stdin_and_dry_run(tmp_path):
    cfg = write_config(tmp_path)
    p = run_import(cfg, "-", "--dry-run", stdin="0612345678\n0622222222\n")
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == "line 1: 0612345678: would be added"
    assert p.stdout.splitlines()[-1].startswith("dry run, nothing changed: would add 2")
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"
    p = run_import(cfg, "-", stdin="0612345678\n")
    assert p.returncode == 0 and "line 1: 0612345678: added" in p.stdout
    assert "import:stdin" in bridge(cfg, "subscribers", "show", "0612345678").stdout


def test_a_file_that_is_no_list_changes_nothing(tmp_path):
    cfg = write_config(tmp_path)
    bad = tmp_path / "adressen.csv"
    bad.write_text("naam,straat\nSanne,Dorpsstraat 1\n")
    p = run_import(cfg, bad)
    assert p.returncode == 1 and p.stderr.startswith("bridge: ") and "--column" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = run_import(cfg, tmp_path / "bestaat-niet.txt")
    assert p.returncode == 1 and "No such file" in p.stderr
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"


def test_the_numbers_never_reach_the_log(tmp_path):
    from bridge import logs
    from bridge.app import App
    from bridge.config import load
    from bridge.importer import import_list

    captured = io.StringIO()
    logs.setup("DEBUG", stream=captured)
    try:
        app = App(load(write_config(tmp_path)))
        import_list(app, LIST, "leden.txt", welcome=True)
        app.store.close()
    finally:
        logs.setup("WARNING")
    for digits in ("12345678", "1234567", "470123456"):
        assert digits not in captured.getvalue()


def test_welcome_is_paced_behind_notices_and_says_how_to_stop(tmp_path):
    from bridge.app import App
    from bridge.config import load
    from bridge.importer import import_list
    from bridge.store import RawMail

    app = App(load(write_config(tmp_path, rate=1.0)))  # 1 message/s: welcomes 2 s apart
    numbers = "\n".join(f"061234{i:04d}" for i in range(10))
    t = time.time()
    r = import_list(app, numbers, "leden.txt", welcome=True)
    assert r.welcome == 10 and r.welcome_hours == pytest.approx(10 * 2 / 3600)
    rows = app.store.db.execute("SELECT due_at, created_at, reply FROM deliveries"
                                " WHERE reply_name='welcome' ORDER BY id").fetchall()
    assert [round(rw[0] - rows[0][0]) for rw in rows] == list(range(0, 20, 2))
    assert abs(rows[0][0] - t) < 5 and all(rw[0] == rw[1] for rw in rows)
    assert "STOP" in rows[0][2] and "CBG Connect" in rows[0][2]
    # a notice queued now is due before every welcome that is not due yet
    app.pipeline.process(app.store.mails.add(
        RawMail(sample_now("01"), "cli")))
    claimed = app.store.deliveries.claim(100)
    kinds = [("notice" if d.notice_id else d.reply_name) for d in claimed]
    assert kinds.count("notice") == 10 and kinds.count("welcome") <= 2, kinds
    # one who leaves before their welcome is sent never gets it
    app.inbound.handle(_stop("+31612340009"))
    pending = app.store.db.scalar("SELECT count(*) FROM deliveries WHERE reply_name='welcome'"
                                  " AND state='pending'")
    assert pending == 10 - kinds.count("welcome") - 1
    app.store.close()


def _stop(number):
    from datetime import datetime, timezone

    from bridge.core.models import InboundMessage

    return InboundMessage(channel="console", sender=number, text="STOP", message_id="w-stop",
                          received_at=datetime.now(timezone.utc))


def test_welcome_goes_out_through_the_outbox(tmp_path):
    cfg = write_config(tmp_path)
    listing = tmp_path / "leden.txt"
    listing.write_text("0612345678\n0622222222\n")
    p = run_import(cfg, listing, "--welcome")
    assert p.returncode == 0 and "welcome: queued 2 messages" in p.stdout, p.stdout
    time.sleep(0.1)
    bridge(cfg, "dispatch")
    sent = read_outbox(tmp_path)
    assert {m["to"] for m in sent} == {"+31612345678", "+31622222222"}
    assert all("Stuur STOP" in m["text"] for m in sent)


CLOUD = """\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_env = "T_IMPORT_CLOUD_TOKEN"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """


def test_welcome_on_the_cloud_api_is_refused_until_it_has_a_template(tmp_path):
    cfg = write_config(tmp_path, channel="cloud", channel_extra=CLOUD)
    listing = tmp_path / "leden.txt"
    listing.write_text("0612345678\n")
    p = run_import(cfg, listing, "--welcome")
    assert p.returncode == 1 and "approved template" in p.stderr
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"
    assert run_import(cfg, listing).returncode == 0  # without --welcome it imports


WELCOME_TEMPLATE = """
        [channel.cloud.templates.welcome]
        name = "welkom_storingsberichten"
        parameters = ["org.name", "tekst|kort(900)"]
        """


def test_welcome_on_the_cloud_api_works_once_a_template_is_mapped(tmp_path):
    cfg = write_config(tmp_path, channel="cloud", channel_extra=CLOUD + WELCOME_TEMPLATE)
    listing = tmp_path / "leden.txt"
    listing.write_text("0612345678\n0622222222\n")
    p = run_import(cfg, listing, "--welcome")
    assert p.returncode == 0 and "welcome: queued 2 messages" in p.stdout, (p.stdout, p.stderr)
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "2"


async def test_the_welcome_goes_as_the_mapped_template_and_other_replies_as_text(tmp_path,
                                                                                   monkeypatch):
    from datetime import datetime, timezone

    from fake_graph import FakeGraph
    from test_cloud import TOKEN_ENV, cloud_config, drain

    from bridge.app import App
    from bridge.config import load
    from bridge.core.models import InboundMessage
    from bridge.importer import import_list

    async with FakeGraph() as fake:
        fake.templates = {"welkom_storingsberichten": 2, "storing_melding": 1, "storing_nieuw": 3}
        monkeypatch.setenv(TOKEN_ENV, fake.token)
        app = App(load(cloud_config(tmp_path, fake.base_url, cloud_extra=WELCOME_TEMPLATE)))
        try:
            r = import_list(app, "0612345678\n0622222222\n", "leden.txt", welcome=True)
            assert r.welcome == 2
            app.store.db.execute("UPDATE deliveries SET due_at = 0")  # paced: not wait
            await app.inbound(InboundMessage(channel="cloud", sender="+31633333333",
                                             text="hoe werkt dit?", message_id="wamid.q",
                                             received_at=datetime.now(timezone.utc)))
            await drain(app)
        finally:
            await app.channel.close()
            app.store.close()
    assert fake.problems == []
    for number in ("+31612345678", "+31622222222"):
        (send,) = fake.sends(number)
        t = send.body["template"]
        assert send.answer.startswith("ok") and t["name"] == "welkom_storingsberichten"
        params = [p["text"] for p in t["components"][0]["parameters"]]
        assert params[0] == "CBG Connect" and "STOP" in params[1] and "\n" not in params[1]
    (reply,) = fake.sends("+31633333333")  # an answer to a message: free text, as before
    assert reply.body["type"] == "text"


def test_bridge_check_renders_the_welcome_templates_parameters(tmp_path):
    from test_cloud import cloud_config

    from bridge.checks import check_all
    from bridge.config import load

    ok = load(cloud_config(tmp_path, "http://127.0.0.1:9", cloud_extra=WELCOME_TEMPLATE))
    assert [p for p in check_all(ok) if "templates.welcome" in p] == []
    bad = load(cloud_config(tmp_path, "http://127.0.0.1:9", cloud_extra="""
        [channel.cloud.templates.welcome]
        name = "welkom"
        parameters = ["r.places|lijst"]
        """))
    found = [p for p in check_all(bad) if "templates.welcome" in p]
    assert len(found) == 1 and "parameter failed" in found[0] and "r is None" in found[0], found


def test_subscribers_add_refuses_what_cannot_have_whatsapp_and_warns_for_fixed_lines(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "subscribers", "add", "0612345678", "0800-1234567", check=False)
    assert p.returncode == 1 and "toll-free" in p.stderr and "nothing changed" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert bridge(cfg, "subscribers", "count").stdout.strip() == "0"
    out = bridge(cfg, "subscribers", "add", "0612345678", "020-1234567").stdout.splitlines()
    assert out[0] == "+316****5678: added"
    assert out[1].startswith("+312****4567: added; warning: a fixed-line number")
    assert bridge(cfg, "subscribers", "add", "020-1234567").stdout.strip() == \
        "+312****4567: already subscribed"
