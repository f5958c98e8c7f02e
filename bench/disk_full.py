"""A full disk under a real daemon for minutes (issue 15, item 4): the daemon must stay up,
answer 451, log a WARNING a minute (no wall of tracebacks), resume by itself when space
returns, and process every accepted mail once with each notice delivered once.

The "disk" is the store's page cap (SQLite ``PRAGMA max_page_count``), set from outside
through the store's test hook ``BRIDGE_FAULT_PAGE_CAP`` (see bridge/store/db.py and
tests/diskfull.py, which runs the scenario; tests/test_supervisor.py runs it for 90 s).

    .venv/bin/python bench/disk_full.py              # 5 minutes full (the issue's figure)
    .venv/bin/python bench/disk_full.py --minutes 1.5 --every 2
    .venv/bin/python bench/disk_full.py --stop-only  # only the stop-while-full phase

Prints: minutes full, the SMTP answers seen while full, ERROR/WARNING lines and tracebacks
in the daemon's log, seconds until the processor resumed by itself after space returned
(and until everything was processed and delivered), mails processed, duplicates.

Then a second phase (about 10 s a signal): a fan-out to 30 subscribers, the store refusing
every write a few sends in, the daemon stopped (SIGTERM) and, in another run, killed
(SIGKILL) while still full, space back, started again (tests/diskfull.py
``stop_while_full``); prints per signal the sends made while full, the results recorded
from the send journal, and the recipients who got the notice twice or never.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import diskfull  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="how long the store is full")
    ap.add_argument("--every", type=float, default=5.0,
                    help="seconds between mails sent over SMTP while full")
    ap.add_argument("--keep", action="store_true", help="keep the folder (daemon.log)")
    ap.add_argument("--stop-only", action="store_true",
                    help="only the phase that stops the daemon while the store is full")
    args = ap.parse_args()
    if args.stop_only:
        return 0 if stop_phase(args.keep) else 1
    tmp = Path(tempfile.mkdtemp(prefix="bridge-disk-full-"))
    last = [0.0]

    def progress(elapsed: float, answers) -> None:
        if elapsed - last[0] >= 60:
            last[0] = elapsed
            print(f"  {elapsed / 60:.0f} min full: SMTP answers {dict(answers)}", flush=True)

    t = time.monotonic()
    f = diskfull.run(tmp, args.minutes * 60, every=args.every, progress=progress)
    print(f"minutes full:                 {f.full_seconds / 60:.2f}")
    print(f"SMTP answers while full:      {dict(sorted(f.answers.items()))}"
          f" (451: {f.answers.get(451, 0)})")
    print(f"daemon alive throughout:      {f.alive_throughout} (exit code {f.exit_code})")
    print(f"log lines ERROR / WARNING:    {f.errors} / {f.warnings}"
          f" (tracebacks: {f.tracebacks})")
    print(f"processor resumed after:      {f.resume_seconds} s (space back -> the mail "
          f"accepted while full processed)")
    print(f"all processed and delivered:  {f.drain_seconds} s after space returned "
          f"(the 451'd mails sent again)")
    print(f"mails accepted / processed:   {f.mails} / {f.processed}")
    print(f"notices delivered:            {f.notices_delivered} (duplicates {f.duplicates},"
          f" missing {f.missing})")
    print(f"wall time:                    {time.monotonic() - t:.0f} s; folder {tmp}")
    print("WARNING lines:")
    for line in f.log.splitlines():
        if " WARNING " in line or " ERROR " in line:
            print("  " + line[:160])
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    ok = (f.alive_throughout and f.exit_code == 0 and f.duplicates == 0 and f.missing == 0
          and f.processed == f.mails)
    stopped_ok = stop_phase(args.keep)
    return 0 if ok and stopped_ok else 1


def stop_phase(keep: bool) -> bool:
    """The daemon stopped and killed while the store is full; True when nobody got the
    notice twice and nobody not at all."""
    ok = True
    print("stopped while the store is full (a fan-out to 30, then started with space back):")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        tmp = Path(tempfile.mkdtemp(prefix="bridge-stop-full-"))
        f = diskfull.stop_while_full(tmp, sig)
        print(f"  {sig.name}: sent after the store filled "
              f"{f.sent_before_stop - f.sent_before_full}, "
              f"recorded from the send journal {f.journaled}, put back as under way "
              f"{f.sent_again_line}; sent twice {f.duplicates}, missing {f.missing} "
              f"(exit {f.first_exit}, then {f.second_exit}; ERROR lines {f.errors})")
        ok = ok and f.drained and f.duplicates == 0 and f.missing == 0
        if keep:
            print(f"  folder {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return ok


if __name__ == "__main__":
    sys.exit(main())
