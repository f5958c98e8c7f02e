"""The SQLite database: connection settings, versioned schema and migrations.

One connection per process, used from the event-loop thread (each statement takes
microseconds). WAL mode lets the CLI read and write while the daemon runs; a writer waits
up to ``busy_timeout`` for the other.

Durability: ``synchronous=NORMAL`` survives a crash of the process (SIGKILL) for every
commit; :meth:`Database.durable` switches one transaction to ``FULL`` (fsync before the
commit returns) for what we acknowledge to the outside world: a mail at SMTP 250, a mail
before it is moved on IMAP, an inbound message before the webhook's 200.

``secure_delete`` zeroes deleted content, so erasing a subscriber really removes the
number from the file; :meth:`Database.scrub` truncates the WAL that may still hold old
page images.

Writes that fail because the store cannot be written now (a full disk, an I/O error, a
file made read-only) are told apart from other errors by :func:`write_problem`: the
daemon pauses on those instead of counting them as crashes (:mod:`bridge.storehealth`).
:meth:`Database.check_writable` is the start-up check (``bridge run`` exits 78 when it
fails) and :meth:`Database.probe_write` the check that the store takes writes again.

Test hook (fault injection, like :mod:`bridge.faults`): when the environment variable
``BRIDGE_FAULT_PAGE_CAP`` names a file, every write transaction first reads it and sets
SQLite's ``PRAGMA max_page_count`` from it on this connection: ``full`` caps the store at
its current size (any write that needs a new page fails with SQLITE_FULL, as on a full
disk), a number caps it at that many pages, ``refuse`` fails every write transaction with
SQLITE_FULL (a disk without a block free, where even an UPDATE in place cannot grow the
WAL: the page cap lets writes through that need no new page), an empty or missing file
lifts the cap. A test fills and frees the "disk" of a running daemon by writing that file;
unset (always, in production) it costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from bridge.store.errors import (PASSING, WRITE_PROBLEMS, StoreError, StoreFull, access_problem,
                                 os_user, owner, write_problem)

__all__ = ["Database", "MIGRATIONS", "SCHEMA_VERSION", "StoreError", "StoreFull",
           "access_problem", "now", "write_problem"]

log = logging.getLogger(__name__)

# bridge/store/db.py's test hook (see the module doc): a file holding the page cap
_PAGE_CAP_FILE = os.environ.get("BRIDGE_FAULT_PAGE_CAP") or None
_NO_CAP = 1073741823  # SQLite's default max_page_count

PROBE_BYTES = 16384  # what probe_write writes: a few pages, so a full store refuses it

# Each entry migrates from version i to i+1. Never edit a shipped entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE raw_mails (
        id INTEGER PRIMARY KEY,
        message_id TEXT,
        sha256 TEXT NOT NULL,
        source TEXT NOT NULL,            -- smtp, imap, cli
        source_ref TEXT,                 -- e.g. imap uidvalidity:uid, file name
        envelope_from TEXT,
        received_at REAL NOT NULL,
        data BLOB,                       -- NULL once purged
        outcome TEXT,                    -- NULL until processed: queued, duplicate, outdated, review, rejected
        reason TEXT,
        incident_id INTEGER,
        notice_id INTEGER,
        processed_at REAL
    );
    CREATE INDEX raw_mails_message_id ON raw_mails(message_id);
    CREATE INDEX raw_mails_sha256 ON raw_mails(sha256);
    CREATE INDEX raw_mails_unprocessed ON raw_mails(id) WHERE outcome IS NULL;

    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        ticket TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        report TEXT NOT NULL,            -- JSON of the last report that made a notice
        report_at REAL,                  -- that report's own time (mail Date)
        opened_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (source, ticket)
    );

    CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER REFERENCES incidents(id),
        raw_mail_id INTEGER,
        kind TEXT NOT NULL,
        status TEXT,
        template TEXT NOT NULL,
        text TEXT NOT NULL,
        report TEXT,                     -- JSON, the context for channel-side templates
        fallback INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        recipients INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX notices_incident ON notices(incident_id);

    CREATE TABLE subscribers (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,     -- E.164, or user:<business-scoped id>
        channel TEXT NOT NULL,
        consent_at REAL NOT NULL,
        consent_ref TEXT NOT NULL,       -- inbound message id, or cli:<operator action>
        last_inbound_at REAL,            -- for the Cloud API's 24-hour window
        unreachable INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        notice_id INTEGER,               -- NULL for a reply to an inbound message
        incident_id INTEGER,             -- for coalescing
        subscriber_id INTEGER,
        to_addr TEXT,                    -- NULL once finished (privacy)
        channel TEXT NOT NULL,
        reply TEXT,                      -- reply text (replies only); NULL once finished
        reply_name TEXT,                 -- which reply template
        state TEXT NOT NULL,             -- pending, sending, sent, delivered, read, failed,
                                         -- superseded, stale, cancelled
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        provider_id TEXT,                -- e.g. the Cloud API's wamid
        error TEXT
    );
    CREATE INDEX deliveries_due ON deliveries(due_at, id) WHERE state = 'pending';
    CREATE INDEX deliveries_sending ON deliveries(id) WHERE state = 'sending';
    CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);
    CREATE INDEX deliveries_incident ON deliveries(incident_id, state);
    CREATE INDEX deliveries_provider ON deliveries(provider_id) WHERE provider_id IS NOT NULL;
    CREATE INDEX deliveries_finished ON deliveries(finished_at) WHERE finished_at IS NOT NULL;

    CREATE TABLE review (
        id INTEGER PRIMARY KEY,
        raw_mail_id INTEGER NOT NULL,
        reason TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open',   -- open, approved, rejected
        created_at REAL NOT NULL,
        decided_at REAL,
        notice_id INTEGER
    );

    -- Keyed hashes only: inbound message ids (channels redeliver) and the support-reply
    -- limiter. Never the number itself. Rows expire.
    CREATE TABLE inbound_seen (key BLOB PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;
    CREATE TABLE reply_limits (key BLOB PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID;

    -- Small state of intakes and channels (e.g. IMAP UIDVALIDITY and last UID) and secrets
    -- the store makes for itself (the hash key).
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: look up raw mails by where they came from (the IMAP intake's exactly-once check)
    """
    CREATE INDEX raw_mails_source_ref ON raw_mails(source_ref) WHERE source_ref IS NOT NULL;
    """,
    # 3: a notice's unfinished deliveries (fan-out progress) without scanning the history
    """
    CREATE INDEX deliveries_notice_open ON deliveries(notice_id, state)
        WHERE state IN ('pending', 'sending');
    """,
    # 4: the business-scoped user id (Cloud API BSUID) of a subscriber known by number, so
    # a message carrying only that id (a user with a username) finds the same subscriber
    """
    ALTER TABLE subscribers ADD COLUMN user_id TEXT;
    CREATE UNIQUE INDEX subscribers_user_id ON subscribers(user_id) WHERE user_id IS NOT NULL;
    """,
    # 5: mail back (bridge.mailout): the persistent queue of receipts to forwarders and
    # alerts to operators, and a notice's failures by reason without a history scan
    """
    CREATE TABLE mail_out (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,              -- receipt, followup, alert
        dedupe_key TEXT UNIQUE,          -- what it is about (e.g. receipt:17): one mail each
        limit_key TEXT,                  -- the rate-limited recipient (receipts), else NULL
        raw_mail_id INTEGER,             -- the mail a receipt answers
        sender TEXT NOT NULL,            -- envelope sender ('' = the null reverse-path)
        recipients TEXT NOT NULL,        -- envelope recipients, JSON list
        message_id TEXT NOT NULL,        -- our Message-ID, without angle brackets
        thread TEXT,                     -- JSON: how a follow-up threads (receipts)
        data BLOB,                       -- the RFC 5322 message; NULL once finished
        state TEXT NOT NULL DEFAULT 'pending',   -- pending, sent, failed
        attempts INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        created_at REAL NOT NULL,
        finished_at REAL,
        error TEXT,                      -- the last failure (relay answer or network error)
        response TEXT                    -- the relay's answer to the message, once sent
    );
    CREATE INDEX mail_out_due ON mail_out(due_at, id) WHERE state = 'pending';
    CREATE INDEX mail_out_limit ON mail_out(limit_key, created_at) WHERE limit_key IS NOT NULL;
    CREATE INDEX mail_out_raw_mail ON mail_out(raw_mail_id) WHERE raw_mail_id IS NOT NULL;
    CREATE INDEX mail_out_finished ON mail_out(finished_at) WHERE finished_at IS NOT NULL;
    CREATE INDEX deliveries_notice_failed ON deliveries(notice_id) WHERE state = 'failed';
    """,
    # 6: a subscriber is a person known by several ids (issue 12): the number, the Cloud
    # API's business-scoped user id, whatsapp-web.js's @lid id, one row each, all erased
    # with the person (the user_id column moves here); the consent proof says which
    # wording (and, for an import, the operator's reason); the question the bridge last
    # asked a sender ("ja" answers it) is kept only as a keyed hash that expires
    """
    CREATE TABLE subscriber_ids (
        id TEXT PRIMARY KEY,             -- "+31612345678", "user:<BSUID>", "lid:<digits>"
        subscriber_id INTEGER NOT NULL,
        kind TEXT NOT NULL,              -- number, bsuid, lid
        linked_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX subscriber_ids_subscriber ON subscriber_ids(subscriber_id);
    INSERT INTO subscriber_ids (id, subscriber_id, kind, linked_at)
        SELECT number, id, CASE WHEN number LIKE 'user:%' THEN 'bsuid' ELSE 'number' END,
               consent_at FROM subscribers;
    INSERT OR IGNORE INTO subscriber_ids (id, subscriber_id, kind, linked_at)
        SELECT 'user:' || user_id, id, 'bsuid', consent_at FROM subscribers
        WHERE user_id IS NOT NULL;
    DROP INDEX subscribers_user_id;
    ALTER TABLE subscribers DROP COLUMN user_id;
    ALTER TABLE subscribers ADD COLUMN consent_wording TEXT;  -- e.g. keyword "aanmelden"
    ALTER TABLE subscribers ADD COLUMN consent_note TEXT;     -- e.g. the import's --reason
    CREATE TABLE questions (key BLOB PRIMARY KEY, question TEXT NOT NULL,
                            expires_at REAL NOT NULL) WITHOUT ROWID;
    """,
    # 7: the operator console (issue 14): accounts and their sessions (a hash of the
    # token, never the token), failed sign-ins for throttling, the audit log of every
    # change, earlier versions of edited templates, and subscribes/unsubscribes counted
    # per hour (numbers only, no ids) for the subscriber chart
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,     -- argon2id, PHC string format (argon2-cffi)
        created_at REAL NOT NULL,
        password_changed_at REAL NOT NULL,
        last_login_at REAL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,     -- sha256 of the cookie's token, hex
        user_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        address TEXT                     -- where it signed in from
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,             -- "user:<name>" or "addr:<address>"
        at REAL NOT NULL
    );
    CREATE INDEX login_failures_scope ON login_failures(scope, at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,             -- console user, or "cli:<os user>"
        action TEXT NOT NULL,            -- e.g. review.approve, sending.pause
        target TEXT,                     -- e.g. "review 4", "notice 12"
        detail TEXT,                     -- what changed, masked numbers only
        address TEXT
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE TABLE template_versions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,              -- e.g. notices/storing_nieuw.j2
        source TEXT NOT NULL,            -- the text as it was before a save or restore
        saved_at REAL NOT NULL,
        saved_by TEXT NOT NULL,
        note TEXT                        -- e.g. "shipped", "edited"
    );
    CREATE INDEX template_versions_name ON template_versions(name, id);
    CREATE TABLE subscriber_tally (
        hour INTEGER NOT NULL,           -- Unix time // 3600
        event TEXT NOT NULL,             -- subscribed, unsubscribed
        n INTEGER NOT NULL,
        PRIMARY KEY (hour, event)
    ) WITHOUT ROWID;
    """,
    # 8: the dispatcher with thousands of deliveries for one subscriber (issue 15): the
    # supersede check (a newer notice of the same incident for the same subscriber) seeks
    # by (subscriber, incident, notice) instead of scanning all of the subscriber's rows;
    # (it also serves every lookup by subscriber, so the old index goes); and all pending
    # deliveries to one address are put off in one UPDATE while that recipient is paced
    """
    CREATE INDEX deliveries_supersede ON deliveries(subscriber_id, incident_id, notice_id);
    DROP INDEX deliveries_subscriber;
    CREATE INDEX deliveries_pending_to ON deliveries(to_addr, due_at) WHERE state = 'pending';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def _raise_tx_error(what: str, e: sqlite3.Error) -> None:
    problem = write_problem(e)
    if problem is not None:
        raise StoreFull(f"{what}: {e}", problem) from None
    raise StoreError(f"{what}: {e}") from None


class Database:
    """``readonly=True``: a connection that can only read (``bridge preview``): the file
    is opened with SQLite's ``mode=ro`` and ``query_only``, nothing is migrated or
    checkpointed, a write raises; a store whose schema is not this bridge's raises
    :class:`StoreError` (another version would have to migrate it first)."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, readonly: bool = False):
        self.path = Path(path)
        self._depth = 0
        self._page_cap: str | None = None  # the test hook's last value (see the module doc)
        self.readonly = readonly
        if readonly:
            self.conn = self._open_readonly(busy_timeout)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise StoreError(access_problem(self.path)
                             or f"{self.path}: cannot open database: {e}") from None
        self.conn.row_factory = sqlite3.Row
        c = self.conn
        try:
            # the first statements read the file: a file that is not a database fails here
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA secure_delete=ON")
            c.execute("PRAGMA foreign_keys=OFF")
            c.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self.migrate()
        except (sqlite3.Error, StoreError) as e:
            c.close()
            why = access_problem(self.path) if write_problem(e) else None
            raise StoreError(why or f"{self.path}: cannot open database: {e}") from None

    def _open_readonly(self, busy_timeout: float) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no store yet")
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True,
                                   timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open database: {e}") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA query_only=ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"{self.path}: cannot open database: {e}") from None
        if version != SCHEMA_VERSION:
            conn.close()
            todo = ("run the daemon (or bridge status) once to migrate it"
                    if version < SCHEMA_VERSION else "upgrade the bridge")
            raise StoreError(f"{self.path}: schema version {version}, this bridge knows "
                             f"{SCHEMA_VERSION}; {todo} (a read-only look never migrates)")
        return conn

    # -- schema -----------------------------------------------------------------------
    def migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this bridge knows "
                f"({SCHEMA_VERSION}); upgrade the bridge"
            )
        while version < SCHEMA_VERSION:
            with self.tx(durable=True):
                # Read again under the write lock: another process (the daemon and a
                # `bridge status` started at the same moment) may have migrated meanwhile.
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version >= SCHEMA_VERSION:
                    break
                for stmt in _split_sql(MIGRATIONS[version]):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version={version + 1}")
            log.info("store: migrated %s to schema version %d", self.path, version + 1)
            version += 1

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls join the outer one.

        ``durable=True`` fsyncs before the commit returns (synchronous=FULL).
        """
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        c = self.conn
        if _PAGE_CAP_FILE is not None:
            self._apply_page_cap()
        if durable:
            c.execute("PRAGMA synchronous=FULL")
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            if durable:
                c.execute("PRAGMA synchronous=NORMAL")
            _raise_tx_error("cannot start a transaction", e)
        self._depth = 1
        try:
            yield c
        except BaseException:
            self._depth = 0
            # SQLite may have rolled back already (e.g. SQLITE_FULL): keep the real error
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            if durable:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("PRAGMA synchronous=NORMAL")
            raise
        self._depth = 0
        try:
            c.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            _raise_tx_error("commit failed", e)
        finally:
            if durable:
                c.execute("PRAGMA synchronous=NORMAL")

    def _apply_page_cap(self) -> None:
        """The test hook of the module doc: set max_page_count from the cap file, or
        raise :class:`StoreFull` (``refuse``) as a full disk fails a transaction."""
        try:
            with open(_PAGE_CAP_FILE or "", encoding="ascii") as f:
                cap = f.read().strip()
        except OSError:
            cap = ""
        if cap == "refuse":
            full = WRITE_PROBLEMS[sqlite3.SQLITE_FULL]
            raise StoreFull(f"cannot start a transaction: {full} (test hook)", full)
        if cap == self._page_cap:
            return
        self._page_cap = cap
        if cap == "full":
            pages = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        else:
            pages = int(cap) if cap.isdigit() else _NO_CAP
        self.conn.execute(f"PRAGMA max_page_count={pages}")

    # -- can it be written? -------------------------------------------------------------
    def probe_write(self) -> str | None:
        """Write and delete a row of :data:`PROBE_BYTES` in one durable transaction:
        None when the store took it, else why not (:func:`write_problem`'s text, or the
        error itself). A few pages, so a store that is full refuses it; the row is gone
        after the commit."""
        try:
            with self.tx(durable=True):
                self.conn.execute("INSERT OR REPLACE INTO state (key, value) "
                                  "VALUES ('store:write-probe', zeroblob(?))", (PROBE_BYTES,))
                self.conn.execute("DELETE FROM state WHERE key='store:write-probe'")
        except (StoreError, sqlite3.Error) as e:
            return write_problem(e) or str(e)
        return None

    def check_writable(self) -> str | None:
        """The start-up check of ``bridge run``: the folder, the file and its -wal/-shm
        files can be written by this process, and a write transaction commits. Raises
        :class:`StoreError` with one line naming the path and the user when they cannot
        (permissions, a read-only file system: a configuration problem the operator must
        fix). A store that is merely full or failing now (SQLITE_FULL, SQLITE_IOERR) is
        no reason not to start: returns that reason (the daemon starts paused and resumes
        when space returns); None when all is well."""
        why = access_problem(self.path)
        if why is not None:
            raise StoreError(why)
        problem = self.probe_write()
        if problem is None or problem in PASSING:
            return problem
        raise StoreError(f"{self.path}: cannot write the store as {os_user()}: {problem}"
                         f"; the file is {owner(self.path)}")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: tuple | dict = ()):
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def scrub(self) -> bool:
        """Checkpoint and truncate the WAL so erased data leaves no old page copies."""
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as e:
            log.warning("store: checkpoint failed: %s", e)
            return False
        return busy == 0

    def sync(self) -> None:
        """Put every commit so far on disk, as ``synchronous=FULL`` would have: fsync the
        WAL (where a ``NORMAL`` commit waits for the next checkpoint) and the file. For a
        copy elsewhere of what was just committed (the send journal's records) that may
        be dropped only once the store's survives a power cut. Raises OSError."""
        for p in (Path(str(self.path) + "-wal"), self.path):
            try:
                fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def ping(self) -> bool:
        try:
            self.conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):
                self.scrub()
        self.conn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our literals)."""
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


def now() -> float:
    return time.time()
