"""The supervisor: a crashing task is restarted; one that keeps crashing stops the daemon
the ordered way (sends under way finish) with exit status 1."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from helpers import Scripted, fan_out_notice, wait_until

A = "+31611111111"


def queue_notice(app, text="melding"):
    app.store.subscribers.add(A, "console", "cli:test")
    fan_out_notice(app.store, None, text)


async def test_a_crashed_task_is_restarted_and_the_daemon_keeps_running(app, monkeypatch, caplog):
    app.restart_delay = lambda n: 0.01
    ch = app._channel = Scripted()
    runs = []

    async def upkeep_crashing_once(stop):
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("boom in upkeep")
        await stop.wait()

    monkeypatch.setattr(app, "_upkeep", upkeep_crashing_once)
    caplog.set_level(logging.INFO, "bridge")
    task = asyncio.create_task(app.run())
    try:
        assert await wait_until(lambda: len(runs) == 2)
        queue_notice(app)
        app.wake_dispatcher()
        assert await wait_until(lambda: ch.calls), "the daemon still sends after the restart"
    finally:
        app.request_stop()
        code = await asyncio.wait_for(task, 10)
    assert code == 0
    assert "task upkeep crashed (1 in" in caplog.text
    assert "boom in upkeep" in caplog.text  # the traceback is logged


async def test_a_task_that_keeps_crashing_stops_the_daemon_after_the_sends_under_way(
        app, monkeypatch, caplog):
    app.restart_delay = lambda n: 0.0
    ch = app._channel = Scripted(latency=0.5)
    queue_notice(app)
    crashes = []

    async def upkeep_crashing_during_a_send(stop):
        await wait_until(lambda: ch.calls, timeout=10)
        crashes.append(1)
        raise OSError("disk gone")

    monkeypatch.setattr(app, "_upkeep", upkeep_crashing_during_a_send)
    caplog.set_level(logging.INFO, "bridge")
    code = await asyncio.wait_for(app.run(), 10)

    assert code == 1
    assert len(crashes) == app.RESTART_LIMIT + 1
    assert "task upkeep keeps crashing: OSError: disk gone" in caplog.text
    # the send under way when the limit was hit finished and was recorded: nothing to repeat
    from bridge.store import Store

    store = Store.open(app.cfg.store.path)
    try:
        assert store.deliveries.counts() == {"sent": 1}
    finally:
        store.close()


async def test_mails_are_parsed_off_the_event_loop_and_a_stop_ends_a_backlog_early(
        app, monkeypatch):
    """The processor takes one mail at a time, parses it in a worker thread (a big mail
    must not stall SMTP or sends), and honours a stop between two mails: the rest stays
    stored, processed after the restart."""
    import threading

    import bridge.analysis
    from bridge.store import RawMail
    from helpers import sample

    app._channel = Scripted()
    for _ in range(5):
        app.store.mails.add(RawMail(sample("01"), "cli"))
    threads = []
    real_parse = bridge.analysis.parse_mail

    def parse_and_stop(*a, **kw):
        threads.append(threading.current_thread())
        app.request_stop()  # while the first mail is in hand
        return real_parse(*a, **kw)

    monkeypatch.setattr(bridge.analysis, "parse_mail", parse_and_stop)
    code = await asyncio.wait_for(app.run(), 10)
    assert code == 0
    assert threads and all(t is not threading.main_thread() for t in threads)
    from bridge.store import Store

    store = Store.open(app.cfg.store.path)
    try:
        assert len(store.mails.unprocessed(100)) == 4  # the mail in hand was finished
    finally:
        store.close()


# --- a full store pauses, it does not crash (issue 15) ------------------------------------------


async def test_a_full_store_pauses_the_processor_and_dispatcher_instead_of_crashing(app, caplog):
    """A full disk made the processor crash six times and the daemon exit 1 after ~60 s
    (each store error counted as a crash, with a traceback). Now: no crash counted, one
    WARNING, probes with backoff, and the mail is processed and sent once space returns."""
    from bridge.store import RawMail
    from helpers import sample_now

    app.store_health.probe_first = app.store_health.probe_max = 0.02
    probes = []
    real_probe = app.store_health._probe

    def counting_probe():
        probes.append(1)
        return real_probe()

    app.store_health._probe = counting_probe
    ch = app._channel = Scripted()
    app.store.subscribers.add(A, "console", "cli:test")
    mail_id = app.store.mails.add(RawMail(data=sample_now("01"), source="smtp"))  # not processed
    app.store.db.execute("VACUUM")  # no free pages left inside the file
    pages = app.store.db.scalar("PRAGMA page_count")
    app.store.db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
    # A notice's rows are small and may still fit in the pages the store has; a real
    # notice often does not. Each processing first writes as much as a big notice would.
    real_process = app.pipeline.process_async

    async def process_a_big_notice(mail_id):
        with app.store.tx():
            app.store.db.execute("INSERT INTO state VALUES ('big', zeroblob(50000))")
            app.store.db.execute("DELETE FROM state WHERE key = 'big'")
        return await real_process(mail_id)

    app.pipeline.process_async = process_a_big_notice
    caplog.set_level(logging.INFO, "bridge")
    task = asyncio.create_task(app.run())
    try:
        await asyncio.sleep(0.2)
        # a mail arriving while full is refused (the SMTP intake answers 451 on this)
        from bridge.port import StoreUnavailable
        with pytest.raises(StoreUnavailable) as refused:
            app.mailroom.store_mail(RawMail(data=sample_now("02") + b"x" * 20000,
                                            source="smtp"))
        assert refused.value.problem == "database or disk is full"
        assert await wait_until(lambda: len(probes) > 3 * app.RESTART_LIMIT, timeout=10)
        assert app.fatal is None and not task.done()
        assert app.store.mails.get(mail_id).outcome is None and not ch.calls
        assert app.health().store_problem == "database or disk is full"
        app.store.db.execute("PRAGMA max_page_count=1073741823")  # space returns
        assert await wait_until(lambda: ch.calls, timeout=10), "resumed by itself"
        assert app.health().store_problem is None
    finally:
        app.request_stop()
        code = await asyncio.wait_for(task, 10)
    assert code == 0
    assert app.store is not None and len(ch.calls) == 1
    assert "crashed" not in caplog.text and "Traceback" not in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("store: cannot write " + str(app.cfg.store.path)), warnings
    # how long it was full (~0.4 s) is rounded to whole seconds: 0 s, or 1 s on a busy machine
    assert re.match(r"store: writable again after \d+ s \(database or disk is full\)",
                    warnings[1]), warnings
    assert "refused meanwhile: 1 by smtp" in warnings[1]


async def test_a_full_store_pauses_the_dispatcher_mid_fan_out_and_nothing_goes_twice(
        app, caplog):
    """The dispatcher's claim fails on a full store in the middle of a fan-out: the sends
    under way finish and are recorded, the claimed rest goes back to the queue, and the
    dispatcher waits (no crash counted, however long) and sends the rest once after."""
    app.store_health.probe_first = app.store_health.probe_max = 0.02
    ch = app._channel = Scripted(latency=0.05)
    for i in range(20):
        app.store.subscribers.add(f"+316110000{i:02d}", "console", "cli:test")
    fan_out_notice(app.store, None, "melding")
    real_claim = app.store.deliveries.claim
    full = {"on": False}

    def claim(limit):
        if full["on"]:  # a claim's write needs a page more than the full store has
            with app.store.tx():
                app.store.db.execute("INSERT INTO state VALUES ('big', zeroblob(50000))")
                app.store.db.execute("DELETE FROM state WHERE key = 'big'")
        return real_claim(min(limit, 2))  # two at a time: the fan-out is still going

    app.store.deliveries.claim = claim
    caplog.set_level(logging.INFO, "bridge")
    task = asyncio.create_task(app.run())
    try:
        assert await wait_until(lambda: len(ch.calls) >= 4, timeout=10)
        app.store.db.execute("VACUUM")
        app.store.db.execute(
            f"PRAGMA max_page_count={app.store.db.scalar('PRAGMA page_count')}")
        full["on"] = True
        assert await wait_until(lambda: app.store_health.problem is not None, timeout=10)
        paused_at = len(ch.calls)
        await asyncio.sleep(1.0)  # many probes, each one refused
        assert len(ch.calls) == paused_at and app.fatal is None and not task.done()
        app.store.db.execute("PRAGMA max_page_count=1073741823")  # space returns
        full["on"] = False
        assert await wait_until(lambda: len(ch.calls) >= 20, timeout=10)
        await asyncio.sleep(0.3)
    finally:
        app.request_stop()
        code = await asyncio.wait_for(task, 10)
    assert code == 0
    sent_to = [m.to for m in ch.calls]
    assert len(sent_to) == 20 and len(set(sent_to)) == 20  # each once
    assert "crashed" not in caplog.text and "Traceback" not in caplog.text


async def test_a_store_error_that_is_no_full_disk_still_counts_as_a_crash(app, monkeypatch,
                                                                          caplog):
    """A task that keeps failing on a store error the store's health would call a write
    problem (here a disk I/O error reading one page) while the store takes writes: it was
    "paused" and resumed at once, over and over, never counted, the daemon never down.
    Now the probe write decides: it commits, so it is a crash, and the sixth brings the
    daemon down (exit 1). A full disk stays a pause even when a probe fits (a nearly full
    disk refuses a big mail: test_a_full_store_pauses_...)."""
    import sqlite3

    app.restart_delay = lambda n: 0.0
    app.store_health.probe_first = app.store_health.probe_max = 0.01
    app._channel = Scripted()
    runs = []

    async def processor_reading_a_bad_page(stop):
        runs.append(1)
        e = sqlite3.OperationalError("disk I/O error")
        e.sqlite_errorcode = sqlite3.SQLITE_IOERR | (1 << 8)  # SQLITE_IOERR_READ
        raise e

    monkeypatch.setattr(app, "_processor", processor_reading_a_bad_page)
    caplog.set_level(logging.INFO, "bridge")
    task = asyncio.create_task(app.run())
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:
        app.request_stop()
        await asyncio.wait_for(task, 10)
    assert done, f"still running after {len(runs)} failures: paused for ever"
    assert task.result() == 1 and len(runs) == app.RESTART_LIMIT + 1
    assert "task processor keeps crashing: OperationalError: disk I/O error" in caplog.text


def test_the_store_health_warns_once_a_minute_not_per_failure(caplog):
    """Ten minutes of a full store with a failure every second: ten WARNING lines (each with
    how long and what was refused), then one when writes work again."""
    from bridge.storehealth import StoreHealth

    clock = [0.0]
    health = StoreHealth(lambda: None, path="var/bridge.db", clock=lambda: clock[0])
    caplog.set_level(logging.INFO, "bridge.store")
    for second in range(600):
        clock[0] = float(second)
        health.unwritable("database or disk is full", "smtp" if second % 2 else None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 10, warnings
    assert warnings[0].startswith("store: cannot write var/bridge.db for 0 s: database or "
                                  "disk is full; ")
    assert "for 540 s" in warnings[-1] and "refused meanwhile: 270 by smtp" in warnings[-1]
    assert health.problem == "database or disk is full" and health.episodes == 1
    clock[0] = 600.0
    health.wrote()
    last = caplog.records[-1]
    assert last.levelno == logging.WARNING and last.getMessage().startswith(
        "store: writable again after 600 s (database or disk is full)")
    assert health.problem is None and health.since is None


def test_a_daemon_stays_up_through_a_full_disk_and_loses_nothing(tmp_path):
    """The real daemon (``bridge run``) with its store full for 90 s, longer than the ~60 s
    after which it used to exit 1: it stays up, SMTP answers 451, the log has no wall of
    errors, and after space returns every accepted mail is processed once and each notice
    delivered once to each subscriber (tests/diskfull.py; bench/disk_full.py runs it for
    5 minutes and prints the figures)."""
    import diskfull

    f = diskfull.run(tmp_path, full_seconds=90, every=3)
    assert f.alive_throughout and f.exit_code == 0, f.log
    assert f.answers[451] >= 25, f.summary()
    assert f.errors == 0 and f.tracebacks == 0, f.log
    assert f.warnings <= 5, f.log  # one a minute, and one when writes work again
    assert f.mails == f.processed and f.duplicates == 0 and f.missing == 0, f.summary()
    assert f.drain_seconds is not None, f.summary()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_a_stop_while_the_store_is_full_sends_nothing_twice(tmp_path, sig):
    """The real daemon in the middle of a fan-out to 30 subscribers; the store fills so
    that no write commits (not even marking a delivery sent); two more sends go out; the
    daemon is stopped (SIGTERM) or killed (SIGKILL) while the store is still full; space
    returns and a new daemon starts. Every subscriber has the notice exactly once: the
    results the store refused were kept in the send journal and recorded at the start,
    the claimed sends not yet made went out after it (tests/diskfull.py). Before the
    journal, the sends since the last commit (3 of 8 here) went out again."""
    import signal

    import diskfull

    f = diskfull.stop_while_full(tmp_path, getattr(signal, sig))
    assert f.sent_before_stop >= f.sent_before_full + 2, f.summary()  # sent while full
    assert f.drained and f.second_exit == 0, f.log
    assert f.duplicates == 0 and f.missing == 0, f.summary()
    assert f.journaled >= 2, f.summary()  # the two sent while full, at least
    assert f.errors == 0 and f.tracebacks == 0, f.log


async def test_a_start_that_fails_undoes_what_did_start(tmp_path):
    """The web server binds, then the SMTP port is in use: the daemon does not start, and
    it leaves no listener and no dispatcher lock behind (for an embedding process)."""
    import socket

    from bridge.app import App
    from bridge.config import load
    from bridge.outbox import Dispatcher
    from helpers import free_port, write_config

    web_port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        smtp_port = busy.getsockname()[1]
        cfg = load(write_config(tmp_path, f"[web]\nport = {web_port}\nwebhook = false\n",
                                smtp=True, smtp_port=smtp_port))
        app = App(cfg)
        with pytest.raises(OSError):
            await app.run()
    with socket.socket() as s:
        s.bind(("127.0.0.1", web_port))  # free again
    d = Dispatcher(cfg.dispatch, app.store, Scripted())
    d.acquire()  # the lock was released
    d.release()
    app.store.close()


# -- the parts: one declared protocol (bridge/part.py), asked for nothing else ------------------
def test_every_part_the_daemon_builds_is_a_part(tmp_path, monkeypatch):
    """The optional parts ([imap], [web], [mail_out]) and the SMTP intake implement
    bridge.part.Part (start, run(stop), stop, describe, background), so the supervisor uses
    them without probing for members."""
    import inspect

    from helpers import write_config

    from bridge.app import App
    from bridge.config import load
    from bridge.intake.smtp import SmtpIntake
    from bridge.part import BasePart, Part

    monkeypatch.setenv("T_PART_IMAP", "x")
    extra = ('[web]\nport = 0\nwebhook = false\n'
             '[imap]\nhost = "127.0.0.1"\ntls = "none"\nuser = "u"\npassword_env = "T_PART_IMAP"\n'
             '[mail_out]\nhost = "127.0.0.1"\nfrom = "bridge@cbgconnect.example"\n'
             'operators = ["ops@cbgconnect.example"]\n')
    app = App(load(write_config(tmp_path, extra=extra)))
    try:
        import importlib

        from bridge.config import OPTIONAL_PARTS

        built = {name: importlib.import_module(OPTIONAL_PARTS[name].split(":")[0]).build(s, app)
                 for name, s in app.cfg.parts().items()}
        built["smtp"] = SmtpIntake(app.cfg.smtp, app.cfg.senders, app.mailroom)
        assert set(built) == {"imap", "web", "mail_out", "smtp"}
        for name, part in built.items():
            assert isinstance(part, BasePart), name
            for member in ("start", "run", "stop", "describe"):
                assert inspect.iscoroutinefunction(getattr(part, member)) == (member != "describe")
            assert list(inspect.signature(part.run).parameters) == ["stop"], name
            assert isinstance(part.describe(), dict)
        assert {n: p.background for n, p in built.items()} == {
            "imap": False, "web": True, "mail_out": False, "smtp": False}
        declared = {n for n in dir(Part) if not n.startswith("_")} | set(Part.__annotations__)
        assert declared == {"background", "start", "run", "stop", "describe"}
    finally:
        app.store.close()


def test_the_supervisor_and_bridge_check_do_not_probe_with_getattr():
    """app.py asks parts and channels only for declared members; checks.py reads config
    dataclasses through their declared fields (dataclasses.fields), not by guessing names."""
    import ast
    from pathlib import Path

    import bridge

    root = Path(bridge.__file__).parent
    for name, allowed in (("app.py", 0), ("checks.py", 1)):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr")]
        # checks.py: the one getattr reads a field named by dataclasses.fields()
        assert len(calls) == allowed, (name, [ast.unparse(c) for c in calls])
        for c in calls:
            assert ast.unparse(c.args[1]) == "f.name", ast.unparse(c)


# -- the daemon process: the garbage collector -----------------------------------------------------
def test_tune_gc_freezes_start_up_and_raises_the_young_threshold():
    """Run in a fresh interpreter: freezing and thresholds are process-wide."""
    import subprocess
    import sys

    code = ("import gc; from bridge.runtime import tune_gc, YOUNG_THRESHOLD; "
            "before = gc.get_threshold(); tune_gc(); tune_gc(); after = gc.get_threshold(); "
            "print(before[0] < YOUNG_THRESHOLD, after[0] == YOUNG_THRESHOLD, "
            "after[1:] == before[1:], gc.get_freeze_count() > 1000, gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True"] * 5


def test_bridge_run_tunes_the_garbage_collector_once_its_parts_are_built(tmp_path,
                                                                         monkeypatch):
    from bridge import cli, logs, runtime
    from bridge.app import App
    from helpers import write_config

    calls = []
    monkeypatch.setattr(logs, "setup", lambda *a, **k: None)  # keep pytest's log handlers
    monkeypatch.setattr(runtime, "tune_gc", lambda: calls.append("tune_gc"))

    async def run(self):
        calls.append("run")
        return 0

    monkeypatch.setattr(App, "run", run)
    monkeypatch.setattr(App, "__init__", lambda self, cfg: calls.append("build"))
    assert cli.main(["--config", str(write_config(tmp_path)), "run"]) == 0
    assert calls == ["build", "tune_gc", "run"]
