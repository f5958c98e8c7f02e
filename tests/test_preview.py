"""`bridge preview` decides as `bridge ingest` would, now (issue 11 item 8): with the store
read (read-only: never written, never migrated), the same decision code as processing
(bridge.pipeline.Pipeline._judge): an update rendered against the incident's previous
report ("(was 14:00)"), a duplicate, an outdated update, review with the facts carried
over; the built-in fallback text marked, with a non-zero exit.

The CLI runs in this process (helpers.run_cli); fixed-date samples are replayed with --now.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

from helpers import MAILS, TEMPLATES, now_of, read_outbox, run_cli, write_config

M01, M02, M03 = (MAILS / f for f in ("01-storing-nieuw.eml", "02-storing-update.eml",
                                     "03-storing-opgelost.eml"))


def preview(capsys, cfg, mail, now=None):
    return run_cli(capsys, "preview", str(mail), "--now", now or now_of(mail),
                   "--config", str(cfg))


def ingest(capsys, cfg, mail, now=None) -> dict:
    code, out, err = run_cli(capsys, "ingest", "--json", str(mail), "--now", now or now_of(mail),
                             "--config", str(cfg))
    assert code == 0, (out, err)
    return json.loads(out)


def db_state(tmp_path) -> dict[str, str]:
    """The database file and its WAL, a digest of each (to see that nothing was written).
    The -shm file is SQLite's WAL index, where every reader leaves its read mark."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tmp_path.glob("bridge.db*"))
            if p.stat().st_size and not p.name.endswith("-shm")}


# -- the decisions ingest makes --------------------------------------------------------------------
def test_an_update_is_previewed_against_the_incidents_previous_report(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code, alone, _ = preview(capsys, cfg, M02)  # no store yet: judged on its own
    assert code == 0 and "Verwacht herstel: 17:30." in alone and "(was" not in alone, alone
    assert not (tmp_path / "bridge.db").exists()  # preview created no store
    run_cli(capsys, "subscribers", "add", "0612345678", "--config", str(cfg))
    assert ingest(capsys, cfg, M01)["outcome"] == "queued"
    code, out, _ = preview(capsys, cfg, M02)
    assert code == 0 and "Nieuwe verwachte hersteltijd: 17:30 (was 14:00)." in out, out
    # exactly the text ingest then sends
    assert ingest(capsys, cfg, M02)["outcome"] == "queued"
    run_cli(capsys, "dispatch", "--config", str(cfg))
    assert read_outbox(tmp_path)[-1]["text"] == out.strip()


def test_duplicate_and_outdated_as_ingest_says(tmp_path, capsys):
    cfg = write_config(tmp_path)
    ingest(capsys, cfg, M01)
    code, out, _ = preview(capsys, cfg, M01)  # the same mail again
    assert (code, out.strip()) == (1, "would be a duplicate: same Message-ID or bytes as mail 1")
    # the same report in another mail (a new Message-ID): the same facts as the last notice
    other = tmp_path / "again.eml"
    other.write_bytes(M01.read_bytes().replace(b"Message-ID: <", b"Message-ID: <again."))
    code, out, _ = preview(capsys, cfg, other)
    assert code == 1 and out.startswith("would be a duplicate: "), out
    assert ingest(capsys, cfg, other)["outcome"] == "duplicate"
    # resolved first; the older update then is outdated
    ingest(capsys, cfg, M03)
    code, out, _ = preview(capsys, cfg, M02, now=now_of(M03))
    assert code == 1 and out.startswith("would be outdated: "), out
    result = ingest(capsys, cfg, M02, now=now_of(M03))
    assert result["outcome"] == "duplicate" and result["reason"].startswith("outdated: ")
    assert out.strip() == "would be outdated: " + result["reason"][len("outdated: "):]


def test_a_thin_update_carries_the_previous_facts_over_as_ingest_does(tmp_path, capsys):
    """An update that only says something new in words names no place or time: alone it
    goes to review; with the incident's previous report in the store its facts are carried
    over and it is a notice (core.incidents.carry_over, through the same decision code)."""
    cfg = write_config(tmp_path)
    thin = tmp_path / "thin.eml"
    drop = ("Dienst(en):", "Getroffen gebied:", "Postcodes:", "Starttijd:", "Verwachte eindtijd:")
    lines = M02.read_bytes().split(b"\r\n")
    thin.write_bytes(b"\r\n".join(ln for ln in lines if not ln.decode().startswith(drop))
                     .replace(b"KPN: Internet en VoIP - Amersfoort (", b"KPN ("))
    code, out, _ = preview(capsys, cfg, thin)
    assert code == 1 and out.startswith("would go to review: outage update names no place"), out
    ingest(capsys, cfg, M01)
    code, out, _ = preview(capsys, cfg, thin)
    assert code == 0 and "Amersfoort" in out and "De kabel wordt vervangen" in out, out
    assert ingest(capsys, cfg, thin)["outcome"] == "queued"


def test_the_built_in_fallback_text_is_marked_and_exits_non_zero(tmp_path, capsys):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "notices" / "storing_nieuw.j2").write_text("{{ r.places|onbekend_filter }}\n")
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(str(TEMPLATES), str(templates)))
    code, out, err = preview(capsys, cfg, M01)
    lines = out.strip().splitlines()
    assert code == 3, (out, err)
    assert lines[0].startswith("[BUILT-IN FALLBACK TEXT: template notices/storing_nieuw.j2 "
                               "failed"), lines[0]
    assert "Amersfoort" in out  # the built-in text, as customers would get it
    (templates / "notices" / "storing_nieuw.j2").write_text(
        (TEMPLATES / "notices" / "storing_nieuw.j2").read_text())
    code, out, _ = preview(capsys, cfg, M01)
    assert code == 0 and "FALLBACK" not in out


