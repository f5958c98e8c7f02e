"""SMTP latency benchmark: end of DATA -> channel send, through the real daemon parts.

    .venv/bin/python bench/smtp_latency.py [--mails 200] [--mix]

Runs the App (SMTP intake on a free port, processor, dispatcher, console channel writing
to a file) in this process, with the garbage collector tuned as ``bridge run`` does, sends
``--mails`` outage mails with distinct tickets with smtplib from a thread, and measures for
each the time from the client sending the end of DATA to the channel's send. Prints
p50/p90/p99/max. Targets (600 mails): p50 <= 5 ms, p99 <= 10 ms on an idle machine.

``--mix``: every third mail is sample 01 as is, one a report in UTF-8 labelled ISO-8859-1
(charset detection runs), one a maintenance mail whose window is only in an iCalendar part
(calendar parsing runs).
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

from helpers import dated_now, free_port, sample_now, write_config  # noqa: E402

from bridge.app import App  # noqa: E402
from bridge.config import load  # noqa: E402
from bridge.runtime import tune_gc  # noqa: E402


_BASE: list[str] = []


def mail(i: int, mix: bool = False) -> bytes:
    """Sample 01 (or, with ``mix``, one of MIXED) with its own ticket and Message-ID, every
    date moved so that it is dated when the run starts (the bridge sends a mail older than
    review.max_mail_age_hours to review, and a maintenance window in the past too)."""
    if not _BASE:
        _BASE.append(sample_now("01").decode())
        for m in MIXED:  # SMTP lines end in CRLF
            _BASE.append(dated_now(m.replace("\n", "\r\n").encode("utf-8")).decode("latin-1"))
    if mix and i % 3:
        return (_BASE[i % 3].replace("{ticket}", f"{900000000 + i:09d}")
                .replace("{i}", str(i))).encode("latin-1")
    raw = _BASE[0]
    return (raw.replace("INC000012345678", f"INC{900000000 + i:09d}")
               .replace("<inc12345678.1@", f"<bench{i}.1@")).encode()


MIXED = [
    # UTF-8 bytes labelled ISO-8859-1: the declaration does not fit, detection runs
    """From: "KPN Wholesale Storingsdienst" <storingsmeldingen@wholesale.kpn.example>
To: noc@cbgconnect.example
Subject: Storingsmelding KPN: Internet - Earnewald (INC{ticket}) - Nieuw
Date: Thu, 26 Nov 2026 14:00:00 +0100
Message-ID: <bench{i}.1@wholesale.kpn.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: 8bit

Beste partner,

Ticketnummer:       INC{ticket}
Status:             Nieuw
Dienst(en):         Internet
Getroffen gebied:   Earnewâld, Wâlterswâld
Starttijd:          28-11-2026 08:40
Verwachte eindtijd: 28-11-2026 13:00
Omschrijving:       Stroomstoring in de wijkcentrale – monteurs zijn onderweg.
""",
    # maintenance whose window is only in a text/calendar part
    """From: "KPN Wholesale Storingsdienst" <storingsmeldingen@wholesale.kpn.example>
To: noc@cbgconnect.example
Subject: Onderhoudsmelding KPN: Internet - Zwolle (CT{ticket}) - Aangekondigd
Date: Thu, 26 Nov 2026 14:00:00 +0100
Message-ID: <bench{i}.1@wholesale.kpn.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="cal-b"

--cal-b
Content-Type: text/plain; charset="utf-8"

Beste partner,

KPN voert gepland onderhoud uit. Het tijdvenster staat in de agenda-uitnodiging.

--cal-b
Content-Type: text/calendar; charset="utf-8"; method=REQUEST

BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//KPN//Onderhoud//NL
METHOD:REQUEST
BEGIN:VEVENT
UID:CT{ticket}@kpn.example
DTSTAMP:20261126T130000Z
DTSTART:20261202T230000Z
DTEND:20261203T050000Z
SUMMARY:Onderhoud Internet Zwolle
X-MAINTNOTE-MAINTENANCE-ID:CT{ticket}
X-MAINTNOTE-STATUS:CONFIRMED
X-MAINTNOTE-IMPACT:OUTAGE
END:VEVENT
END:VCALENDAR

--cal-b--
""",
]


def sender(port: int, n: int, sent_at: dict[int, float], done: asyncio.Event,
           loop: asyncio.AbstractEventLoop, mix: bool = False) -> None:
    s = smtplib.SMTP("127.0.0.1", port)
    s.ehlo()
    for i in range(n):
        data = mail(i, mix)
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


async def bench(n: int, mix: bool = False) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = load(write_config(Path(tmp), smtp=True, smtp_port=port))
        app = App(cfg)
        tune_gc()  # as `bridge run` does once its parts are built
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
            asyncio.to_thread(sender, port, n, sent_at, done, loop, mix),
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
    p.add_argument("--mix", action="store_true",
                   help="also mails that need charset detection and calendar parsing")
    args = p.parse_args()
    lat = sorted(asyncio.run(bench(args.mails, args.mix)))
    q = statistics.quantiles(lat, n=100)
    print(f"SMTP end of DATA -> channel send, {len(lat)} mails"
          + (" (mixed: detection, calendar)" if args.mix else ""))
    print(f"  p50 {q[49] * 1000:.1f} ms, p90 {q[89] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
