"""Subscribers, and the keyed hashes that stand in for numbers everywhere else.

A subscriber row holds only the number, the channel it came in on, and the proof of
consent (time and inbound message id); where the channel gives one, also its business-scoped
user id (the Cloud API's BSUID, which stands in for the number of users with a username). Removing a subscriber erases the number from the
whole store: its pending deliveries are cancelled and its delivery history is anonymised.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from bridge.store.db import Database, now


@dataclass(frozen=True)
class Subscriber:
    id: int
    number: str
    channel: str
    consent_at: float
    consent_ref: str
    last_inbound_at: float | None
    unreachable: int
    user_id: str | None = None  # the channel's business-scoped id, where it gives one


class Subscribers:
    def __init__(self, db: Database):
        self.db = db
        self._keys: dict[str, bytes] = {}

    # -- the list ---------------------------------------------------------------------------
    def get(self, number: str, user_id: str | None = None) -> Subscriber | None:
        """The subscriber with this number (E.164 or "user:<id>"), else the one whose
        business-scoped id is ``user_id`` (or the id in a "user:<id>" number)."""
        row = self.db.one("SELECT * FROM subscribers WHERE number=?", (number,))
        if row is None:
            uid = user_id or (number[5:] if number.startswith("user:") else None)
            if uid:
                row = self.db.one("SELECT * FROM subscribers WHERE user_id=? OR number=?",
                                  (uid, "user:" + uid))
        return Subscriber(**dict(row)) if row else None

    def link(self, subscriber_id: int, user_id: str | None) -> None:
        """Remember a subscriber's business-scoped id (kept: the first one seen)."""
        if user_id:
            self.db.execute(
                "UPDATE subscribers SET user_id=? WHERE id=? AND user_id IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM subscribers WHERE user_id=?)", (user_id, subscriber_id, user_id))

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self.db.one("SELECT * FROM subscribers WHERE id=?", (subscriber_id,))
        return Subscriber(**dict(row)) if row else None

    def add(self, number: str, channel: str, consent_ref: str,
            at: float | None = None, user_id: str | None = None) -> tuple[Subscriber, bool]:
        """Add a subscriber; returns (subscriber, created). An existing one is left as is
        (found by number or business-scoped id)."""
        with self.db.tx():
            existing = self.get(number, user_id)
            if existing:
                return existing, False
            t = at or now()
            last = None if consent_ref.startswith("cli:") else t
            cur = self.db.execute(
                "INSERT INTO subscribers (number, channel, consent_at, consent_ref,"
                " last_inbound_at, user_id) VALUES (?,?,?,?,?,?)",
                (number, channel, t, consent_ref, last, user_id))
            return Subscriber(int(cur.lastrowid), number, channel, t, consent_ref, last, 0,
                              user_id), True

    def remove(self, number: str, user_id: str | None = None) -> bool:
        """Erase a subscriber (found as by :meth:`get`): delete the row, cancel pending
        deliveries, anonymise history."""
        with self.db.tx():
            sub = self.get(number, user_id)
            if not sub:
                return False
            self.db.execute(
                "UPDATE deliveries SET state=CASE WHEN state IN ('pending','sending')"
                " THEN 'cancelled' ELSE state END, finished_at=coalesce(finished_at, ?),"
                " subscriber_id=NULL, to_addr=NULL, reply=NULL, provider_id=NULL, error=NULL"
                " WHERE subscriber_id=?",
                (now(), sub.id),
            )
            # Replies queued to this number outside a subscription (e.g. the STOP reply is
            # added after this call, so it is not touched here).
            self.db.execute(
                "UPDATE deliveries SET state='cancelled', to_addr=NULL, reply=NULL, finished_at=?"
                " WHERE to_addr IN (?, ?, ?) AND state='pending'",
                (now(), number, sub.number, f"user:{sub.user_id}"))
            self.db.execute("DELETE FROM subscribers WHERE id=?", (sub.id,))
        return True

    def count(self) -> int:
        return self.db.scalar("SELECT count(*) FROM subscribers") or 0

    def iter(self):
        for row in self.db.execute("SELECT * FROM subscribers ORDER BY id"):
            yield Subscriber(**dict(row))

    def touch(self, number: str, at: float) -> None:
        """Remember the last inbound message time (the Cloud API's 24-hour window)."""
        self.db.execute(
            "UPDATE subscribers SET last_inbound_at=max(coalesce(last_inbound_at, 0), ?)"
            " WHERE number=?", (at, number))

    def unreachable(self, subscriber_id: int) -> int:
        """Count one more 'permanently unreachable' report; returns the count in a row."""
        self.db.execute("UPDATE subscribers SET unreachable=unreachable+1 WHERE id=?",
                        (subscriber_id,))
        return self.db.scalar("SELECT unreachable FROM subscribers WHERE id=?",
                              (subscriber_id,)) or 0

    def reachable(self, subscriber_id: int) -> None:
        self.db.execute("UPDATE subscribers SET unreachable=0 WHERE id=? AND unreachable != 0",
                        (subscriber_id,))

    # -- keyed hashes -----------------------------------------------------------------------
    # Rate limits and inbound dedupe remember senders and message ids (which can contain
    # the number) only as HMACs under a random key per time epoch. A key is deleted two
    # epochs after its own, and with it any way to link an old hash to a number.
    def _epoch_keys(self, purpose: str, length: float) -> tuple[bytes, bytes]:
        """(key of the current epoch, key of the previous epoch)."""
        length = max(int(length), 1)
        epoch = int(now() // length)
        out = []
        for e in (epoch, epoch - 1):
            name = f"key:{purpose}:{length}:{e}"
            cached = self._keys.get(name)
            if cached is None:
                row = self.db.one("SELECT value FROM state WHERE key=?", (name,))
                if row is None and e == epoch:
                    with self.db.tx():
                        self.db.execute("INSERT OR IGNORE INTO state (key, value) VALUES (?, ?)",
                                        (name, secrets.token_hex(32)))
                    row = self.db.one("SELECT value FROM state WHERE key=?", (name,))
                cached = bytes.fromhex(row[0]) if row else b""
                if row:
                    self._keys[name] = cached
            out.append(cached)
        return out[0], out[1]

    def _digests(self, purpose: str, length: float, *parts: str) -> tuple[bytes, bytes | None]:
        cur, prev = self._epoch_keys(purpose, length)
        msg = "\x1f".join(parts).encode()
        h = hmac.new(cur, msg, hashlib.sha256).digest()[:16]
        p = hmac.new(prev, msg, hashlib.sha256).digest()[:16] if prev else None
        return h, p

    def keyed_hash(self, purpose: str, length: float, value: str) -> tuple[bytes, bytes | None]:
        """``value`` hashed under the current and the previous key of ``purpose``'s epochs
        of ``length`` seconds (16 bytes each; previous None when that key is gone), for
        state kept outside these tables (e.g. the Cloud API's unique-recipient window)."""
        return self._digests(purpose, length, value)

    def _remember(self, table: str, purpose: str, length: float, ttl: float, *parts: str) -> bool:
        """True (and remembered) when no unexpired entry exists for ``parts``."""
        h, p = self._digests(purpose, length, *parts)
        t = now()
        with self.db.tx():
            hit = self.db.one(
                f"SELECT 1 FROM {table} WHERE key IN (?, ?) AND expires_at >= ?", (h, p or h, t))
            if hit:
                return False
            self.db.execute(f"INSERT OR REPLACE INTO {table} (key, expires_at) VALUES (?, ?)",
                            (h, t + ttl))
        return True

    def first_seen(self, channel: str, message_id: str, ttl: float) -> bool:
        """True the first time an inbound message id is seen (channels redeliver)."""
        return self._remember("inbound_seen", "msg", ttl, ttl, channel, message_id)

    def allow_reply(self, kind: str, sender: str, window: float) -> bool:
        """At most one ``kind`` reply per sender per window."""
        if window <= 0:
            return True
        return self._remember("reply_limits", "reply", window, window, kind, sender)

    def purge_hashes(self) -> int:
        """Delete expired hashes and the epoch keys no entry can still need."""
        t = now()
        with self.db.tx():
            n = self.db.execute("DELETE FROM inbound_seen WHERE expires_at < ?", (t,)).rowcount
            n += self.db.execute("DELETE FROM reply_limits WHERE expires_at < ?", (t,)).rowcount
            for (name,) in self.db.execute("SELECT key FROM state WHERE key LIKE 'key:%'").fetchall():
                _, _, length, epoch = name.split(":")
                if int(epoch) < int(t // int(length)) - 1:
                    self.db.execute("DELETE FROM state WHERE key=?", (name,))
                    self._keys.pop(name, None)
        return n
