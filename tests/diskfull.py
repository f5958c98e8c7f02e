"""A full disk under a real daemon (``bridge run``), without root: the scenario of
``tests/test_supervisor.py`` and ``bench/disk_full.py``.

The "disk" is the store's SQLite page cap (``PRAGMA max_page_count``), set from outside
through the store's test hook: ``BRIDGE_FAULT_PAGE_CAP`` names a file the daemon reads
before each write transaction (``full``: no page beyond the current size; empty: no cap;
see :mod:`bridge.store.db`). Writing ``full`` fills the disk, emptying it frees space,
while the daemon runs.

The scenario: two subscribers; one mail processed before; then the store is full for
``full_seconds`` while a mail arrives over SMTP every ``every`` seconds (each answered 250
or 451) and the daemon must stay up; then space returns, the mails answered 451 are sent
again (as the sender's MTA would) and every accepted mail must be processed once and each
notice delivered once to each subscriber (the console channel's ``outbox.jsonl``).

:func:`stop_while_full`: the daemon stopped (SIGTERM) or killed while the store is still
full in the middle of a fan-out, then started again once space returned: the sends the
channel accepted but the store could not record must not go out again.
"""

from __future__ import annotations

import re
import signal
import smtplib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from daemon import Daemon, bridge
from helpers import free_port, read_outbox, sample_now, write_config

KPN = "storingsmeldingen@wholesale.kpn.example"
NUMBERS = ["+31611111111", "+31622222222"]
# a KPN mail of ~10 KB, as their HTML mails are: more than a page, so a full store refuses it
PAD = ("\r\n\r\n" + "Dit bericht is uitsluitend bestemd voor de geadresseerde.\r\n" * 150
       ).encode()


def outage_mail(k: int) -> bytes:
    """Sample 01 dated now, as incident INC0000123456xx number ``k`` (its own ticket and
    Message-ID: a new notice each)."""
    return sample_now("01").replace(b"12345678", str(12345678 + k).encode()) + PAD


@dataclass
class Figures:
    full_seconds: float = 0.0
    answers: Counter = field(default_factory=Counter)  # SMTP code -> count, while full
    alive_throughout: bool = True
    exit_code: int | None = None
    errors: int = 0  # ERROR and CRITICAL log lines
    warnings: int = 0
    tracebacks: int = 0
    # space back -> the mail accepted while full processed (the processor resumed by itself)
    resume_seconds: float | None = None
    drain_seconds: float | None = None  # space back -> everything processed and delivered
    mails: int = 0  # distinct mails accepted (each a notice)
    processed: int = 0  # mails with an outcome
    notices_delivered: int = 0  # (notice, subscriber) pairs in the outbox
    duplicates: int = 0  # outbox lines beyond one per (notice, subscriber)
    missing: int = 0  # (notice, subscriber) pairs never delivered
    log: str = ""

    def summary(self) -> str:
        return (f"full for {self.full_seconds / 60:.1f} min; SMTP answers while full: "
                f"{dict(sorted(self.answers.items()))}; daemon alive throughout: "
                f"{self.alive_throughout}; ERROR lines: {self.errors}, WARNING lines: "
                f"{self.warnings}, tracebacks: {self.tracebacks}; processor resumed "
                f"{self.resume_seconds} s after space returned (None: nothing was waiting), "
                f"everything processed and delivered after {self.drain_seconds} s; "
                f"mails accepted: {self.mails}, processed: {self.processed}; notices "
                f"delivered: {self.notices_delivered}, duplicates: {self.duplicates}, "
                f"missing: {self.missing}; exit code {self.exit_code}")


def _send(port: int, data: bytes) -> int:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.sendmail(KPN, ["noc@localhost"], data)
        return 250
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    except smtplib.SMTPResponseException as e:
        return e.smtp_code


def _wait(cond, timeout: float, step: float = 0.2) -> bool:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return True
        time.sleep(step)
    return False


