"""The mail-out queue (receipts to forwarders, alerts to operators) and what mail back
reads from the rest of the store to write them.

A queued mail is a finished RFC 5322 message with its envelope: ``pending`` until the relay
takes it (``sent``) or refuses it for good (``failed``); a transient failure moves its
``due_at`` on (backoff). ``dedupe_key`` makes queueing idempotent: the same receipt is
queued once, however often its event comes. The message bytes are dropped once finished;
rows go with the retention purge.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from bridge.store.db import Database, now

KEY_STATE = "mailout:key"  # the HMAC key of our Message-IDs (bridge.mailout.compose)


@dataclass(frozen=True)
class QueuedMail:
    """One message to queue. ``recipients``: envelope recipients; ``sender`` '' = ``<>``."""

    kind: str  # receipt, followup, alert
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes
    dedupe_key: str | None = None
    limit_key: str | None = None
    raw_mail_id: int | None = None
    thread: dict | None = None


@dataclass(frozen=True)
class OutMail:
    """A queued message as the sender task sees it."""

    id: int
    kind: str
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes
    attempts: int
    created_at: float


class MailOut:
    def __init__(self, db: Database):
        self.db = db

    # -- queue ----------------------------------------------------------------------------
    def enqueue(self, mail: QueuedMail, due_at: float | None = None) -> int | None:
        """Queue ``mail``; returns its id, or None when a mail with the same ``dedupe_key``
        was queued before (nothing changes then)."""
        t = now()
        with self.db.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO mail_out (kind, dedupe_key, limit_key, raw_mail_id, sender,"
                " recipients, message_id, thread, data, due_at, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (mail.kind, mail.dedupe_key, mail.limit_key, mail.raw_mail_id, mail.sender,
                 json.dumps(list(mail.recipients)), mail.message_id,
                 json.dumps(mail.thread, ensure_ascii=False) if mail.thread else None,
                 mail.data, t if due_at is None else due_at, t))
            return int(cur.lastrowid) if cur.rowcount else None

    def queued_before(self, dedupe_key: str) -> bool:
        return self.db.scalar("SELECT 1 FROM mail_out WHERE dedupe_key=?",
                              (dedupe_key,)) is not None

    def count_since(self, limit_key: str, since: float) -> int:
        """Mails queued for ``limit_key`` (a recipient) since ``since`` (rate limit)."""
        return self.db.scalar(
            "SELECT count(*) FROM mail_out WHERE limit_key=? AND created_at >= ?",
            (limit_key, since)) or 0

    def due(self, limit: int = 20, at: float | None = None) -> list[OutMail]:
        """Up to ``limit`` pending mails due by ``at`` (default now), oldest first."""
        rows = self.db.execute(
            "SELECT id, kind, sender, recipients, message_id, data, attempts, created_at"
            " FROM mail_out WHERE state='pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (now() if at is None else at, limit)).fetchall()
        return [OutMail(id=r["id"], kind=r["kind"], sender=r["sender"],
                        recipients=tuple(json.loads(r["recipients"])),
                        message_id=r["message_id"], data=bytes(r["data"] or b""),
                        attempts=r["attempts"], created_at=r["created_at"]) for r in rows]

    def next_due(self) -> float | None:
        return self.db.scalar("SELECT min(due_at) FROM mail_out WHERE state='pending'")

    def mark_sent(self, mail_id: int, response: str) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE mail_out SET state='sent', data=NULL, response=?, finished_at=?,"
                " attempts=attempts+1 WHERE id=? AND state='pending'", (response, now(), mail_id))

    def mark_retry(self, mail_id: int, due_at: float, error: str) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE mail_out SET due_at=?, error=?, attempts=attempts+1"
                " WHERE id=? AND state='pending'", (due_at, error, mail_id))

    def mark_failed(self, mail_id: int, error: str) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE mail_out SET state='failed', data=NULL, error=?, finished_at=?,"
                " attempts=attempts+1 WHERE id=? AND state='pending'", (error, now(), mail_id))

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT state, count(*) FROM mail_out GROUP BY state")}

    def recent(self, limit: int = 20) -> list[dict]:
        """The newest queued mails without their bytes (for status pages and tests)."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, kind, dedupe_key, raw_mail_id, recipients, message_id, state, attempts,"
            " created_at, finished_at, error, response FROM mail_out ORDER BY id DESC LIMIT ?",
            (limit,))]

    def thread_of(self, raw_mail_id: int) -> dict | None:
        """How the first receipt for ``raw_mail_id`` was threaded (``to``, ``subject``,
        ``references``, ...) plus its ``message_id``; None when it got no receipt."""
        row = self.db.one(
            "SELECT message_id, thread FROM mail_out WHERE raw_mail_id=? AND kind='receipt'"
            " AND thread IS NOT NULL ORDER BY id LIMIT 1", (raw_mail_id,))
        if row is None:
            return None
        return {**json.loads(row["thread"]), "message_id": row["message_id"]}

    def purge(self, finished_before: float, limit: int = 500) -> int:
        """Delete up to ``limit`` finished mails finished before the cutoff; call until 0."""
        with self.db.tx():
            return self.db.execute(
                "DELETE FROM mail_out WHERE id IN (SELECT id FROM mail_out"
                " WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
                (finished_before, limit)).rowcount

    def message_id_key(self) -> bytes:
        """The store's own secret for our Message-IDs (made on first use, kept in state)."""
        row = self.db.one("SELECT value FROM state WHERE key=?", (KEY_STATE,))
        if row is None:
            with self.db.tx(durable=True):
                self.db.execute("INSERT OR IGNORE INTO state (key, value) VALUES (?, ?)",
                                (KEY_STATE, secrets.token_hex(32)))
            row = self.db.one("SELECT value FROM state WHERE key=?", (KEY_STATE,))
        return bytes.fromhex(row[0])

    # -- what receipts and alerts read ------------------------------------------------------
    def mail_head(self, mail_id: int, size: int = 65536) -> dict | None:
        """The first ``size`` bytes of a stored mail (its header) with ``source`` and
        ``envelope_from``; None when the mail (or its bytes) is no longer stored."""
        row = self.db.one(
            "SELECT id, source, envelope_from, substr(data, 1, ?) AS head, received_at"
            " FROM raw_mails WHERE id=? AND data IS NOT NULL", (size, mail_id))
        if row is None:
            return None
        return {**dict(row), "head": bytes(row["head"] or b"")}

    def review_of_mail(self, mail_id: int) -> dict | None:
        """The newest review item of a mail (``id``, ``reason``, ``state``, ``created_at``)."""
        row = self.db.one("SELECT id, reason, state, created_at FROM review WHERE raw_mail_id=?"
                          " ORDER BY id DESC LIMIT 1", (mail_id,))
        return dict(row) if row else None

    def notice(self, notice_id: int) -> dict | None:
        """A notice's ``text``, ``created_at``, ``recipients``, ``raw_mail_id``, ``incident_id``."""
        row = self.db.one("SELECT id, text, created_at, recipients, raw_mail_id, incident_id"
                          " FROM notices WHERE id=?", (notice_id,))
        return dict(row) if row else None

    def duplicate_of(self, mail_id: int) -> dict | None:
        """The notice a duplicate mail repeats: the last notice of its incident, else the
        notice of the earlier mail with the same Message-ID or bytes; None when neither
        (e.g. the earlier mail went to review)."""
        row = self.db.one("SELECT incident_id, message_id, sha256 FROM raw_mails WHERE id=?",
                          (mail_id,))
        if row is None:
            return None
        if row["incident_id"] is not None:
            nid = self.db.scalar("SELECT max(id) FROM notices WHERE incident_id=?",
                                 (row["incident_id"],))
            if nid is not None:
                return self.notice(nid)
        nid = self.db.scalar(
            "SELECT notice_id FROM raw_mails WHERE id != ? AND notice_id IS NOT NULL AND"
            " (sha256 = ? OR (? IS NOT NULL AND message_id = ?)) ORDER BY id LIMIT 1",
            (mail_id, row["sha256"], row["message_id"], row["message_id"]))
        return self.notice(nid) if nid is not None else None

    def open_reviews_before(self, created_before: float) -> list[dict]:
        """Open review items created before the cutoff (``id``, ``reason``, ``created_at``,
        ``raw_mail_id``), oldest first."""
        return [dict(r) for r in self.db.execute(
            "SELECT id, reason, created_at, raw_mail_id FROM review WHERE state='open'"
            " AND created_at < ? ORDER BY id", (created_before,))]