# -- read-only -------------------------------------------------------------------------------------
def test_preview_never_writes_the_store(tmp_path, capsys):
    from daemon import bridge

    cfg = write_config(tmp_path)
    bridge(cfg, "subscribers", "add", "0612345678")  # in processes of their own, closed
    bridge(cfg, "ingest", str(M01), "--now", now_of(M01))
    before = db_state(tmp_path)
    assert "bridge.db" in before
    for mail in (M01, M02, M03, MAILS / "07-geen-storing.eml"):
        preview(capsys, cfg, mail)
    assert bridge(cfg, "preview", str(M02), "--now", now_of(M02)).returncode == 0
    assert db_state(tmp_path) == before
    code, out, _ = run_cli(capsys, "status", "--json", "--config", str(cfg))
    assert json.loads(out)["mails"] == {"queued": 1}


def test_preview_does_not_migrate_an_older_store(tmp_path, capsys):
    from bridge.store.db import MIGRATIONS, SCHEMA_VERSION, _split_sql

    cfg = write_config(tmp_path)
    path = tmp_path / "bridge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        for stmt in _split_sql(script):
            conn.execute(stmt)
    conn.execute("PRAGMA user_version=4")
    conn.close()
    before = path.read_bytes()
    code, out, err = preview(capsys, cfg, M01)
    assert code == 1 and f"schema version 4, this bridge knows {SCHEMA_VERSION}" in err, err
    assert "never migrates" in err
    assert path.read_bytes() == before
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4


def test_the_store_opened_read_only_refuses_writes(tmp_path):
    import pytest

    from bridge.core.models import RawMail
    from bridge.store import Store, StoreError

    with pytest.raises(StoreError, match="no store yet"):
        Store.open_readonly(tmp_path / "bridge.db")
    Store.open(tmp_path / "bridge.db").close()
    store = Store.open_readonly(tmp_path / "bridge.db")
    try:
        assert store.mails.seen_before(0, "x@y", "00") is None
        with pytest.raises((StoreError, sqlite3.Error)):
            store.mails.add(RawMail(b"From: a@b\n\nx", "cli"))
    finally:
        store.close()
