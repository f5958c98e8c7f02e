"""The SQLite store: schema, raw mails, outbox bookkeeping, erasure, retention, a full disk."""

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from bridge.store import RawMail, Store, StoreError
from bridge.store.db import SCHEMA_VERSION
from helpers import fan_out_notice


def notice(store, incident_id=None):
    return store.incidents.add_notice(incident_id=incident_id, raw_mail_id=None, kind="storing",
                                      status="nieuw", template="t", text="x", report=None,
                                      fallback=False)


# --- schema -----------------------------------------------------------------------------------


def test_schema_is_versioned_and_wal(store, tmp_path):
    assert store.db.scalar("PRAGMA user_version") == SCHEMA_VERSION
    assert store.db.scalar("PRAGMA journal_mode") == "wal"
    store.close()
    again = Store.open(tmp_path / "b.db")  # reopening migrates nothing
    assert again.db.scalar("PRAGMA user_version") == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    c = sqlite3.connect(tmp_path / "n.db")
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path / "n.db")



def _open_at(path: str, start) -> int:
    start.wait()
    return Store.open(Path(path)).db.scalar("PRAGMA user_version")


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path):
    """`bridge status` started at the moment the daemon first started on a new store failed
    with "duplicate column name": both read version 0, then both ran the migrations."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        path = tmp_path / f"race{round_}.db"
        with ctx.Manager() as m:
            start = m.Event()
            with ctx.Pool(4) as pool:
                results = [pool.apply_async(_open_at, (str(path), start)) for _ in range(4)]
                time.sleep(0.5)
                start.set()
                assert [r.get(timeout=60) for r in results] == [SCHEMA_VERSION] * 4


# --- raw mails --------------------------------------------------------------------------------


def test_raw_mail_is_stored_with_message_id_and_hash(store):
    mid = store.mails.add(RawMail(b"Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody", "smtp", "a@kpn.com"))
    m = store.mails.get(mid)
    assert m.message_id == "a@b" and len(m.sha256) == 64 and m.outcome is None
    assert store.mails.unprocessed() == [mid]


# --- deliveries: fan-out, claim, status, supersede --------------------------------------------


def test_fan_out_one_delivery_per_subscriber_and_coalescing(store):
    for n in ("+31611111111", "+31622222222", "+31633333333"):
        store.subscribers.add(n, "console", "cli:test")
    with store.tx():
        n1 = notice(store, incident_id=7)
        assert store.deliveries.fan_out(n1, 7) == (3, 0)
    # one is in flight when the newer notice arrives: only the unsent ones are superseded
    claimed = store.deliveries.claim(1)
    with store.tx():
        n2 = notice(store, incident_id=7)
        queued, superseded = store.deliveries.fan_out(n2, 7)
    assert (queued, superseded) == (3, 2)
    counts = store.deliveries.notice_counts(n1)
    assert counts == {"sending": 1, "superseded": 2}
    assert claimed[0].attempts == 1


def test_claim_skips_not_yet_due_and_reset_inflight(store):
    store.subscribers.add("+31611111111", "console", "cli:test")
    with store.tx():
        store.deliveries.fan_out(notice(store), None)
    [d] = store.deliveries.claim(10)
    assert store.deliveries.claim(10) == []
    store.deliveries.mark_retry(d.id, time.time() + 60, "transient")
    assert store.deliveries.claim(10) == []
    assert store.deliveries.next_due() > time.time()
    store.db.execute("UPDATE deliveries SET due_at=0")
    [d] = store.deliveries.claim(10)
    assert d.attempts == 2
    assert store.deliveries.reset_inflight() == 1


def test_sent_clears_the_number_and_status_moves_forward_only(store):
    store.subscribers.add("+31611111111", "console", "cli:test")
    with store.tx():
        store.deliveries.fan_out(notice(store), None)
    [d] = store.deliveries.claim(10)
    store.deliveries.mark_sent(d.id, "wamid.X")
    row = store.db.one("SELECT * FROM deliveries WHERE id=?", (d.id,))
    assert row["to_addr"] is None and row["state"] == "sent"
    store.deliveries.progress("wamid.X", "read")
    store.deliveries.progress("wamid.X", "delivered")  # late and out of order: harmless
    store.deliveries.progress("wamid.X", "read")  # repeated: harmless
    assert store.db.scalar("SELECT state FROM deliveries WHERE id=?", (d.id,)) == "read"
    store.deliveries.progress("wamid.X", "failed", "131026 undeliverable")
    store.deliveries.progress("wamid.X", "delivered")
    assert store.db.scalar("SELECT state FROM deliveries WHERE id=?", (d.id,)) == "failed"
    assert store.deliveries.progress("wamid.unknown", "read") is None


def test_reset_and_requeue_never_bring_back_an_older_notice(store):
    a = "+31611111111"
    store.subscribers.add(a, "console", "cli:test")
    fan_out_notice(store, 1, "oud")
    [old] = store.deliveries.claim(10)
    fan_out_notice(store, 1, "nieuw")
    # a crash with the older one under way: at the restart it is not queued behind the newer
    store.deliveries.reset_inflight()
    state = lambda i: store.db.scalar("SELECT state FROM deliveries WHERE id=?", (i,))  # noqa: E731
    assert state(old.id) == "superseded"
    assert [x.text if hasattr(x, "text") else x.notice_id for x in store.deliveries.claim(10)] == [2]

    # the channel accepted the older one, a newer is queued, then the older fails later for a
    # passing reason (a webhook): it must not go out again after the newer
    fan_out_notice(store, 2, "oud")
    [old2] = store.deliveries.claim(10)
    store.deliveries.mark_sent(old2.id, "wamid.old")
    fan_out_notice(store, 2, "nieuw")
    assert store.deliveries.requeue("wamid.old", time.time(), "131000 later", 8) is None
    assert state(old2.id) == "sent"


# --- erasure and expiring hashes --------------------------------------------------------------


def test_remove_erases_number_everywhere(store, tmp_path):
    number = "+31612345678"
    sub, created = store.subscribers.add(number, "console", "wamid.consent")
    assert created and store.subscribers.add(number, "console", "x")[1] is False
    with store.tx():
        store.deliveries.fan_out(notice(store), None)
        store.deliveries.add_reply(to_addr=number, channel="console", text="hoi", name="help",
                                   subscriber_id=sub.id)
    assert store.subscribers.remove(number)
    assert not store.subscribers.remove(number)
    assert store.db.scalar("SELECT count(*) FROM deliveries WHERE to_addr IS NOT NULL") == 0
    assert set(store.deliveries.counts()) == {"cancelled"}
    store.close()
    for f in tmp_path.glob("b.db*"):
        data = f.read_bytes()
        for form in (b"+31612345678", b"31612345678", b"0612345678", b"wamid.consent"):
            assert form not in data, (f.name, form)


def test_inbound_dedupe_and_reply_limit_use_expiring_hashes(store):
    assert store.subscribers.first_seen("cloud", "wamid.1", 60)
    assert not store.subscribers.first_seen("cloud", "wamid.1", 60)
    assert store.subscribers.first_seen("mqtt", "wamid.1", 60)
    assert store.subscribers.allow_reply("support", "+31612345678", 3600)
    assert not store.subscribers.allow_reply("support", "+31612345678", 3600)
    store.db.execute("UPDATE reply_limits SET expires_at = 0")
    assert store.subscribers.allow_reply("support", "+31612345678", 3600)
    # keys of epochs long past are deleted, so old hashes cannot be linked to numbers
    store.db.execute("INSERT INTO state (key, value) VALUES ('key:reply:3600:1', '00')")
    store.subscribers.purge_hashes()
    assert store.db.one("SELECT 1 FROM state WHERE key='key:reply:3600:1'") is None


# --- retention and migration ------------------------------------------------------------------


def test_retention_purges_old_mails_and_finished_deliveries(store):
    old = store.mails.add(RawMail(b"Subject: a\r\n\r\nx", "smtp"))
    keep = store.mails.add(RawMail(b"Subject: b\r\n\r\ny", "smtp"))
    with store.tx():
        store.mails.set_outcome(old, "rejected", "test")
        store.mails.set_outcome(keep, "review", "test")
        store.mails.add_review(keep, "test")
    store.db.execute("UPDATE raw_mails SET received_at = 0")
    store.subscribers.add("+31611111111", "console", "cli:test")
    with store.tx():
        store.deliveries.fan_out(notice(store), None)
    [d] = store.deliveries.claim(1)
    store.deliveries.mark_sent(d.id, None)
    store.db.execute("UPDATE deliveries SET finished_at = 1")
    out = store.purge(30)
    assert out["raw_mails"] == 1 and out["deliveries"] == 1
    assert store.mails.get(keep) is not None  # still in review: kept


def test_migration_from_version_1_keeps_data(tmp_path):
    from bridge.store.db import MIGRATIONS, _split_sql

    c = sqlite3.connect(tmp_path / "old.db")
    for stmt in _split_sql(MIGRATIONS[0]):
        c.execute(stmt)
    c.execute("PRAGMA user_version=1")
    c.execute("INSERT INTO subscribers (number, channel, consent_at, consent_ref)"
              " VALUES ('+31611111111', 'console', 1, 'x')")
    c.commit()
    c.close()
    s = Store.open(tmp_path / "old.db")
    assert s.db.scalar("PRAGMA user_version") == SCHEMA_VERSION
    assert s.subscribers.count() == 1
    plan = s.db.execute("EXPLAIN QUERY PLAN SELECT * FROM raw_mails WHERE source_ref=?",
                        ("imap:1:2",)).fetchall()
    assert "raw_mails_source_ref" in str([tuple(r) for r in plan])
    s.close()


def test_retention_purges_in_short_batches(store):
    """A large purge is many short transactions (the daemon runs other work in between)."""
    store.db.execute("INSERT INTO notices (id, kind, template, text, created_at)"
                     " VALUES (1, 'storing', 't', 'x', 0)")
    with store.tx():
        store.db.conn.executemany(
            "INSERT INTO deliveries (notice_id, channel, state, due_at, created_at, finished_at)"
            " VALUES (1, 'console', 'sent', 0, 0, 1)", [()] * 12000)
        store.db.execute("INSERT INTO deliveries (notice_id, channel, state, due_at, created_at)"
                         " VALUES (1, 'console', 'pending', 0, 0)")
    steps = list(store.purge_steps(30))
    assert len(steps) >= 3 and steps[-1]["deliveries"] == 12000
    assert store.deliveries.counts() == {"pending": 1}
    assert store.deliveries.pending() == 1
    assert store.deliveries.notice_open(1) == (0, 1)  # recipients not set by this test


# --- a full disk ------------------------------------------------------------------------------


def test_disk_full_is_reported_as_disk_full_and_durability_is_restored(store):
    """SQLite rolls the transaction back itself on SQLITE_FULL: the ROLLBACK of tx() failed
    with 'no transaction is active', hiding the real error and leaving synchronous=FULL."""
    import sqlite3

    from bridge.store import RawMail

    pages = store.db.scalar("PRAGMA page_count")
    store.db.execute(f"PRAGMA max_page_count={pages + 2}")
    with pytest.raises(sqlite3.Error) as e:
        store.mails.add(RawMail(data=b"x" * 200_000, source="cli"))
    assert "full" in str(e.value), e.value
    assert store.db.scalar("PRAGMA synchronous") == 1  # NORMAL again
    assert not store.db.conn.in_transaction
    store.db.execute(f"PRAGMA max_page_count={10**9}")
    assert store.mails.add(RawMail(data=b"y", source="cli"))


def test_a_full_store_is_told_apart_from_other_store_errors(store):
    """The daemon pauses on a store it cannot write (disk full, I/O error, read-only file)
    and counts anything else as a crash: write_problem tells them apart, through the
    exceptions the edges see (StoreUnavailable raised from a sqlite3 error) too."""
    import sqlite3

    from bridge.port import StoreUnavailable
    from bridge.store import RawMail, StoreFull, write_problem

    pages = store.db.scalar("PRAGMA page_count")
    store.db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(sqlite3.Error) as e:
        store.mails.add(RawMail(data=b"x" * 50_000, source="cli"))
    assert write_problem(e.value) == "database or disk is full"
    try:
        raise StoreUnavailable(str(e.value)) from e.value
    except StoreUnavailable as wrapped:
        assert write_problem(wrapped) == "database or disk is full"
    assert write_problem(StoreFull("commit failed: disk I/O error", "disk I/O error")) == \
        "disk I/O error"
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert write_problem(locked) is None  # passing: a crash to count, not a pause
    assert write_problem(RuntimeError("a bug")) is None
    assert write_problem(sqlite3.OperationalError("no such table: x")) is None


def test_a_probe_write_fails_while_the_store_is_full_and_leaves_nothing_behind(store):
    pages = store.db.scalar("PRAGMA page_count")
    store.db.execute(f"PRAGMA max_page_count={pages}")
    assert store.db.probe_write() == "database or disk is full"
    assert not store.db.conn.in_transaction
    store.db.execute("PRAGMA max_page_count=1073741823")
    assert store.db.probe_write() is None
    assert store.state.get("store:write-probe") is None


def test_the_page_cap_test_hook_fills_and_frees_the_store_from_outside(tmp_path, monkeypatch):
    """BRIDGE_FAULT_PAGE_CAP (bridge/store/db.py): the file's ``full`` caps the store at its
    size before the next write transaction, an empty file lifts the cap."""
    from bridge.store import RawMail, Store, write_problem
    from bridge.store import db as dbmod

    cap = tmp_path / "cap"
    cap.write_text("")
    monkeypatch.setattr(dbmod, "_PAGE_CAP_FILE", str(cap))
    store = Store.open(tmp_path / "bridge.db")
    try:
        assert store.mails.add(RawMail(data=b"a" * 10_000, source="cli"))
        cap.write_text("full")
        with pytest.raises(Exception) as e:
            with store.tx(durable=True):
                store.mails.add(RawMail(data=b"b" * 10_000, source="cli"))
        assert write_problem(e.value) == "database or disk is full"
        cap.write_text("")
        with store.tx(durable=True):
            assert store.mails.add(RawMail(data=b"c" * 10_000, source="cli"))
    finally:
        store.close()


# --- can the daemon write its store? (the start-up check) ------------------------------------


def test_the_start_up_check_passes_for_a_writable_store_and_keeps_the_wal(tmp_path):
    """The check must not open the database files itself: closing a second descriptor
    drops the process's SQLite locks (POSIX), and another process closing its connection
    then deleted the WAL under the daemon: its later commits were invisible to every other
    process (found while building this check)."""
    import subprocess
    import sys

    from bridge.store import Store

    def read_elsewhere() -> str:  # another process: connect, read, close
        code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                "print(c.execute(\"SELECT value FROM state WHERE key='k'\").fetchone()[0]); "
                "c.close()")
        return subprocess.run([sys.executable, "-c", code, str(tmp_path / "bridge.db")],
                              capture_output=True, text=True, check=True).stdout.strip()

    store = Store.open(tmp_path / "bridge.db")
    try:
        store.state.set("k", "v")
        store.db.check_writable()
        store.state.set("k", "w")
        assert read_elsewhere() == "w"  # its close would delete the WAL if we held no lock
        assert (tmp_path / "bridge.db-wal").exists()
        store.state.set("k", "x")
        assert read_elsewhere() == "x"
    finally:
        store.close()


def test_a_store_whose_folder_is_a_file_is_refused_naming_the_path_and_user(tmp_path):
    from bridge.store import StoreError
    from bridge.store.db import Database, access_problem

    (tmp_path / "notafolder").write_text("")
    path = tmp_path / "notafolder" / "bridge.db"
    assert "not a folder" in access_problem(path)
    with pytest.raises(StoreError) as e:
        Database(path)
    assert str(path.parent) in str(e.value)


# --- the operator console's tables: pause, tally, sessions, audit ------------------------------


def test_an_operator_pause_is_kept_and_lifted(store):
    assert store.control.paused() is None
    p = store.control.pause("anna", "  test  ")
    assert (p.by, p.reason) == ("anna", "test") and store.control.paused() == p
    assert store.control.pause("bert").by == "anna"  # an existing pause is kept
    assert store.control.resume() == p and store.control.paused() is None
    assert store.control.resume() is None


def test_subscribes_and_unsubscribes_are_counted_per_day_without_ids(store):
    from datetime import date

    store.subscribers.add("+31611111111", "console", "cli:x")
    store.subscribers.import_numbers(["+31622222222", "+31633333333"], "console", "import:f",
                                     wording="w")
    store.subscribers.remove("+31611111111")
    [(day, sub, unsub)] = store.tally.per_day(1, "Europe/Amsterdam")
    assert (sub, unsub) == (3, 1)
    # a local day: 22:30 UTC on 10 June is 00:30 on 11 June in Amsterdam (summer time)
    from datetime import datetime, timezone

    t = datetime(2025, 6, 10, 22, 30, tzinfo=timezone.utc).timestamp()
    with store.tx():
        store.tally.bump("subscribed", 5, t)
    days = store.tally.per_day(3, "Europe/Amsterdam", today=date(2025, 6, 12))
    assert days == [(date(2025, 6, 10), 0, 0), (date(2025, 6, 11), 5, 0),
                    (date(2025, 6, 12), 0, 0)]
    # only counts: no id in the table
    rows = store.db.execute("SELECT * FROM subscriber_tally").fetchall()
    assert all(set(dict(r)) == {"hour", "event", "n"} for r in rows)


def test_sessions_expire_and_failures_are_purged(store):
    import time

    store.users.add("anna", "$argon2id$x")
    uid = store.users.get("anna").id
    store.users.open_session(uid, "h1", time.time() + 60, "127.0.0.1")
    store.users.open_session(uid, "h2", time.time() - 1, "127.0.0.1")
    assert store.users.session("h1").user == "anna" and store.users.session("h2") is None
    store.users.add_failure(["user:anna"])
    assert store.users.failures("user:anna", 0)[0] == 1
    assert store.users.purge(time.time() + 1) == 2  # the expired session, the failure
    assert store.users.set_password("anna", "$argon2id$y")
    assert store.users.session("h1") is None  # a new password signs out everywhere


def test_cancel_a_notice_stops_only_its_unsent_deliveries(store):
    for n in ("+31611111111", "+31622222222", "+31633333333"):
        store.subscribers.add(n, "console", "cli:x")
    with store.tx():
        nid = store.incidents.add_notice(incident_id=None, raw_mail_id=None, kind="storing",
                                         status=None, template="t", text="x", report=None,
                                         fallback=False)
        store.deliveries.fan_out(nid, None)
    [d] = store.deliveries.claim(1)
    assert store.notices.cancel(nid) == 2
    assert store.notices.counts(nid) == {"sending": 1, "cancelled": 2}
    assert store.db.scalar("SELECT count(*) FROM deliveries WHERE state='cancelled'"
                           " AND to_addr IS NOT NULL") == 0
    [(row)] = store.notices.in_progress()
    assert row["id"] == nid and row["open"] == 1
