"""What was sent to whom, as the operator sees it: notices, incidents' timelines, a
notice's deliveries by state, fan-outs under way, and stopping a notice.

Reads are for pages and the CLI (one notice or one page at a time), by the indexes the
outbox already has. Finished deliveries hold no address (privacy): the number shown for a
delivery is its subscriber's current one, while the person is subscribed.
"""

from __future__ import annotations

from bridge.store.db import Database, now

DELIVERY_STATES = ("pending", "sending", "sent", "delivered", "read", "failed", "superseded",
                   "stale", "cancelled")


class Notices:
    def __init__(self, db: Database):
        self.db = db

    # -- notices --------------------------------------------------------------------------------
    def get(self, notice_id: int) -> dict | None:
        """The notice with its incident's ticket and status, and the review item that approved
        it (``review_id``), or None."""
        row = self.db.one(
            "SELECT n.*, i.ticket, i.status AS incident_status, i.source,"
            " (SELECT id FROM review r WHERE r.notice_id = n.id) AS review_id"
            " FROM notices n LEFT JOIN incidents i ON i.id = n.incident_id WHERE n.id=?",
            (notice_id,))
        return dict(row) if row else None

    def recent(self, limit: int = 50, offset: int = 0) -> list[dict]:
        """Newest first, each with its ticket and how many deliveries are still open."""
        return [dict(r) for r in self.db.execute(
            "SELECT n.id, n.incident_id, n.raw_mail_id, n.kind, n.status, n.template, n.text,"
            " n.created_at, n.recipients, n.fallback, i.ticket,"
            " (SELECT count(*) FROM deliveries d WHERE d.notice_id = n.id"
            "  AND d.state IN ('pending', 'sending')) AS open"
            " FROM notices n LEFT JOIN incidents i ON i.id = n.incident_id"
            " ORDER BY n.id DESC LIMIT ? OFFSET ?", (limit, offset))]

    def count(self) -> int:
        return self.db.scalar("SELECT count(*) FROM notices") or 0

    def counts(self, notice_id: int) -> dict[str, int]:
        """Deliveries of the notice by state."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT state, count(*) FROM deliveries WHERE notice_id=? GROUP BY state",
            (notice_id,))}

    def failures(self, notice_id: int) -> list[tuple[str, int]]:
        """``[(reason, count)]`` of the failed deliveries, most frequent first."""
        return [(r[0] or "failed", r[1]) for r in self.db.execute(
            "SELECT error, count(*) AS n FROM deliveries WHERE notice_id=? AND state='failed'"
            " GROUP BY error ORDER BY n DESC, error", (notice_id,))]

    def deliveries(self, notice_id: int, state: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[dict]:
        """One page of the notice's deliveries: id, state, attempts, error, finished_at and
        ``number``, the address (unsent) or the subscriber's number (None once erased)."""
        sql = ("SELECT d.id, d.state, d.attempts, d.error, d.finished_at, d.created_at,"
               " coalesce(d.to_addr, s.number) AS number FROM deliveries d"
               " LEFT JOIN subscribers s ON s.id = d.subscriber_id WHERE d.notice_id=?")
        params: list = [notice_id]
        if state:
            sql += " AND d.state=?"
            params.append(state)
        sql += " ORDER BY d.id LIMIT ? OFFSET ?"
        return [dict(r) for r in self.db.execute(sql, (*params, limit, offset))]

    def delivery_number(self, notice_id: int, delivery_id: int) -> str | None:
        """The number of one delivery of the notice (for an operator who reveals it)."""
        return self.db.scalar(
            "SELECT coalesce(d.to_addr, s.number) FROM deliveries d LEFT JOIN subscribers s"
            " ON s.id = d.subscriber_id WHERE d.id=? AND d.notice_id=?", (delivery_id, notice_id))

    def in_progress(self) -> list[dict]:
        """Notices with deliveries still waiting or being sent (fan-outs under way): id,
        recipients, open, created_at, ticket, text; oldest first."""
        rows = self.db.execute(
            "SELECT notice_id, count(*) FROM deliveries INDEXED BY deliveries_notice_open"
            " WHERE state IN ('pending', 'sending') AND notice_id IS NOT NULL"
            " GROUP BY notice_id ORDER BY notice_id").fetchall()
        out = []
        for notice_id, open_ in rows:
            n = self.db.one(
                "SELECT n.id, n.recipients, n.created_at, n.text, n.kind, n.status, i.ticket"
                " FROM notices n LEFT JOIN incidents i ON i.id = n.incident_id WHERE n.id=?",
                (notice_id,))
            if n is not None:
                out.append({**dict(n), "open": open_})
        return out

    def cancel(self, notice_id: int) -> int:
        """Stop a notice: its deliveries not yet claimed by the dispatcher become
        ``cancelled`` (no address kept). Sends already under way (at most the half second of
        work the dispatcher claimed) still go out. Returns how many were cancelled."""
        with self.db.tx(durable=True):
            return self.db.execute(
                "UPDATE deliveries SET state='cancelled', to_addr=NULL, reply=NULL,"
                " finished_at=?, error='stopped by an operator'"
                " WHERE notice_id=? AND state='pending'", (now(), notice_id)).rowcount

    # -- incidents ------------------------------------------------------------------------------
    def incident(self, incident_id: int) -> dict | None:
        row = self.db.one("SELECT * FROM incidents WHERE id=?", (incident_id,))
        return dict(row) if row else None

    def incidents(self, limit: int = 50, offset: int = 0, open_only: bool = False) -> list[dict]:
        sql = ("SELECT i.id, i.source, i.ticket, i.kind, i.status, i.opened_at, i.updated_at,"
               " (SELECT count(*) FROM notices n WHERE n.incident_id = i.id) AS notices"
               " FROM incidents i")
        if open_only:
            sql += " WHERE i.status NOT IN ('opgelost', 'geannuleerd')"
        sql += " ORDER BY i.updated_at DESC LIMIT ? OFFSET ?"
        return [dict(r) for r in self.db.execute(sql, (limit, offset))]

    def timeline(self, incident_id: int) -> list[dict]:
        """The incident's notices, oldest first, each with its deliveries by state."""
        out = []
        for r in self.db.execute("SELECT * FROM notices WHERE incident_id=? ORDER BY id",
                                 (incident_id,)).fetchall():
            out.append({**dict(r), "counts": self.counts(r["id"])})
        return out
