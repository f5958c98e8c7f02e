"""Regression tests for bugs found in a review of the imperative shell."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timezone

import pytest

from bridge.channels.base import SendResult
from bridge.outbox import Dispatcher
from bridge.store import Store, StoreError
from helpers import DISPATCH, Scripted, wait_until

CFG = DISPATCH


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "b.db")
    yield s
    s.close()


def notice(store, incident, text):
    with store.tx():
        nid = store.incidents.add_notice(incident_id=incident, raw_mail_id=None, kind="storing",
                                         status="nieuw", template="t", text=text, report=None,
                                         fallback=False)
        store.deliveries.fan_out(nid, incident)
    return nid


# -- outbox: a store error while recording a result --------------------------------------------
async def test_a_store_error_recording_a_result_neither_crashes_nor_repeats_sends(store):
    """One failing store write in one send task (e.g. "database is locked") must not cancel
    the other sends under way (they would go out again after the supervisor's restart): the
    result is recorded again before the next claim, and nobody gets the notice twice."""
    nums = [f"+3161111{i:04d}" for i in range(8)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    notice(store, None, "melding")
    ch = Scripted({nums[0]: [SendResult("retry", error="1 transient")]}, latency=0.2)
    real = store.deliveries.mark_retry
    calls = []

    def failing_once(*args, **kw):
        if not calls:
            calls.append(1)
            raise StoreError("cannot start a transaction: database is locked")
        return real(*args, **kw)

    store.deliveries.mark_retry = failing_once
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        ok = await wait_until(lambda: store.deliveries.counts() == {"sent": 8}, timeout=5)
    finally:
        stop.set()
        await task  # no crash
        d.release()
    assert ok, store.deliveries.counts()
    assert calls, "the store error happened"
    per = [m.to for m in ch.calls]
    assert per.count(nums[0]) == 2  # the transient failure, then the retry
    assert all(per.count(n) == 1 for n in nums[1:]), per


async def test_a_crashing_dispatch_loop_lets_the_sends_under_way_finish(store):
    """The loop itself fails (the store refuses a claim): the sends under way finish and are
    recorded, the rest goes back to the queue, and the restart sends each notice once."""
    nums = [f"+3161111{i:04d}" for i in range(4)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    notice(store, None, "melding")
    ch = Scripted(latency=0.3)
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    real_claim = store.deliveries.claim
    claims = []

    def claim_then_fail(limit):
        claims.append(1)
        if len(claims) == 2:
            raise StoreError("disk I/O error")
        return real_claim(limit)

    store.deliveries.claim = claim_then_fail
    try:
        with pytest.raises(StoreError):
            await d.run(asyncio.Event())
        assert store.deliveries.counts() == {"sent": 4}  # finished and recorded, not cut off
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))  # what the supervisor does
        await asyncio.sleep(0.2)
        stop.set()
        await task
    finally:
        d.release()
    assert sorted(m.to for m in ch.calls) == nums


# -- coalescing: claimed but not yet started -------------------------------------------------------
async def test_newer_notice_supersedes_deliveries_claimed_but_not_started(store):
    """A slow channel: a claimed batch waits behind the concurrency limit. A newer notice of
    the same incident queued meanwhile must supersede the older one for everyone whose send
    has not started; only the sends under way may still carry it."""
    cfg = dataclasses.replace(DISPATCH, rate=100, concurrency=2)
    nums = [f"+3161111{i:04d}" for i in range(20)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    old = notice(store, 1, "oud")
    ch = Scripted(latency=0.3)
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: len(ch.calls) >= 2)
        new = notice(store, 1, "nieuw")
        assert await wait_until(lambda: store.deliveries.pending() == 0, timeout=15)
    finally:
        stop.set()
        await task
        d.release()
    got_old = {m.to for m in ch.calls if m.notice_id == old}
    got_new = [m.to for m in ch.calls if m.notice_id == new]
    assert len(got_old) <= 2, f"{len(got_old)} subscribers got the superseded notice"
    assert sorted(got_new) == nums


# -- ordering: an older notice must never go out after a newer one of the same incident ----------
async def test_older_notice_retried_after_newer_was_queued_is_superseded(store):
    """The older notice is under way (so the fan-out of the newer one cannot supersede it) and
    then fails transiently: it must not go back to the queue and out after the newer one."""
    a = "+31611111111"
    store.subscribers.add(a, "console", "cli:test")
    notice(store, 1, "oud")
    ch = Scripted({a: [SendResult("retry", error="130429 rate", retry_after=0.8)]}, latency=0.1)
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: ch.calls)
        notice(store, 1, "nieuw")  # while the older one is under way
        d.wake()
        await wait_until(lambda: store.deliveries.pending() == 0)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        d.release()
    texts = [m.text for m in ch.calls]
    assert "oud" not in texts[texts.index("nieuw"):], texts


def test_reset_and_requeue_never_bring_back_an_older_notice(store):
    a = "+31611111111"
    store.subscribers.add(a, "console", "cli:test")
    notice(store, 1, "oud")
    [old] = store.deliveries.claim(10)
    notice(store, 1, "nieuw")
    # a crash with the older one under way: at the restart it is not queued behind the newer
    store.deliveries.reset_inflight()
    state = lambda i: store.db.scalar("SELECT state FROM deliveries WHERE id=?", (i,))  # noqa: E731
    assert state(old.id) == "superseded"
    assert [x.text if hasattr(x, "text") else x.notice_id for x in store.deliveries.claim(10)] == [2]

    # the channel accepted the older one, a newer is queued, then the older fails later for a
    # passing reason (a webhook): it must not go out again after the newer
    notice(store, 2, "oud")
    [old2] = store.deliveries.claim(10)
    store.deliveries.mark_sent(old2.id, "wamid.old")
    notice(store, 2, "nieuw")
    assert store.deliveries.requeue("wamid.old", time.time(), "131000 later", 8) is None
    assert state(old2.id) == "sent"


# -- command line: failures are one line and a non-zero exit --------------------------------------
def run_cli(capsys, *argv):
    from bridge.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_store_file_that_is_not_a_database_is_a_one_line_error(tmp_path, capsys):
    from helpers import write_config

    cfg = write_config(tmp_path)
    (tmp_path / "bridge.db").write_bytes(b"this is not an SQLite database, just some text " * 20)
    code, out, err = run_cli(capsys, "status", "--config", str(cfg))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "bridge.db" in err, err


# -- config: every error names the key ---------------------------------------------------------------
def load_text(tmp_path, text):
    from bridge.config import load

    p = tmp_path / "config.toml"
    p.write_text(text)
    return load(p)


def test_settings_table_of_an_unknown_channel_names_that_table(tmp_path):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, '[channel]\ntype = "console"\n[channel.consol]\nquiet = true\n')
    assert str(e.value).startswith("channel.consol:"), e.value


@pytest.mark.parametrize("table,key", [("store", "path"), ("render", "templates_dir")])
def test_an_empty_required_path_is_a_config_error_naming_the_key(tmp_path, table, key):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, f'[{table}]\n{key} = ""\n')
    assert str(e.value).startswith(f"{table}.{key}:"), e.value


@pytest.mark.parametrize("key", ["tls_cert", "tls_key"])
async def test_a_missing_tls_file_is_a_config_error_naming_the_key(tmp_path, key):
    """It was "bridge: cannot start: No such file or directory": no key, no file."""
    from bridge.config import ConfigError
    from bridge.intake.smtp import SmtpIntake
    from bridge.mailroom import Mailroom

    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    files = {"tls_cert": "cert.pem", "tls_key": "key.pem", key: "missing.pem"}
    cfg = load_text(tmp_path, f'[store]\npath = "{tmp_path / "b.db"}"\n[smtp]\nport = 0\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in files.items()))
    store = Store.open(cfg.store.path)
    smtp = SmtpIntake(cfg.smtp, cfg.senders, Mailroom(store))
    try:
        with pytest.raises(ConfigError) as e:
            await smtp.start()
    finally:
        await smtp.stop()
        store.close()
    assert str(e.value).startswith(f"smtp.{key}:") and "missing.pem" in str(e.value), e.value


# -- review: a mail the code could not process -------------------------------------------------------
def test_a_mail_the_code_could_not_process_can_be_shown_and_approved(tmp_path, capsys, monkeypatch):
    """Such mails go to review so a human decides; show and approve must not crash on the
    same bug (they printed a traceback), and approve sends the fallback text."""
    import bridge.pipeline
    from helpers import read_outbox, sample, write_config

    def broken(mail, rules):
        raise ValueError("a parser bug")

    monkeypatch.setattr(bridge.pipeline, "extract_report", broken)
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


# -- store: a failed transaction reports its own error ---------------------------------------------
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


# -- pipeline: one mail processed by two processes at once (bridge ingest + the daemon) ----------
@pytest.mark.parametrize("outcome", ["queued", "review"])
def test_a_mail_processed_by_two_processes_at_once_keeps_its_first_outcome(tmp_path, monkeypatch,
                                                                           outcome):
    """`bridge ingest` stores a mail, then processes it; the daemon's processor may pick the
    same unprocessed mail meanwhile. The second must not overwrite the outcome (a queued
    mail reported as duplicate) nor add a second review item."""
    import bridge.pipeline
    from bridge.app import App
    from bridge.config import load
    from bridge.store import RawMail
    from helpers import sample_now, write_config

    cfg = load(write_config(tmp_path))
    cli, daemon = App(cfg), App(cfg)
    try:
        cli.store.subscribers.add("+31612345678", "console", "cli:test")
        data = sample_now("01")  # both processes decide as of the clock
        if outcome == "review":  # no ticket, no status (as in test_cli)
            data = data.replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
        mail_id = cli.store.mails.add(RawMail(data=data, source="cli"))
        real = bridge.pipeline.extract_report
        raced = []

        def racing(m, rules):
            if not raced:  # the daemon processes the mail while the CLI is extracting
                raced.append(None)
                raced[0] = daemon.pipeline.process(mail_id)
            return real(m, rules)

        monkeypatch.setattr(bridge.pipeline, "extract_report", racing)
        second = cli.pipeline.process(mail_id)
        assert raced[0].outcome == outcome
        stored = cli.store.mails.get(mail_id)
        assert stored.outcome == outcome and second.outcome == outcome, (stored, second)
        # The CLI reports what the daemon did: the same notice, queued for the same subscribers.
        assert (second.notice_id, second.queued) == (raced[0].notice_id, raced[0].queued)
        assert second.queued == (outcome == "queued") and second.earlier
        assert cli.store.db.scalar("SELECT count(*) FROM review") == (outcome == "review")
        assert cli.store.db.scalar("SELECT count(*) FROM notices") == (outcome == "queued")
    finally:
        cli.store.close()
        daemon.store.close()


# -- SIGTERM: stop intake, finish the sends under way, exit 0; nothing repeated after ----------------
def test_sigterm_mid_fanout_exits_0_and_a_restart_repeats_nothing(tmp_path):
    from collections import Counter

    from daemon import Daemon, bridge, wait_for
    from helpers import MAILS, free_port, now_of, read_outbox, write_config

    n = 300
    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port, rate=200)
    numbers = [f"+3162{i:07d}" for i in range(n)]
    bridge(cfg, "subscribers", "add", *numbers)
    assert "queued" in bridge(cfg, "ingest", str(MAILS / "01-storing-nieuw.eml"),
                              "--now", now_of(MAILS / "01-storing-nieuw.eml")).stdout
    d = Daemon(cfg, port=port).start()
    wait_for(lambda: len(read_outbox(tmp_path)) >= n // 4, what="a quarter of the fan-out")
    assert d.stop() == 0, d.log()
    first = len(read_outbox(tmp_path))
    assert first < n
    st = __import__("json").loads(bridge(cfg, "status", "--json").stdout)
    assert "sending" not in st["deliveries"], st
    assert st["deliveries"].get("sent", 0) == first, (st, first)
    d2 = Daemon(cfg, port=port).start()
    wait_for(lambda: len(read_outbox(tmp_path)) >= n, what="the rest of the fan-out")
    assert d2.stop() == 0, d2.log()
    got = Counter(m["to"] for m in read_outbox(tmp_path))
    assert set(got) == set(numbers) and max(got.values()) == 1


# -- unsubscribe while the dispatcher has the subscriber's delivery claimed ---------------------------
async def test_no_notice_goes_out_after_unsubscribe_from_a_claimed_batch(store):
    """remove() cancels the subscriber's 'sending' deliveries, but a claimed delivery not yet
    started (waiting for a concurrency slot or the rate limit) was sent anyway."""
    import dataclasses

    a, b = "+31611111111", "+31622222222"
    for n in (a, b):
        store.subscribers.add(n, "console", "cli:test")
    notice(store, 1, "melding")
    ch = Scripted(latency=0.2)
    d = Dispatcher(dataclasses.replace(CFG, concurrency=1), store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: ch.calls)  # a under way, b claimed and waiting
        assert store.subscribers.remove(b)  # STOP from b
        await wait_until(lambda: store.deliveries.pending() == 0)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        d.release()
    assert [m.to for m in ch.calls] == [a]
    assert store.deliveries.counts() == {"sent": 1, "cancelled": 1}


# -- erasure: the STOP confirmation fails ------------------------------------------------------------
async def test_failed_stop_confirmation_leaves_no_number_in_the_database_files(tmp_path):
    from bridge.app import App
    from bridge.config import load
    from bridge.core.models import InboundMessage
    from helpers import write_config

    number = "+31612345678"
    app = App(load(write_config(tmp_path)))

    def msg(text, i):
        return InboundMessage(channel="console", sender=number, text=text, message_id=f"m{i}",
                              received_at=datetime.now(timezone.utc))

    ch = Scripted()
    d = Dispatcher(DISPATCH, app.store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        app.inbound.handle(msg("aanmelden", 1))
        d.wake()
        assert await wait_until(lambda: app.store.deliveries.counts() == {"sent": 1})
        ch.script[number] = [SendResult("failed", error="131026 undeliverable")]
        app.inbound.handle(msg("STOP", 2))
        d.wake()
        assert await wait_until(lambda: app.store.deliveries.counts().get("failed") == 1)
        # while the daemon runs on, the number leaves the files soon (not at the next stop)
        def clean():
            return not [f.name for f in tmp_path.glob("bridge.db*")
                        if b"31612345678" in f.read_bytes()]
        assert await wait_until(clean, timeout=2)
    finally:
        stop.set()
        await task
        d.release()
        app.store.close()
