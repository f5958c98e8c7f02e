"""IMAP latency benchmark: APPEND to the folder -> channel send, against a private Dovecot.

    .venv/bin/python bench/imap_latency.py [--mails 50] [--burst]

Starts Dovecot (tests/dovecot.py: own config, port, maildir; installs dovecot-imapd when
missing) and runs the App in this process (IMAP intake in IDLE mode, processor, dispatcher,
console channel writing to a file). A thread APPENDs ``--mails`` outage mails with distinct
tickets with imaplib, one at a time (the next once the previous reached the channel, as KPN
sends them), or all at once with ``--burst``. For each mail it measures from the moment the
APPEND command is sent to the channel's send(), and splits that at the commit of the raw
mail and at the notice being queued. Prints p50/p90/p99/max. Target: p50 < 1 s.

Dovecot delays IDLE notifications by about half a second to batch changes (its mailbox
watch), which is most of the figure; the bridge's own part is a few milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dovecot import Dovecot  # noqa: E402
from imap_helpers import PW_ENV, imap_config, storing  # noqa: E402

from bridge.app import App  # noqa: E402
from bridge.config import load  # noqa: E402


def appender(dc: Dovecot, n: int, appended: dict[int, tuple[float, float]], received: dict,
             burst: bool) -> None:
    c = dc.client()
    try:
        for i in range(n):
            data = storing(i)
            appended[i] = (time.perf_counter(), time.time())
            dc.append(data, client=c)
            if not burst:
                t = time.monotonic()
                while i not in received and time.monotonic() - t < 30:
                    time.sleep(0.002)
                time.sleep(0.05)
    finally:
        c.logout()


async def bench(n: int, burst: bool) -> tuple[list[float], list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        dc = Dovecot().start()
        try:
            os.environ[PW_ENV] = dc.password
            app = App(load(imap_config(tmp_path, dc, timeout=10, idle_renew=300)))
            app.store.subscribers.add("+31612345678", "console", "cli:bench")
            appended: dict[int, tuple[float, float]] = {}
            received: dict[int, float] = {}
            stored: dict[int, tuple[float, float]] = {}

            def on_send(delivery, result, latency):
                row = app.store.db.one(
                    "SELECT m.message_id, m.received_at, m.processed_at FROM notices n"
                    " JOIN raw_mails m ON m.id = n.raw_mail_id WHERE n.id = ?",
                    (delivery.notice_id,))
                i = int(row[0].split(".")[0].removeprefix("imap-test-"))
                received[i] = time.perf_counter() - latency  # when send() was called
                stored[i] = (row[1], row[2])

            app.send_listeners.append(on_send)
            runner = asyncio.create_task(app.run())
            t = time.monotonic()
            while not app.parts.get("imap") or not app.parts["imap"].describe()["idling"]:
                if time.monotonic() - t > 20:
                    raise TimeoutError("the IMAP intake did not reach IDLE")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(appender, dc, n, appended, received, burst)
            t = time.monotonic()
            while len(received) < n:
                if time.monotonic() - t > 60:
                    raise TimeoutError(f"only {len(received)} of {n} mails reached the channel")
                await asyncio.sleep(0.005)
            os.kill(os.getpid(), signal.SIGTERM)
            await runner
        finally:
            dc.cleanup()
        total = [received[i] - appended[i][0] for i in range(n)]
        to_store = [stored[i][0] - appended[i][1] for i in range(n)]
        to_queue = [stored[i][1] - appended[i][1] for i in range(n)]
        return total, to_store, to_queue


def _fmt(lat: list[float]) -> str:
    lat = sorted(lat)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return (f"p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
            f"max {lat[-1] * 1000:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mails", type=int, default=50)
    p.add_argument("--burst", action="store_true", help="APPEND all mails at once")
    args = p.parse_args()
    total, to_store, to_queue = asyncio.run(bench(args.mails, args.burst))
    how = "all at once" if args.burst else "one at a time"
    print(f"IMAP APPEND -> channel send, {len(total)} mails {how} (Dovecot, IDLE)")
    print(f"  APPEND -> raw mail committed:  {_fmt(to_store)}")
    print(f"  APPEND -> notice queued:       {_fmt(to_queue)}")
    print(f"  APPEND -> channel send:        {_fmt(total)}")
    if args.burst:
        print("  (one subscriber: the dispatcher sends to one recipient one message at a time,"
              " so the channel figure of a burst measures that pacing, not the intake)")


if __name__ == "__main__":
    main()
