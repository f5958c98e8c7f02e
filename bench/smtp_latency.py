"""SMTP latency benchmark: end of DATA -> channel send, through the real daemon parts.

    .venv/bin/python bench/smtp_latency.py [--mails 200]

Runs the App (SMTP intake on a free port, processor, dispatcher, console channel writing
to a file) in this process, sends ``--mails`` outage mails with distinct tickets with
smtplib from a thread, and measures for each the time from the client sending the end of
DATA to the channel's send. Prints p50/p90/p99/max. Target: p50 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import free_port, sample_now, write_config  # noqa: E402

from bridge.app import App  # noqa: E402
from bridge.config import load  # noqa: E402


_BASE: list[str] = []


def mail(i: int) -> bytes:
    """Sample 01 with its own ticket and Message-ID, dated when the run starts (the bridge
    sends a mail older than review.max_mail_age_hours to review, not to the channel)."""
    if not _BASE:
        _BASE.append(sample_now("01").decode())
    raw = _BASE[0]
    return (raw.replace("INC000012345678", f"INC{900000000 + i:09d}")
               .replace("<inc12345678.1@", f"<bench{i}.1@")).encode()


def sender(port: int, n: int, sent_at: dict[int, float], done: asyncio.Event,
           loop: asyncio.AbstractEventLoop) -> None:
    s = smtplib.SMTP("127.0.0.1", port)
    s.ehlo()
    for i in range(n):
        data = mail(i)
        s.mail("storingsmeldingen@wholesale.kpn.example")
        s.rcpt("noc@localhost")
        # smtplib.data sends the body and the final "." and waits for the 250: time the
        # end of DATA as the moment just before that call returns to the wire.
        sent_at[i] = time.perf_counter()
        code, _ = s.data(data)
        assert code == 250, code
        time.sleep(0.01)  # one mail at a time, as KPN sends them
    s.quit()
    loop.call_soon_threadsafe(done.set)


async def bench(n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = load(write_config(Path(tmp), smtp=True, smtp_port=port))
        app = App(cfg)
        app.store.subscribers.add("+31612345678", "console", "cli:bench")
        sent_at: dict[int, float] = {}
        received: dict[int, float] = {}

        def on_send(delivery, result, latency):
            mid = app.store.db.scalar(
                "SELECT m.message_id FROM notices n JOIN raw_mails m ON m.id = n.raw_mail_id"
                " WHERE n.id = ?", (delivery.notice_id,))
            i = int(mid.split(".")[0].removeprefix("bench"))
            received[i] = time.perf_counter() - latency  # when send() was called

        app.send_listeners.append(on_send)
        runner = asyncio.create_task(app.run())
        await asyncio.sleep(0.3)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            asyncio.to_thread(sender, port, n, sent_at, done, loop),
            _wait_for(lambda: len(received) >= n, 60))
        import os
        import signal

        os.kill(os.getpid(), signal.SIGTERM)
        await runner
        return [received[i] - sent_at[i] for i in range(n)]


async def _wait_for(cond, timeout: float) -> None:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise TimeoutError("not all mails reached the channel")
        await asyncio.sleep(0.005)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mails", type=int, default=200)
    args = p.parse_args()
    lat = sorted(asyncio.run(bench(args.mails)))
    q = statistics.quantiles(lat, n=100)
    print(f"SMTP end of DATA -> channel send, {len(lat)} mails")
    print(f"  p50 {q[49] * 1000:.1f} ms, p90 {q[89] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
