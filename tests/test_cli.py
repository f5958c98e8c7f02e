"""The command line, as other tools and scripts use it."""

from __future__ import annotations

import json
import shutil

from daemon import bridge
from helpers import MAILS, TEMPLATES, now_of, read_outbox, write_config


def ingest(cfg, *files, json_out=True):
    # each fixed-date sample as of five minutes after its Date (a mail older than
    # review.max_mail_age_hours goes to review)
    out = []
    for f in files:
        p = bridge(cfg, "ingest", str(MAILS / f), "--now", now_of(MAILS / f),
                   *(["--json"] if json_out else []))
        out += [json.loads(line) for line in p.stdout.splitlines()]
    return out


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


def test_preview_prints_the_notice_and_stores_nothing(tmp_path):
    cfg = write_config(tmp_path)
    p = bridge(cfg, "preview", str(MAILS / "01-storing-nieuw.eml"),
               "--now", now_of(MAILS / "01-storing-nieuw.eml"))
    assert "Amersfoort" in p.stdout and "Leusden" in p.stdout
    st = json.loads(bridge(cfg, "status", "--json").stdout)
    assert st["mails"] == {} and st["deliveries"] == {}


def test_review_queue_approve_and_reject(tmp_path):
    cfg = write_config(tmp_path)
    bridge(cfg, "subscribers", "add", "0612345678")
    no_ticket = (MAILS / "01-storing-nieuw.eml").read_bytes()
    no_ticket = no_ticket.replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
    f = tmp_path / "vague.eml"
    f.write_bytes(no_ticket.replace(b"inc12345678.1@", b"vague1@"))
    g = tmp_path / "vague2.eml"
    g.write_bytes(no_ticket.replace(b"inc12345678.1@", b"vague2@"))
    out = bridge(cfg, "ingest", str(f), str(g)).stdout
    assert out.count(": review: no ticket") == 2, out
    listing = bridge(cfg, "review", "list").stdout
    assert listing.count("open") == 2
    assert "review 1 (open)" in bridge(cfg, "review", "show", "1").stdout
    assert "queued for 1 subscribers" in bridge(cfg, "review", "approve", "1").stdout
    assert "rejected" in bridge(cfg, "review", "reject", "2").stdout
    again = bridge(cfg, "review", "approve", "1", check=False)
    assert again.returncode == 1 and "already approved" in again.stderr
    assert bridge(cfg, "review", "list").stdout.strip() == "review queue is empty"
    bridge(cfg, "dispatch")
    [msg] = read_outbox(tmp_path)
    assert "Amersfoort" in msg["text"]


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


def test_config_errors_name_the_key(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("rate = 1000.0", 'rate = "fast"'))
    p = bridge(cfg, "status", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "bridge: dispatch.rate: must be a number, got 'fast'"
    cfg.write_text(cfg.read_text().replace('rate = "fast"', "rate = 5\nspeed = 3"))
    p = bridge(cfg, "status", check=False)
    assert p.stderr.strip() == "bridge: dispatch.speed: unknown key (a typo?)"
    p = bridge(tmp_path / "missing.toml", "status", check=False)
    assert p.returncode == 1 and "config file not found" in p.stderr


def test_shipped_config_loads():
    from bridge.config import load
    from helpers import ROOT

    cfg = load(ROOT / "config.toml")
    assert cfg.organisation.name == "CBG Connect"
    assert cfg.smtp.host == "127.0.0.1" and cfg.smtp.port == 8025
    assert cfg.channel.type == "console"
    assert str(cfg.store.path).endswith("var/bridge.db")
