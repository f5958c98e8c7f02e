"""IMAP slow-link benchmark: one large mail, and a small one after it, over a throttled link
whose transfer takes far longer than the intake's ``timeout``.

    .venv/bin/python bench/imap_slow_link.py [--megabytes 11] [--rate 1000000] [--timeout 10]

Starts a private Dovecot (tests/dovecot.py) and a TCP proxy in front of it that passes the
server's bytes on at ``--rate`` bytes per second (tests/slowproxy.py), puts the two mails in
INBOX, then runs the App in this process against the proxy and prints how long until both
mails are stored and moved, and how many logins and reconnects that took. Issue 16: the
deadline used to cover the whole transfer, so an 11 MB mail at 1 MB/s was "no answer within
10 s" nine times in 100 s and never stored, nor the mail fetched with it; now ``timeout`` is
silence, not size, and a mail over 4 MB is fetched in a command of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dovecot import Dovecot  # noqa: E402
from imap_helpers import PW_ENV, imap_config, storing  # noqa: E402
from slowproxy import SlowProxy  # noqa: E402

from bridge.app import App  # noqa: E402
from bridge.config import load  # noqa: E402


def large_mail(megabytes: float) -> bytes:
    raw = storing(1)
    filler = b"Bijlage: regel tekst om de mail groot te maken, zoals een logbestand.\r\n"
    return raw + b"\r\n" + filler * int(megabytes * (1 << 20) / len(filler))


async def bench(megabytes: float, rate: float, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dc = Dovecot().start()
        proxy = SlowProxy(dc.port, rate=rate).start()
        try:
            big = large_mail(megabytes)
            dc.deliver([big, storing(2)])
            os.environ[PW_ENV] = dc.password
            app = App(load(imap_config(Path(tmp), dc, port=proxy.port, timeout=timeout,
                                       backoff_max=60)))
            t0 = time.monotonic()
            runner = asyncio.create_task(app.run())
            stored_at = moved_at = None
            while moved_at is None:
                await asyncio.sleep(0.05)
                imap = app.parts.get("imap")
                if imap is None:
                    continue
                d = imap.describe()
                if stored_at is None and d["stored"] >= 2:
                    stored_at = time.monotonic() - t0
                if d["moved"] >= 2:
                    moved_at = time.monotonic() - t0
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"after 600 s: {d}")
            os.kill(os.getpid(), signal.SIGTERM)
            await runner
            return {"bytes": len(big), "stored": stored_at, "moved": moved_at,
                    "logins": d["logins"], "reconnects": d["reconnects"]}
        finally:
            proxy.stop()
            dc.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--megabytes", type=float, default=11)
    p.add_argument("--rate", type=float, default=1_000_000, help="bytes per second")
    p.add_argument("--timeout", type=float, default=10, help="imap.timeout (seconds)")
    args = p.parse_args()
    r = asyncio.run(bench(args.megabytes, args.rate, args.timeout))
    print(f"IMAP slow link: a {r['bytes'] / 1e6:.1f} MB mail and a small one,"
          f" link {args.rate / 1e6:g} MB/s, timeout {args.timeout:g} s")
    print(f"  both stored after {r['stored']:.1f} s, both moved after {r['moved']:.1f} s;"
          f" {r['logins']} login(s), {r['reconnects']} reconnect(s)")


if __name__ == "__main__":
    main()
