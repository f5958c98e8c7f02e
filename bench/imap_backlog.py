"""IMAP backlog benchmark: a mailbox holding N mails when the bridge first starts.

    .venv/bin/python bench/imap_backlog.py [--mails 2000]

Starts a private Dovecot (tests/dovecot.py), puts ``--mails`` distinct outage mails in its
INBOX (straight into the maildir, as a delivery agent would), then starts the App in this
process with a fresh store (IMAP intake, processor, dispatcher, console channel writing to a
file) and measures, from the start of ``App.run()``:

- until every mail is stored (committed raw mail),
- until every mail is moved out of INBOX (the intake waited for its outcome),

and prints both, with the intake's logins and the largest UID MOVE. Target (issue 16): a
backlog of 2,000 mails stored and moved within 2 minutes. The notices themselves follow the
dispatcher's pacing and staleness rules; they are not part of this figure.

``--subscribers`` (default 0): with subscribers every mail's notice is also dispatched while
the backlog is read. With one subscriber and 2,000 distinct notices the dispatcher's pacing
per recipient re-claims and re-schedules every pending delivery each pacing interval (one
commit per delivery), which takes the event loop from the mail processor: outcomes, and so
the moves, then come at about one mail per second. That is the dispatcher's to fix; by
default this benchmark measures the intake and the pipeline without it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
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

from bridge.app import App  # noqa: E402
from bridge.config import load  # noqa: E402


class Moves(logging.Handler):
    """Counts the UIDs of each "moved UID a:b,c to Processed" line of the intake."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.largest = 0
        self.commands = 0

    def emit(self, record: logging.LogRecord) -> None:
        m = re.match(r"imap: moved UID (\S+) to ", record.getMessage())
        if m:
            n = 0
            for part in m.group(1).split(","):
                a, _, b = part.partition(":")
                n += int(b or a) - int(a) + 1
            self.commands += 1
            self.largest = max(self.largest, n)


async def bench(n: int, subscribers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        dc = Dovecot().start()
        try:
            t = time.monotonic()
            dc.deliver([storing(i) for i in range(n)])
            deliver_s = time.monotonic() - t
            os.environ[PW_ENV] = dc.password
            app = App(load(imap_config(tmp_path, dc, timeout=30, idle_renew=300)))
            for i in range(subscribers):
                app.store.subscribers.add(f"+316{12345678 + i:08d}", "console", "cli:bench")
            moves = Moves()
            logging.getLogger("bridge.intake.imap").addHandler(moves)
            logging.getLogger("bridge.intake.imap").setLevel(logging.INFO)
            t0 = time.monotonic()
            runner = asyncio.create_task(app.run())
            stored_at = moved_at = None
            while moved_at is None:
                await asyncio.sleep(0.05)
                imap = app.parts.get("imap")
                if imap is None:
                    continue
                d = imap.describe()
                if stored_at is None and d["stored"] >= n:
                    stored_at = time.monotonic() - t0
                if d["moved"] >= n:
                    moved_at = time.monotonic() - t0
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"after 600 s: {d}")
            d = app.parts["imap"].describe()
            os.kill(os.getpid(), signal.SIGTERM)
            await runner
            left = len(dc.uids("INBOX"))
            return {"deliver": deliver_s, "stored": stored_at, "moved": moved_at,
                    "logins": d["logins"], "largest_move": moves.largest,
                    "move_commands": moves.commands, "left": left}
        finally:
            dc.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mails", type=int, default=2000)
    p.add_argument("--subscribers", type=int, default=0)
    p.add_argument("--log", help="write the daemon's log (INFO) to this file")
    args = p.parse_args()
    if args.log:
        from bridge import logs

        logs.setup("INFO", open(args.log, "w"))
    r = asyncio.run(bench(args.mails, args.subscribers))
    print(f"IMAP backlog at first start: {args.mails} mails in INBOX (Dovecot, fresh store,"
          f" {args.subscribers} subscribers)")
    print(f"  all stored after {r['stored']:.1f} s, all moved after {r['moved']:.1f} s"
          f" (target: within 120 s)")
    print(f"  {r['logins']} login(s), {r['move_commands']} UID MOVE commands, the largest"
          f" naming {r['largest_move']} UIDs; {r['left']} left in INBOX")


if __name__ == "__main__":
    main()
