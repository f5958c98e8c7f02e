"""Raw mails as they arrived, and the review queue."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email import policy

from bridge.core.models import RawMail
from bridge.store.db import Database, now


@dataclass(frozen=True)
class StoredMail:
    id: int
    message_id: str | None
    sha256: str
    source: str
    source_ref: str | None
    envelope_from: str | None
    received_at: float
    data: bytes | None
    outcome: str | None
    reason: str | None
    incident_id: int | None
    notice_id: int | None
    processed_at: float | None = None


def header_message_id(data: bytes) -> str | None:
    try:
        msg = BytesHeaderParser(policy=policy.compat32).parsebytes(data[:65536])
    except Exception:
        return None
    mid = msg.get("Message-ID") or msg.get("Message-Id")
    if not mid:
        return None
    return str(mid).strip().strip("<>").strip() or None


def header_subject(data: bytes | None) -> str:
    """The Subject of a mail's own header (RFC 2047 words decoded), "" when none."""
    if not data:
        return ""
    try:
        msg = BytesHeaderParser(policy=policy.default).parsebytes(data[:65536])
        return " ".join(str(msg.get("Subject") or "").split())
    except Exception:
        return ""


class Mails:
    def __init__(self, db: Database):
        self.db = db

    def add(self, mail: RawMail) -> int:
        """Commit a raw mail durably (fsync) and return its id. Call before acknowledging."""
        digest = hashlib.sha256(mail.data).hexdigest()
        with self.db.tx(durable=True) as c:
            cur = c.execute(
                "INSERT INTO raw_mails (message_id, sha256, source, source_ref, envelope_from,"
                " received_at, data) VALUES (?,?,?,?,?,?,?)",
                (header_message_id(mail.data), digest, mail.source, mail.source_ref,
                 mail.envelope_from, now(), mail.data),
            )
            return int(cur.lastrowid)

    def get(self, mail_id: int) -> StoredMail | None:
        row = self.db.one("SELECT * FROM raw_mails WHERE id=?", (mail_id,))
        return StoredMail(**dict(row)) if row else None

    def outcome(self, mail_id: int) -> dict | None:
        """The outcome, reason, incident_id, notice_id and the notice's recipient count of a
        processed mail, else None."""
        row = self.db.one("SELECT m.outcome, m.reason, m.incident_id, m.notice_id,"
                          " COALESCE(n.recipients, 0) AS recipients FROM raw_mails m"
                          " LEFT JOIN notices n ON n.id = m.notice_id"
                          " WHERE m.id=? AND m.outcome IS NOT NULL", (mail_id,))
        return dict(row) if row else None

    def unprocessed(self, limit: int = 100) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM raw_mails WHERE outcome IS NULL ORDER BY id LIMIT ?", (limit,))]

    def seen_before(self, mail_id: int, message_id: str | None, sha256: str) -> int | None:
        """The id of an earlier processed mail with this Message-ID or these exact bytes."""
        row = self.db.one(
            "SELECT id FROM raw_mails WHERE id != ? AND outcome IS NOT NULL AND"
            " (sha256 = ? OR (? IS NOT NULL AND message_id = ?)) ORDER BY id LIMIT 1",
            (mail_id, sha256, message_id, message_id),
        )
        return row[0] if row else None

    def outcomes(self, mail_ids: list[int]) -> dict[int, str | None]:
        """Outcome per raw mail id (None: not processed yet; ids no longer stored are
        absent), without loading the bytes."""
        out: dict[int, str | None] = {}
        for i in range(0, len(mail_ids), 500):
            chunk = tuple(mail_ids[i:i + 500])
            rows = self.db.execute(
                f"SELECT id, outcome FROM raw_mails WHERE id IN ({','.join('?' * len(chunk))})",
                chunk)
            out.update((r[0], r[1]) for r in rows)
        return out

    def set_outcome(self, mail_id: int, outcome: str, reason: str, *,
                    incident_id: int | None = None, notice_id: int | None = None) -> None:
        self.db.execute(
            "UPDATE raw_mails SET outcome=?, reason=?, incident_id=?, notice_id=?, processed_at=?"
            " WHERE id=?",
            (outcome, reason, incident_id, notice_id, now(), mail_id),
        )

    def by_source_ref(self, source_ref: str) -> StoredMail | None:
        row = self.db.one("SELECT * FROM raw_mails WHERE source_ref=? ORDER BY id DESC LIMIT 1",
                          (source_ref,))
        return StoredMail(**dict(row)) if row else None

    def counts(self) -> dict[str, int]:
        return {r[0] or "unprocessed": r[1] for r in self.db.execute(
            "SELECT outcome, count(*) FROM raw_mails GROUP BY outcome")}

    def recent(self, limit: int = 50, offset: int = 0, outcome: str | None = None) -> list[dict]:
        """Newest first, without the bytes: id, source, envelope_from, received_at, outcome,
        reason, incident_id, notice_id, processed_at, ``stored`` (the bytes are kept) and
        ``head`` (the first 16 KiB, for the subject) (for the console and its CLI)."""
        sql = ("SELECT id, source, source_ref, envelope_from, received_at, outcome, reason,"
               " incident_id, notice_id, processed_at, data IS NOT NULL AS stored,"
               " substr(data, 1, 16384) AS head FROM raw_mails")
        params: tuple = ()
        if outcome:
            sql += " WHERE outcome = ?"
            params = (outcome,)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        return [dict(r) for r in self.db.execute(sql, (*params, limit, offset))]

    def review_of(self, mail_id: int) -> dict | None:
        """The newest review item of a mail, or None."""
        row = self.db.one("SELECT * FROM review WHERE raw_mail_id=? ORDER BY id DESC LIMIT 1",
                          (mail_id,))
        return dict(row) if row else None

    def last_received(self) -> float | None:
        return self.db.scalar("SELECT max(received_at) FROM raw_mails")

    def purge(self, older_than: float, limit: int = 500) -> int:
        """Delete up to ``limit`` processed raw mails received before ``older_than`` (not
        those in review); call until 0."""
        with self.db.tx() as c:
            cur = c.execute(
                "DELETE FROM raw_mails WHERE id IN (SELECT id FROM raw_mails WHERE received_at < ?"
                " AND outcome IS NOT NULL AND id NOT IN"
                " (SELECT raw_mail_id FROM review WHERE state = 'open') LIMIT ?)",
                (older_than, limit),
            )
            return cur.rowcount

    # -- review queue ---------------------------------------------------------------------
    def add_review(self, mail_id: int, reason: str) -> int:
        cur = self.db.execute(
            "INSERT INTO review (raw_mail_id, reason, created_at) VALUES (?,?,?)",
            (mail_id, reason, now()),
        )
        return int(cur.lastrowid)

    def reviews(self, state: str | None = "open") -> list[dict]:
        sql = ("SELECT r.*, m.envelope_from, m.received_at, m.source,"
               " substr(m.data, 1, 16384) AS head FROM review r"
               " JOIN raw_mails m ON m.id = r.raw_mail_id")
        if state:
            return [dict(r) for r in self.db.execute(sql + " WHERE r.state=? ORDER BY r.id", (state,))]
        return [dict(r) for r in self.db.execute(sql + " ORDER BY r.id")]

    def review_count(self, state: str = "open") -> int:
        return self.db.scalar("SELECT count(*) FROM review WHERE state=?", (state,)) or 0

    def review(self, review_id: int) -> dict | None:
        row = self.db.one("SELECT * FROM review WHERE id=?", (review_id,))
        return dict(row) if row else None

    def decide_review(self, review_id: int, state: str, notice_id: int | None = None) -> None:
        self.db.execute(
            "UPDATE review SET state=?, decided_at=?, notice_id=? WHERE id=?",
            (state, now(), notice_id, review_id),
        )
