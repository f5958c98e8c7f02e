"""The review queue: mails the bridge cannot read with confidence wait for a person, who
sees exactly the notice approve would send, then approves or rejects it."""

from __future__ import annotations

from daemon import bridge
from helpers import MAILS, read_outbox, write_config


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
