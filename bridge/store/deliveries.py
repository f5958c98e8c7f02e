"""The persistent outbox: one delivery per (notice, subscriber) or per reply.

States: pending -> sending -> sent [-> delivered -> read] | failed; pending may also end as
superseded (a newer notice of the same incident is queued), stale (too old to be useful) or
cancelled (the subscriber left). ``to_addr`` and ``reply`` are cleared once a delivery
finishes, so finished history holds no numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from bridge.store.db import Database, now

FINISHED = ("sent", "delivered", "read", "failed", "superseded", "stale", "cancelled")
# Monotonic order of the states a channel may report after sending.
PROGRESS = {"sending": 0, "sent": 1, "delivered": 2, "read": 3}


def _newer_notice(alias: str) -> str:
    """SQL: a later notice of the same incident exists for this delivery's subscriber.
    Such an older delivery must never go back to pending: it would go out after the newer
    one. (One seek in the (subscriber, incident, notice) index: an incident may have 100,000
    deliveries, and a subscriber thousands, e.g. a mailbox's backlog at first start.)"""
    return (f"({alias}.incident_id IS NOT NULL AND EXISTS (SELECT 1 FROM deliveries n"
            f" INDEXED BY deliveries_supersede WHERE n.subscriber_id = {alias}.subscriber_id"
            f" AND n.incident_id = {alias}.incident_id AND n.notice_id > {alias}.notice_id))")


@dataclass(frozen=True)
class Delivery:
    id: int
    notice_id: int | None
    incident_id: int | None
    subscriber_id: int | None
    to_addr: str
    channel: str
    reply: str | None
    reply_name: str | None
    attempts: int
    created_at: float


class Deliveries:
    def __init__(self, db: Database):
        self.db = db

    # -- queueing ---------------------------------------------------------------------------
    def fan_out(self, notice_id: int, incident_id: int | None) -> tuple[int, int]:
        """Queue a notice for every subscriber and supersede older unsent notices of the same
        incident. Run inside the transaction that created the notice.
        Returns (queued, superseded)."""
        t = now()
        superseded = 0
        if incident_id is not None:
            superseded = self.db.execute(
                "UPDATE deliveries SET state='superseded', to_addr=NULL, finished_at=?"
                " WHERE incident_id=? AND state='pending' AND notice_id < ?",
                (t, incident_id, notice_id),
            ).rowcount
        queued = self.db.execute(
            "INSERT INTO deliveries (notice_id, incident_id, subscriber_id, to_addr, channel,"
            " state, due_at, created_at)"
            " SELECT ?, ?, id, number, channel, 'pending', ?, ? FROM subscribers ORDER BY id",
            (notice_id, incident_id, t, t),
        ).rowcount
        self.db.execute("UPDATE notices SET recipients=? WHERE id=?", (queued, notice_id))
        return queued, superseded

    def add_reply(self, *, to_addr: str, channel: str, text: str, name: str,
                  subscriber_id: int | None) -> int:
        t = now()
        cur = self.db.execute(
            "INSERT INTO deliveries (subscriber_id, to_addr, channel, reply, reply_name, state,"
            " due_at, created_at) VALUES (?,?,?,?,?,'pending',?,?)",
            (subscriber_id, to_addr, channel, text, name, t, t),
        )
        return int(cur.lastrowid)

    def add_paced_replies(self, rows: list[tuple[int, str]], *, channel: str, text: str,
                          name: str, start: float, interval: float) -> int:
        """Queue one reply ``text`` (template ``name``) per (subscriber id, address) in
        ``rows``, the n-th due at ``start + n * interval`` seconds, so a long list trickles
        out behind the notices instead of in front of them (the outbox sends by due time).
        Each counts as created when it is due: ``dispatch.max_age_hours`` applies from then.
        Returns how many were queued."""
        self.db.conn.executemany(
            "INSERT INTO deliveries (subscriber_id, to_addr, channel, reply, reply_name, state,"
            " due_at, created_at) VALUES (?,?,?,?,?,'pending',?,?)",
            [(sid, addr, channel, text, name, start + n * interval, start + n * interval)
             for n, (sid, addr) in enumerate(rows)])
        return len(rows)

    # -- dispatching ----------------------------------------------------------------------------
    def reset_inflight(self, exclude: Collection[int] = ()) -> int:
        """After a crash: sends that were under way go back to pending (sent at most once more).
        ``exclude``: ids known to be sent whose result is not committed yet."""
        with self.db.tx():
            ids = [r[0] for r in self.db.execute("SELECT id FROM deliveries WHERE state='sending'")
                   if r[0] not in exclude]
            self.db.conn.executemany(
                "UPDATE deliveries SET state='pending' WHERE id=? AND state='sending'",
                [(i,) for i in ids])
            self._supersede_if_newer(ids)
            return len(ids)

    def states(self, ids: Collection[int]) -> dict[int, tuple[str, int | None, int | None]]:
        """{delivery id: (state, subscriber id, notice id)} for those of ``ids`` that exist."""
        out: dict[int, tuple[str, int | None, int | None]] = {}
        ids = list(ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            for r in self.db.execute(f"SELECT id, state, subscriber_id, notice_id FROM"
                                     f" deliveries WHERE id IN ({marks})", part):
                out[r[0]] = (r[1], r[2], r[3])
        return out

    def _supersede_if_newer(self, ids: Collection[int]) -> None:
        """Pending deliveries among ``ids`` whose incident has a newer notice for the same
        subscriber become superseded (call inside a transaction)."""
        self.db.conn.executemany(
            "UPDATE deliveries SET state='superseded', to_addr=NULL, finished_at=?"
            " WHERE id=? AND state='pending' AND " + _newer_notice("deliveries"),
            [(now(), i) for i in ids])

    def claim(self, limit: int) -> list[Delivery]:
        """Take up to ``limit`` due deliveries, oldest first, and mark them sending."""
        t = now()
        sql = ("SELECT d.id, d.notice_id, d.incident_id, d.subscriber_id, d.to_addr, d.channel,"
               " d.reply, d.reply_name, d.attempts, d.created_at FROM deliveries d"
               " WHERE d.state='pending' AND d.due_at <= ?")
        sql += " ORDER BY d.due_at, d.id LIMIT ?"
        params = (t, limit)
        with self.db.tx() as c:
            rows = c.execute(sql, params).fetchall()
            if rows:
                c.executemany(
                    "UPDATE deliveries SET state='sending', attempts=attempts+1 WHERE id=?",
                    [(r["id"],) for r in rows],
                )
        return [Delivery(**{**dict(r), "attempts": r["attempts"] + 1}) for r in rows]

    def recheck(self, ids: list[int]) -> set[int]:
        """Those of the claimed ``ids`` that must not be sent now: no longer 'sending' (e.g.
        cancelled by an unsubscribe meanwhile), or superseded by a newer notice of their
        incident queued since the claim (marked superseded here)."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id, state != 'sending', state = 'sending' AND {_newer_notice('d')}"
            f" FROM deliveries d WHERE id IN ({marks})", ids).fetchall()
        newer = [r[0] for r in rows if r[2]]
        if newer:
            with self.db.tx():
                self.db.conn.executemany(
                    "UPDATE deliveries SET state='superseded', to_addr=NULL, finished_at=?"
                    " WHERE id=? AND state='sending' AND " + _newer_notice("deliveries"),
                    [(now(), i) for i in newer])
        return {r[0] for r in rows if r[1]} | set(newer)

    def next_due(self) -> float | None:
        return self.db.scalar("SELECT min(due_at) FROM deliveries WHERE state='pending'")

    def mark_sent(self, delivery_id: int, provider_id: str | None) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE deliveries SET state='sent', provider_id=?, to_addr=NULL, reply=NULL,"
                " finished_at=?, error=NULL WHERE id=? AND state='sending'",
                (provider_id, now(), delivery_id),
            )

    def mark_sent_many(self, sent: list[tuple[str | None, int]],
                       subscriber_ids: list[int]) -> None:
        """Record many successful sends in one transaction: [(provider_id, delivery_id)]."""
        t = now()
        with self.db.tx():
            self.db.conn.executemany(
                # A reply to someone who is not (or no longer) a subscriber keeps no message
                # id: a channel's id can encode the number (the Cloud API's wamid does).
                "UPDATE deliveries SET state='sent', to_addr=NULL, reply=NULL, provider_id="
                "CASE WHEN subscriber_id IS NULL AND notice_id IS NULL THEN NULL ELSE ? END,"
                f" finished_at={t!r}, error=NULL WHERE id=? AND state='sending'", sent)
            if subscriber_ids:
                self.db.conn.executemany(
                    "UPDATE subscribers SET unreachable=0 WHERE id=? AND unreachable != 0",
                    [(i,) for i in subscriber_ids])

    def mark_retry(self, delivery_id: int, due_at: float, error: str, *,
                   count_attempt: bool = True) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE deliveries SET state='pending', due_at=?, error=?,"
                " attempts=attempts - ? WHERE id=? AND state='sending'",
                (due_at, error, 0 if count_attempt else 1, delivery_id),
            )
            self._supersede_if_newer((delivery_id,))

    def release(self, ids: Collection[int], due_at: float, error: str) -> None:
        """Hand claimed deliveries (``ids``, 'sending', not sent) back to the queue, due at
        ``due_at``, without using up an attempt (e.g. the dispatcher stops, or the channel
        paused): one transaction."""
        if not ids:
            return
        with self.db.tx():
            self.db.conn.executemany(
                "UPDATE deliveries SET state='pending', due_at=?, error=?, attempts=attempts-1"
                " WHERE id=? AND state='sending'", [(due_at, error, i) for i in ids])
            self._supersede_if_newer(ids)

    def defer(self, to_addr: str, due_at: float, claimed: Collection[int] = (),
              error: str = "pacing per recipient") -> int:
        """Put off every pending delivery to ``to_addr`` due before ``due_at`` (epoch s) to
        ``due_at``, and hand the ``claimed`` ones (not sent) back, due then too, without
        using up an attempt: a recipient who is paced or held waits in the store, in one
        UPDATE by the pending-recipient index, instead of being claimed again and again.
        Their order stays (the claim orders by due time, then id). Returns the number of
        pending rows put off."""
        with self.db.tx():
            if claimed:
                self.db.conn.executemany(
                    "UPDATE deliveries SET state='pending', due_at=?, error=?,"
                    " attempts=attempts-1 WHERE id=? AND state='sending'",
                    [(due_at, error, i) for i in claimed])
            n = self.db.execute(
                "UPDATE deliveries INDEXED BY deliveries_pending_to SET due_at=?"
                " WHERE to_addr=? AND state='pending' AND due_at < ?",
                (due_at, to_addr, due_at)).rowcount
            if claimed:
                self._supersede_if_newer(claimed)
        return n

    def mark_failed(self, delivery_id: int, error: str) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE deliveries SET state='failed', error=?, to_addr=NULL, reply=NULL,"
                " finished_at=? WHERE id=? AND state IN ('sending', 'pending')",
                (error, now(), delivery_id),
            )

    def mark_stale(self, delivery_id: int) -> None:
        with self.db.tx():
            self.db.execute(
                "UPDATE deliveries SET state='stale', to_addr=NULL, reply=NULL, finished_at=?"
                " WHERE id=?", (now(), delivery_id))

    def expire(self, created_before: float) -> int:
        """Drop unsent notices created before the cutoff (stale). Replies expire too."""
        with self.db.tx():
            return self.db.execute(
                "UPDATE deliveries SET state='stale', to_addr=NULL, reply=NULL, finished_at=?"
                " WHERE state='pending' AND created_at < ?", (now(), created_before)).rowcount

    def progress(self, provider_id: str, state: str, error: str | None = None) -> dict | None:
        """Apply a later status report (e.g. a webhook): states only move forward; failed is
        terminal. Repeated or out-of-order reports are harmless. Returns the delivery row
        with ``changed``: whether this report moved it."""
        with self.db.tx():  # read and write in one transaction: another process may write
            row = self.db.one(
                "SELECT id, state, subscriber_id FROM deliveries WHERE provider_id=?",
                (provider_id,))
            if not row:
                return None
            cur = row["state"]
            if cur == "failed":
                return {**dict(row), "changed": False}
            if state == "failed":
                self.db.execute("UPDATE deliveries SET state='failed', error=? WHERE id=?",
                                (error, row["id"]))
                return {**dict(row), "state": "failed", "changed": True}
            if state in PROGRESS and PROGRESS.get(cur, -1) < PROGRESS[state]:
                self.db.execute("UPDATE deliveries SET state=? WHERE id=?", (state, row["id"]))
                return {**dict(row), "state": state, "changed": True}
            return {**dict(row), "changed": False}

    def requeue(self, provider_id: str, due_at: float, error: str,
                max_attempts: int) -> str | None:
        """A notice the channel accepted that failed later for a passing reason (a webhook,
        e.g. Cloud API 131000): back to pending for its subscriber, while it has had fewer
        than ``max_attempts`` attempts. Returns the number it goes to again, else None."""
        with self.db.tx():  # read and write in one transaction: the subscriber may just leave
            row = self.db.one(
                "SELECT d.id, s.number FROM deliveries d JOIN subscribers s"
                " ON s.id = d.subscriber_id WHERE d.provider_id=? AND d.state='sent'"
                " AND d.notice_id IS NOT NULL AND d.attempts < ? AND NOT " + _newer_notice("d"),
                (provider_id, max_attempts))
            if not row:
                return None
            n = self.db.execute(
                "UPDATE deliveries SET state='pending', to_addr=?, provider_id=NULL, due_at=?,"
                " error=?, finished_at=NULL WHERE id=? AND state='sent'"
                " AND subscriber_id IS NOT NULL",
                (row["number"], due_at, error, row["id"])).rowcount
        return row["number"] if n else None

    # -- reporting --------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT state, count(*) FROM deliveries GROUP BY state")}

    def counts_by_channel(self) -> dict[tuple[str, str], int]:
        return {(r[0], r[1]): r[2] for r in self.db.execute(
            "SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state")}

    def pending(self) -> int:
        """Deliveries waiting or being sent (by the partial indexes: no history scan)."""
        return self.db.scalar(
            "SELECT (SELECT count(*) FROM deliveries INDEXED BY deliveries_due"
            " WHERE state = 'pending') + (SELECT count(*) FROM deliveries"
            " INDEXED BY deliveries_sending WHERE state = 'sending')") or 0

    def waiting_ids(self, due_by: float | None = None) -> set[int]:
        """Ids of deliveries not yet handled (pending or being sent), optionally only those
        due by ``due_by`` (epoch seconds)."""
        sql = "SELECT id FROM deliveries WHERE state IN ('pending','sending')"
        rows = (self.db.execute(sql + " AND due_at <= ?", (due_by,)) if due_by is not None
                else self.db.execute(sql))
        return {r[0] for r in rows}

    def waiting_for(self, subscriber_id: int) -> int:
        """How many messages wait (pending or being sent) for one subscriber."""
        return self.db.scalar(
            "SELECT count(*) FROM deliveries WHERE subscriber_id=?"
            " AND state IN ('pending','sending')", (subscriber_id,)) or 0

    def notice_counts(self, notice_id: int) -> dict[str, int]:
        """A notice's deliveries by state (scans the notice's rows: for reports, not loops)."""
        return {r[0]: r[1] for r in self.db.execute(
            "SELECT state, count(*) FROM deliveries WHERE notice_id=? GROUP BY state", (notice_id,))}

    def notice_open(self, notice_id: int) -> tuple[int, int]:
        """(recipients, unfinished) of a notice's fan-out, by index: cheap at any history size."""
        row = self.db.one(
            "SELECT (SELECT recipients FROM notices WHERE id = ?),"
            " (SELECT count(*) FROM deliveries WHERE notice_id = ?"
            " AND state IN ('pending', 'sending'))", (notice_id, notice_id))
        return (row[0] or 0, row[1] or 0) if row else (0, 0)

    def purge(self, finished_before: float, limit: int = 5000) -> int:
        """Delete up to ``limit`` deliveries finished before the cutoff (call until 0: each
        batch is a short transaction, so a large purge does not hold the store)."""
        with self.db.tx():
            return self.db.execute(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
                " WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?)",
                (finished_before, limit)).rowcount

    def failures(self, notice_id: int) -> list[tuple[str, int]]:
        """``[(reason, count)]`` of a notice's deliveries that failed for good, most frequent
        first (by the partial index on failed deliveries: cheap at any history size)."""
        return [(r[0] or "failed", r[1]) for r in self.db.execute(
            "SELECT error, count(*) AS n FROM deliveries INDEXED BY deliveries_notice_failed"
            " WHERE notice_id=? AND state='failed' GROUP BY error ORDER BY n DESC, error",
            (notice_id,))]
