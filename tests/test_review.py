"""The review queue: mails the bridge cannot read with confidence wait for a person, who
sees exactly the notice approve would send, then approves or rejects it."""

from __future__ import annotations

from daemon import bridge
from helpers import MAILS, TEMPLATES, no_ticket_mail, read_outbox, run_cli, write_config


# --- list, show, approve, reject -------------------------------------------------------------


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


# --- a mail the code could not process --------------------------------------------------------


def test_a_mail_the_code_could_not_process_can_be_shown_and_approved(tmp_path, capsys, monkeypatch):
    """Such mails go to review so a human decides; show and approve must not crash on the
    same bug (they printed a traceback), and approve sends the fallback text."""
    import bridge.analysis
    from helpers import read_outbox, sample, write_config

    def broken(mail, rules):
        raise ValueError("a parser bug")

    monkeypatch.setattr(bridge.analysis, "extract_report", broken)
    cfg = write_config(tmp_path)
    f = tmp_path / "m.eml"
    f.write_bytes(sample("01"))
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    code, out, err = run_cli(capsys, "ingest", str(f), "--config", str(cfg))
    assert code == 0 and ": review: could not be processed" in out, out
    code, out, err = run_cli(capsys, "review", "show", "1", "--config", str(cfg))
    assert code == 0 and "review 1 (open)" in out and "a parser bug" in out, (out, err)
    code, out, err = run_cli(capsys, "review", "approve", "1", "--config", str(cfg))
    assert code == 0 and "queued for 1 subscribers" in out, (out, err)
    run_cli(capsys, "dispatch", "--config", str(cfg))
    [msg] = read_outbox(tmp_path)
    assert "Storing" in msg["text"] or "storing" in msg["text"], msg


# --- approve sends the fallback template, without KPN's greeting and signature ----------------

# A mail that goes to review has no report to fill a notice template: approve sends the
# fallback template (or, when that fails, the built-in text) with the subject and the first
# lines of the mail, and `review show` prints exactly that text.

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
    shown, sent = _review_item(tmp_path, capsys, write_config(tmp_path), no_ticket_mail(tmp_path)
                               .read_bytes())
    assert sent == shown
    assert "Amersfoort" in sent and "groet" not in sent.lower(), sent


# --- approval mode, and approving with an operator's report -----------------------------------


def test_approval_mode_cli_approve_sends_the_reports_own_notice(tmp_path):
    from helpers import now_of

    cfg = write_config(tmp_path, extra="[review]\napproval_mode = true\n")
    bridge(cfg, "subscribers", "add", "0612345678")
    f = MAILS / "01-storing-nieuw.eml"
    out = bridge(cfg, "ingest", str(f), "--now", now_of(f)).stdout
    assert ": review: approval mode: every notice waits" in out, out
    show = bridge(cfg, "review", "show", "1").stdout
    # show prints the notice approve sends: the storing_nieuw template, not the fallback
    assert "*Storing internet en bellen* in Amersfoort" in show, show
    assert "queued for 1 subscribers" in bridge(cfg, "review", "approve", "1").stdout
    bridge(cfg, "dispatch")
    [msg] = read_outbox(tmp_path)
    assert msg["text"].startswith("*Storing internet en bellen* in Amersfoort")
    # the notice belongs to the incident: the next update threads onto it
    g = MAILS / "02-storing-update.eml"
    out = bridge(cfg, "ingest", str(g), "--now", now_of(g)).stdout
    assert ": review: approval mode" in out
    assert "queued for 1 subscribers" in bridge(cfg, "review", "approve", "2").stdout
    notices = bridge(cfg, "notices", "list").stdout.splitlines()[1:]
    assert [n.split("\t")[3] for n in notices] == ["INC000012345678"] * 2


def test_approve_with_an_operators_report_threads_into_its_incident(app):
    import dataclasses

    from bridge.store import RawMail

    app.store.subscribers.add("+31612345678", "console", "cli:test")
    data = (MAILS / "01-storing-nieuw.eml").read_bytes()
    vague = data.replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
    mail_id = app.store.mails.add(RawMail(data=vague, source="cli"))
    assert app.pipeline.process(mail_id).outcome == "review"
    draft = app.review.review_draft(1)
    assert not draft.held and draft.report.ticket is None
    fixed = dataclasses.replace(draft.report, ticket="INC9", status="nieuw", places=("Baarn",))
    preview = app.review.draft_notice(fixed)
    assert "Baarn" in preview.text and preview.template == "notices/storing_nieuw.j2"
    o = app.review.approve_report(1, fixed, by="anna")
    notice = app.store.notices.get(o.notice_id)
    assert notice["text"] == app.store.notices.get(o.notice_id)["text"]
    assert "Baarn" in notice["text"] and notice["ticket"] == "INC9"
    assert app.store.incidents.get(app.cfg.senders.source, "INC9").status == "nieuw"
    # an older report than the incident's last notice is refused
    mail2 = app.store.mails.add(RawMail(data=vague.replace(b"inc12345678.1@", b"v2@"),
                                        source="cli"))
    app.pipeline.process(mail2)
    older = dataclasses.replace(fixed, status="nieuw",
                                sent_at=fixed.sent_at.replace(year=2020) if fixed.sent_at else None)
    app.review.approve_report(2, dataclasses.replace(fixed, status="opgelost"), by="anna")
    mail3 = app.store.mails.add(RawMail(data=vague.replace(b"inc12345678.1@", b"v3@"),
                                        source="cli"))
    app.pipeline.process(mail3)
    import pytest

    with pytest.raises(LookupError, match="older than the last notice"):
        app.review.approve_report(3, older, by="anna")
    assert app.store.mails.review(3)["state"] == "open"
