"""The daemon's run lock: an flock on ``<store>.run.lock`` held for the daemon's life.

The kernel drops an flock when its holder dies, however it dies (SIGKILL, OOM killer), so
``bridge status`` knows within a moment whether a daemon runs on this store, instead of
trusting a heartbeat in the store that is only seen as stale after 30 s. (flock(2): the lock
belongs to the open file description and goes when the last descriptor closes.)

The daemon takes the lock exclusively (:func:`hold`); ``bridge status`` tries a shared
lock without waiting (:func:`daemon_running`) and lets go at once. A daemon starting in that
instant waits for it (at most WAIT seconds) rather than failing.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

WAIT = 2.0  # seconds the daemon waits for a status check that holds the lock this instant


def path_for(store_path: str | Path) -> Path:
    """The run-lock file beside the store: ``<store>.run.lock``."""
    return Path(str(store_path) + ".run.lock")


def hold(store_path: str | Path) -> IO[str]:
    """Take the run lock for this process's life (close the file to let go).

    Raises BlockingIOError when another daemon holds it after WAIT seconds (the dispatcher
    lock normally says so first), OSError when the file cannot be opened. Writes the pid
    into the file when it can (not on a full disk)."""
    f = open(path_for(store_path), "a+")
    deadline = time.monotonic() + WAIT
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise
            time.sleep(0.05)
    try:  # the pid is for people; a full disk (ENOSPC) must not stop a start (it pauses)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    except OSError:
        pass
    return f


def daemon_running(store_path: str | Path) -> bool | None:
    """True when a daemon holds the run lock now, False when none does, None when it
    cannot be told (no lock file: no daemon started since this version; or it cannot be
    opened, e.g. another user's file without read access)."""
    p = path_for(store_path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing lets go of a lock taken here
    return False
