"""Keyed hashes that stand in for numbers and message ids outside the subscriber rows.

Rate limits, inbound dedupe and the question the bridge last asked a sender remember
senders and message ids (which can contain the number) only as HMAC-SHA256 digests (16
bytes) under a random key per time epoch. A key is deleted two epochs after its own, and
with it any way to link an old hash to a number; every row also has its own expiry.

Tables: ``inbound_seen`` and ``reply_limits`` (key, expires_at), ``questions`` (key,
question, expires_at); keys live in ``state`` as ``key:<purpose>:<epoch length>:<epoch>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Iterable

from bridge.store.db import Database, now

__all__ = ["KeyedHashes"]


class KeyedHashes:
    def __init__(self, db: Database):
        self.db = db
        self._keys: dict[str, bytes] = {}

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

    def digests(self, purpose: str, length: float, *parts: str) -> tuple[bytes, bytes | None]:
        """(digest under the current key, digest under the previous key or None)."""
        cur, prev = self._epoch_keys(purpose, length)
        msg = "\x1f".join(parts).encode()
        h = hmac.new(cur, msg, hashlib.sha256).digest()[:16]
        p = hmac.new(prev, msg, hashlib.sha256).digest()[:16] if prev else None
        return h, p

    def remember(self, table: str, purpose: str, length: float, ttl: float, *parts: str) -> bool:
        """True (and remembered) when no unexpired entry exists for ``parts``."""
        h, p = self.digests(purpose, length, *parts)
        t = now()
        with self.db.tx():
            hit = self.db.one(
                f"SELECT 1 FROM {table} WHERE key IN (?, ?) AND expires_at >= ?", (h, p or h, t))
            if hit:
                return False
            self.db.execute(f"INSERT OR REPLACE INTO {table} (key, expires_at) VALUES (?, ?)",
                            (h, t + ttl))
        return True

    # -- questions ----------------------------------------------------------------------------
    def ask(self, senders: Iterable[str], question: str, ttl: float) -> None:
        """Remember that the bridge asked ``question`` (e.g. "confirm_stop", "subscribe") to
        each of the sender's ids, for ``ttl`` seconds; a later question replaces it."""
        t = now()
        with self.db.tx():
            for sender in senders:
                h, p = self.digests("question", ttl, sender)
                if p:
                    self.db.execute("DELETE FROM questions WHERE key=?", (p,))
                self.db.execute("INSERT OR REPLACE INTO questions (key, question, expires_at)"
                                " VALUES (?, ?, ?)", (h, question, t + ttl))

    def asked(self, senders: Iterable[str], ttl: float) -> str | None:
        """The unexpired question last asked to any of the sender's ids, or None."""
        t = now()
        best: tuple[float, str] | None = None
        for sender in senders:
            h, p = self.digests("question", ttl, sender)
            for row in self.db.execute(
                    "SELECT question, expires_at FROM questions WHERE key IN (?, ?)"
                    " AND expires_at >= ?", (h, p or h, t)):
                if best is None or row[1] > best[0]:
                    best = (row[1], row[0])
        return best[1] if best else None

    def answered(self, senders: Iterable[str], ttl: float) -> None:
        """Forget the question asked to the sender's ids (it has had its answer)."""
        with self.db.tx():
            for sender in senders:
                h, p = self.digests("question", ttl, sender)
                self.db.execute("DELETE FROM questions WHERE key IN (?, ?)", (h, p or h))

    # -- upkeep -------------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete expired hashes and the epoch keys no entry can still need."""
        t = now()
        with self.db.tx():
            n = 0
            for table in ("inbound_seen", "reply_limits", "questions"):
                n += self.db.execute(f"DELETE FROM {table} WHERE expires_at < ?", (t,)).rowcount
            for (name,) in self.db.execute("SELECT key FROM state WHERE key LIKE 'key:%'").fetchall():
                _, _, length, epoch = name.split(":")
                if int(epoch) < int(t // int(length)) - 1:
                    self.db.execute("DELETE FROM state WHERE key=?", (name,))
                    self._keys.pop(name, None)
        return n
