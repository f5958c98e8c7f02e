"""SQLite store: one module per table group, one facade to open it.

    store = Store.open(path)
    store.mails / store.incidents / store.deliveries / store.subscribers / store.state
    store.mailout (the mail-out queue of bridge.mailout)
    store.open_send_journal() / store.replay_sends() (results kept on a full disk)
    store.users / store.audit / store.control / store.notices / store.tally /
    store.template_versions (the operator console and its CLI commands)
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from bridge.store.db import Database, StoreError, StoreFull, now, write_problem
from bridge.store.deliveries import Deliveries, Delivery
from bridge.store.incidents import Incidents
from bridge.store.mailout import MailOut
from bridge.store.mails import Mails, RawMail, StoredMail
from bridge.store.sendjournal import Replayed, SendJournal, path_for as _journal_path, replay
from bridge.store.stats import StoreCounts, read_counts
from bridge.store.subscribers import Subscriber, Subscribers
# the operator console and its CLI commands
from bridge.store.audit import Audit
from bridge.store.control import Control
from bridge.store.notices import Notices
from bridge.store.tally import Tally
from bridge.store.template_versions import TemplateVersions
from bridge.store.users import Users

__all__ = ["Store", "StoreError", "StoreFull", "write_problem", "RawMail", "StoredMail",
           "Delivery", "Subscriber", "StoreCounts",
           "now"]


class State:
    """Small key/value state of intakes and channels (IMAP UIDs, channel pause reasons)."""

    def __init__(self, db: Database):
        self.db = db

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self.db.one("SELECT value FROM state WHERE key=?", (key,))
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        with self.db.tx(durable=True):
            self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    def delete(self, key: str) -> None:
        with self.db.tx():
            self.db.execute("DELETE FROM state WHERE key=?", (key,))


class Store:
    def __init__(self, db: Database):
        self.db = db
        self.mails = Mails(db)
        self.incidents = Incidents(db)
        self.deliveries = Deliveries(db)
        self.subscribers = Subscribers(db)
        self.state = State(db)
        self.mailout = MailOut(db)
        # the operator console and its CLI commands
        self.users = Users(db)
        self.audit = Audit(db)
        self.control = Control(db)
        self.notices = Notices(db)
        self.tally = Tally(db)
        self.template_versions = TemplateVersions(db)

    @classmethod
    def open(cls, path: Path) -> "Store":
        return cls(Database(path))

    @classmethod
    def open_readonly(cls, path: Path) -> "Store":
        """The store for reading only (``bridge preview``): nothing is created, migrated or
        written. Raises :class:`StoreError` when there is no store at ``path`` yet, or its
        schema is not this bridge's."""
        return cls(Database(path, readonly=True))

    def tx(self, *, durable: bool = False):
        return self.db.tx(durable=durable)

    # -- the send journal (bridge.store.sendjournal) ------------------------------------------
    def send_journal_path(self) -> Path:
        """The send journal's file beside this store: ``<store>.sendjournal``."""
        return _journal_path(self.db.path)

    def open_send_journal(self) -> SendJournal:
        """Open the send journal beside this store, creating it (128 KiB of zeros, fsynced)
        when missing. Raises OSError when it cannot be created or read (e.g. ENOSPC)."""
        return SendJournal.open(self.db.path)

    def replay_sends(self, journal: SendJournal) -> Replayed:
        """Record the results ``journal`` kept from the last run (one transaction), then
        zero them; see :func:`bridge.store.sendjournal.replay`. Raises StoreFull while the
        store cannot be written (the records stay)."""
        return replay(journal, self.deliveries, self.subscribers)

    def read_counts(self) -> StoreCounts:
        """Counts for metrics over a read-only connection of their own (slow on a large
        history: call it in a worker thread), see :mod:`bridge.store.stats`."""
        return read_counts(self.db.path)

    def purge_steps(self, retention_days: float) -> Iterator[dict[str, int]]:
        """Retention: drop raw mails and finished deliveries older than the limit, and
        expired hashes, in short transactions; yields the running totals after each one
        (the daemon lets other work run in between)."""
        cutoff = now() - retention_days * 86400
        out = {"raw_mails": 0, "deliveries": 0, "hashes": self.subscribers.purge_hashes()}
        out["mail_out"] = 0
        for name, step in (("raw_mails", self.mails.purge), ("deliveries", self.deliveries.purge),
                           ("mail_out", self.mailout.purge)):
            while n := step(cutoff):
                out[name] += n
                yield out
        out["sessions"] = self.users.purge(now() - 86400)  # expired sessions, old failures
        self.db.scrub()
        yield out

    def purge(self, retention_days: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for out in self.purge_steps(retention_days):
            pass
        return out

    def close(self) -> None:
        self.db.close()