def _outcomes(db_path: Path) -> tuple[int, int]:
    db = sqlite3.connect(db_path, timeout=10)
    try:
        total, done = db.execute(
            "SELECT count(*), count(outcome) FROM raw_mails").fetchone()
    finally:
        db.close()
    return total, done


def run(tmp: Path, full_seconds: float, every: float = 2.0,
        progress=None) -> Figures:
    """Run the scenario in ``tmp`` (a fresh folder); returns what was seen."""
    port = free_port()
    cfg = write_config(tmp, smtp=True, smtp_port=port)
    cap = tmp / "page_cap"
    cap.write_text("")
    bridge(cfg, "subscribers", "add", *NUMBERS)
    d = Daemon(cfg, port=port, env={"BRIDGE_FAULT_PAGE_CAP": str(cap)}).start()
    f = Figures()
    k = 0
    try:
        assert _send(port, outage_mail(k)) == 250
        accepted = {k}
        assert _wait(lambda: len(read_outbox(tmp)) >= 2, 30), d.log()

        cap.write_text("full")  # the disk is full from the next write transaction on
        refused: list[int] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < full_seconds:
            k += 1
            code = _send(port, outage_mail(k))
            f.answers[code] += 1
            (accepted.add(k) if code == 250 else refused.append(k))
            if not d.alive():
                f.alive_throughout = False
                break
            if progress:
                progress(time.monotonic() - t0, f.answers)
            time.sleep(every)
        f.full_seconds = time.monotonic() - t0

        cap.write_text("")  # space returns
        t_free = time.monotonic()
        total, processed = _outcomes(tmp / "bridge.db")
        if processed < total:  # a mail accepted but not processed: the processor resumes alone
            if _wait(lambda: _outcomes(tmp / "bridge.db")[1] == total, 60, step=0.1):
                f.resume_seconds = round(time.monotonic() - t_free, 1)
        for k in refused:  # the sender's MTA tries again
            if _send(port, outage_mail(k)) == 250:
                accepted.add(k)
        f.mails = len(accepted)

        def done() -> bool:
            total, processed = _outcomes(tmp / "bridge.db")
            return processed == total and len(read_outbox(tmp)) >= len(NUMBERS) * len(accepted)

        if _wait(done, 120):
            f.drain_seconds = round(time.monotonic() - t_free, 1)
        time.sleep(1.0)  # anything sent twice would show now
    finally:
        f.exit_code = d.stop() if d.alive() else d.proc.returncode
    f.processed = _outcomes(tmp / "bridge.db")[1]
    lines = read_outbox(tmp)
    pairs = Counter((m["notice_id"], m["to"]) for m in lines)
    f.notices_delivered = len(pairs)
    f.duplicates = sum(n - 1 for n in pairs.values())
    f.missing = len(NUMBERS) * f.mails - len(pairs)
    f.log = d.log()
    log_lines = f.log.splitlines()
    f.errors = sum(1 for line in log_lines if " ERROR " in line or " CRITICAL " in line)
    f.warnings = sum(1 for line in log_lines if " WARNING " in line)
    f.tracebacks = f.log.count("Traceback (most recent call last)")
    return f


# -- a stop while the store is still full ----------------------------------------------------------
@dataclass
class StopFigures:
    """What :func:`stop_while_full` saw: the notice's sends per recipient over both runs."""

    subscribers: int = 0
    sent_before_full: int = 0  # outbox lines when the store filled
    sent_before_stop: int = 0  # ... when the daemon was stopped (still full)
    first_exit: int | None = None  # the first daemon's exit status (-9: SIGKILL)
    second_exit: int | None = None
    drained: bool = False  # every subscriber had the notice after the restart
    duplicates: int = 0  # sends beyond one per recipient
    missing: int = 0  # recipients who never got it
    journaled: int = 0  # results the restart recorded from the send journal (its log line)
    sent_again_line: int = 0  # "N sends were under way at the last stop"
    errors: int = 0  # ERROR and CRITICAL log lines
    tracebacks: int = 0
    log: str = ""

    def summary(self) -> str:
        return (f"{self.subscribers} subscribers; sent {self.sent_before_full} before the "
                f"store filled, {self.sent_before_stop} before the stop (exit "
                f"{self.first_exit}); after the restart (exit {self.second_exit}): "
                f"drained {self.drained}, sent twice {self.duplicates}, missing "
                f"{self.missing}; recorded from the send journal {self.journaled}, put back "
                f"as under way {self.sent_again_line}; ERROR lines {self.errors}, "
                f"tracebacks {self.tracebacks}")


