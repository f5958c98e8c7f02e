"""A full disk under a real daemon for minutes (issue 15, item 4): the daemon must stay up,
answer 451, log a WARNING a minute (no wall of tracebacks), resume by itself when space
returns, and process every accepted mail once with each notice delivered once.

The "disk" is the store's page cap (SQLite ``PRAGMA max_page_count``), set from outside
through the store's test hook ``BRIDGE_FAULT_PAGE_CAP`` (see bridge/store/db.py and
tests/diskfull.py, which runs the scenario; tests/test_supervisor.py runs it for 90 s).

    .venv/bin/python bench/disk_full.py              # 5 minutes full (the issue's figure)
    .venv/bin/python bench/disk_full.py --minutes 1.5 --every 2

Prints: minutes full, the SMTP answers seen while full, ERROR/WARNING lines and tracebacks
in the daemon's log, seconds until the processor resumed by itself after space returned
(and until everything was processed and delivered), mails processed, duplicates.
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
