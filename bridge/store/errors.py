"""The store's errors, and whether the store can be written (SQLite result codes, file
permissions): what the daemon pauses on (:mod:`bridge.storehealth`) and what stops its start
(``bridge run`` exits 78)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

# Primary result codes that mean "cannot be written now" (https://sqlite.org/rescode.html):
# the operator frees space, repairs the disk or the file's permissions, and the daemon
# resumes by itself.
WRITE_PROBLEMS = {
    sqlite3.SQLITE_FULL: "database or disk is full",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_READONLY: "the database file is read-only",
    sqlite3.SQLITE_CANTOPEN: "a database file (or its -wal/-shm file) cannot be opened",
}
# ... of which these pass once the operator frees space or the disk recovers
PASSING = frozenset({WRITE_PROBLEMS[sqlite3.SQLITE_FULL], WRITE_PROBLEMS[sqlite3.SQLITE_IOERR]})


class StoreError(RuntimeError):
    """The store cannot do what was asked (locked, full, corrupt, too new)."""


class StoreFull(StoreError):
    """The store cannot be written now: ``problem`` says why (one of
    :data:`WRITE_PROBLEMS`' texts, e.g. "database or disk is full"). Raised by
    :meth:`bridge.store.db.Database.tx` when BEGIN or COMMIT fails so; a statement inside a transaction
    raises :class:`sqlite3.Error` itself. :func:`write_problem` recognises both."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


def write_problem(e: BaseException | None) -> str | None:
    """Why ``e`` means the store cannot be written now (disk full, I/O error, read-only
    file), as a short English text for operators, or None when ``e`` is another error
    (a bug, a lock held too long, a corrupt file). Follows ``__cause__``/``__context__``
    (e.g. :class:`bridge.port.StoreUnavailable` raised from a sqlite3 error)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, StoreFull):
            return e.problem
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None:
                return WRITE_PROBLEMS.get(code & 0xFF)
            text = str(e).lower()  # errors raised without a code (rare)
            for needle, problem in (("disk is full", sqlite3.SQLITE_FULL),
                                    ("disk i/o error", sqlite3.SQLITE_IOERR),
                                    ("readonly database", sqlite3.SQLITE_READONLY)):
                if needle in text:
                    return WRITE_PROBLEMS[problem]
            return None
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def os_user() -> str:
    """The user this process runs as, e.g. ``user bridge (uid 998)``."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "?"
    return f"user {name} (uid {uid})"


def owner(path: Path) -> str:
    import pwd

    try:
        st = path.stat()
    except OSError:
        return "?"
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = str(st.st_uid)
    return f"owned by {name}, mode {st.st_mode & 0o777:04o}"


# The files beside the store that the daemon opens for writing, as suffixes of its path:
# SQLite's WAL and shared memory, the send journal (bridge.store.sendjournal), the
# dispatcher's lock (bridge.outbox) and the run lock (bridge.runlock). A CLI command run
# as root leaves them root's (tests/test_cli.py checks the names against their modules).
BESIDE = ("-wal", "-shm", ".sendjournal", ".dispatch.lock", ".run.lock")


def access_problem(path: Path) -> str | None:
    """Why this process cannot write the store at ``path`` (its folder, the file, and the
    files beside it: :data:`BESIDE`), as one line naming the path and the user, or None. The
    folder is tried for real (a file created and removed: a read-only file system stops
    root too); the files by their permissions (never opened: see the comment below), so
    root passes here and :meth:`bridge.store.db.Database.probe_write` is the real test."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return f"{folder}: not a folder (store.path is {path})"
    try:
        fd, probe = _tempfile(folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return (f"{path}: cannot write the store's folder {folder} as {os_user()}: "
                f"{e.strerror or e}; the folder is {owner(folder)}")
    for p in (path, *(Path(f"{path}{suffix}") for suffix in BESIDE)):
        # access(), not open(): closing a second descriptor of a database file would drop
        # this process's SQLite locks on it (POSIX advisory locks are per process), and
        # another process could then delete the WAL under the open connection.
        # (https://sqlite.org/howtocorrupt.html, 2.2). The probe write checks the rest.
        if p.exists() and not os.access(p, os.R_OK | os.W_OK, effective_ids=True):
            return (f"{p}: cannot write the store as {os_user()}: the file is {owner(p)}"
                    f" (chown it to that user)")
    return None


def _tempfile(folder: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=".bridge-write-check-", dir=folder)