def stop_while_full(tmp: Path, sig: int = signal.SIGTERM, subscribers: int = 30,
                    rate: float = 10.0, after: int = 2) -> StopFigures:
    """A fan-out of one notice to ``subscribers`` at ``rate``/s (half a second of sends
    claimed at a time); six sends in (the first of the second claim), the store refuses
    every write (the hook's ``refuse``: a disk without a free block, where even marking a
    delivery sent fails); ``after`` sends later, with the store still full and the rest of
    that claim not sent yet, the daemon gets ``sig`` (SIGTERM or SIGKILL). Then space
    returns, a new daemon starts and sends the rest. Counts each recipient's copies in
    the console channel's ``outbox.jsonl``."""
    port = free_port()
    cfg = write_config(tmp, smtp=True, smtp_port=port, rate=rate)
    cap = tmp / "page_cap"
    cap.write_text("")
    numbers = [f"+316{20000000 + i:08d}" for i in range(subscribers)]
    bridge(cfg, "subscribers", "add", *numbers)
    env = {"BRIDGE_FAULT_PAGE_CAP": str(cap)}
    f = StopFigures(subscribers=subscribers)
    d = Daemon(cfg, port=port, env=env).start()
    try:
        assert _send(port, outage_mail(0)) == 250
        assert _wait(lambda: len(read_outbox(tmp)) >= 6, 30, step=0.01), d.log()
        cap.write_text("refuse")  # full: no write transaction commits from now on
        f.sent_before_full = len(read_outbox(tmp))
        # the sends claimed go on; their results cannot be recorded
        _wait(lambda: len(read_outbox(tmp)) >= f.sent_before_full + after, 10, step=0.005)
        f.sent_before_stop = len(read_outbox(tmp))
        assert d.alive(), d.log()
    finally:
        if d.alive():
            if sig == signal.SIGKILL:
                d.kill()
                f.first_exit = d.proc.returncode
            else:
                f.first_exit = d.stop()
        cap.write_text("")  # space returns while it is stopped
    d = Daemon(cfg, port=port, env=env).start()
    try:
        f.drained = _wait(lambda: len({m["to"] for m in read_outbox(tmp)}) >= subscribers
                          and _open_deliveries(tmp / "bridge.db") == 0, 60)
        time.sleep(1.0)  # anything sent twice would show now
    finally:
        f.second_exit = d.stop() if d.alive() else d.proc.returncode
    copies = Counter(m["to"] for m in read_outbox(tmp))
    f.duplicates = sum(n - 1 for n in copies.values())
    f.missing = len(set(numbers) - set(copies))
    f.log = d.log()
    for line in f.log.splitlines():
        if " ERROR " in line or " CRITICAL " in line:
            f.errors += 1
        if m := re.search(r"recorded (\d+) send results kept in the send journal", line):
            f.journaled += int(m.group(1))
        if m := re.search(r"(\d+) sends were under way at the last stop", line):
            f.sent_again_line += int(m.group(1))
    f.tracebacks = f.log.count("Traceback (most recent call last)")
    return f


def _open_deliveries(db_path: Path) -> int:
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return db.execute("SELECT count(*) FROM deliveries WHERE state IN"
                          " ('pending', 'sending')").fetchone()[0]
    finally:
        db.close()
