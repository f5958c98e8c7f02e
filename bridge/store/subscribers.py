"""Subscribers: a person known by several ids, the proof of consent, erasure.

A subscriber row holds the address messages go to (``number``: the E.164 number when
known, else the business-scoped "user:<id>", else "lid:<digits>"), the channel it came in
on and the proof of consent (time, the inbound message id or the operator action, the
wording that counted, an operator's note). ``subscriber_ids`` holds every id WhatsApp gave
the same person (number, Cloud API BSUID, whatsapp-web.js @lid id), one row each; a
message from any of them finds the subscriber. Ids are only ever stored for subscribers.

Removing a subscriber erases every id of the person from the whole store: the rows are
deleted, pending deliveries cancelled and the delivery history anonymised (the caller
then truncates the WAL, :meth:`bridge.store.db.Database.scrub`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from bridge.core.phone import USER_PREFIX, id_kind, mask, preferred_address
from bridge.store.db import Database, now
from bridge.store.hashes import KeyedHashes
from bridge.store.tally import Tally

UNMATCHED_KEY = "inbound:unmatched_optouts"  # state: {"count": n, "last_at": t}
_CHUNK = 500  # ids per "IN (...)" query


@dataclass(frozen=True)
class Subscriber:
    id: int
    number: str  # where messages go: E.164, "user:<id>" or "lid:<digits>"
    channel: str
    consent_at: float
    consent_ref: str  # the inbound message id, "cli:<action>" or "import:<file>"
    last_inbound_at: float | None
    unreachable: int
    consent_wording: str | None = None  # the words that counted, e.g. keyword "aanmelden"
    consent_note: str | None = None  # e.g. the operator's --reason of an import
    ids: tuple[str, ...] = ()  # every id of the person, ``number`` among them

    @property
    def user_id(self) -> str | None:
        """The business-scoped user id (Cloud API BSUID) without "user:", if known."""
        for i in self.ids:
            if i.startswith(USER_PREFIX):
                return i[len(USER_PREFIX):]
        return None


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Subscribers:
    def __init__(self, db: Database):
        self.db = db
        self.hashes = KeyedHashes(db)
        self.tally = Tally(db)  # subscribes and unsubscribes per hour (counts only)

    # -- looking people up ----------------------------------------------------------------
    def _load(self, row) -> Subscriber:
        ids = tuple(r[0] for r in self.db.execute(
            "SELECT id FROM subscriber_ids WHERE subscriber_id=? ORDER BY linked_at, id",
            (row["id"],)))
        return Subscriber(**dict(row), ids=ids)

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        row = self.db.one("SELECT * FROM subscribers WHERE id=?", (subscriber_id,))
        return self._load(row) if row else None

    def last_inbound_at(self, subscriber_id: int) -> float | None:
        """When the subscriber last wrote to us (epoch seconds), or None (never, or no such
        subscriber). One indexed look-up: the dispatcher asks it for every send on a
        channel with a 24-hour window."""
        return self.db.scalar("SELECT last_inbound_at FROM subscribers WHERE id=?",
                              (subscriber_id,))

    def last_inbound_many(self, subscriber_ids: Iterable[int]) -> dict[int, float | None]:
        """:meth:`last_inbound_at` of many subscribers at once: {id: last inbound or None}
        for those that exist."""
        ids = list(dict.fromkeys(subscriber_ids))
        out: dict[int, float | None] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = tuple(ids[i:i + _CHUNK])
            out.update(self.db.execute(
                f"SELECT id, last_inbound_at FROM subscribers WHERE id IN ({_marks(len(chunk))})",
                chunk).fetchall())
        return out

    def find(self, ids: Iterable[str]) -> Subscriber | None:
        """The subscriber holding any of ``ids`` (the earliest consent when ids of one
        person still sit with two subscribers: :meth:`link` merges them)."""
        wanted = [i for i in dict.fromkeys(ids) if i]
        if not wanted:
            return None
        row = self.db.one(
            f"SELECT s.* FROM subscriber_ids i JOIN subscribers s ON s.id = i.subscriber_id"
            f" WHERE i.id IN ({_marks(len(wanted))}) ORDER BY s.consent_at, s.id LIMIT 1",
            tuple(wanted))
        return self._load(row) if row else None

    def get(self, number: str, user_id: str | None = None) -> Subscriber | None:
        """The subscriber with this id (E.164, "user:<id>" or "lid:<digits>"), else the one
        with the business-scoped id ``user_id`` (given without "user:")."""
        return self.find((number, USER_PREFIX + user_id if user_id else ""))

    def count(self) -> int:
        return self.db.scalar("SELECT count(*) FROM subscribers") or 0

    def iter(self) -> Iterator[Subscriber]:
        ids: dict[int, list[str]] = {}
        for sid, ident in self.db.execute(
                "SELECT subscriber_id, id FROM subscriber_ids ORDER BY linked_at, id"):
            ids.setdefault(sid, []).append(ident)
        for row in self.db.execute("SELECT * FROM subscribers ORDER BY id").fetchall():
            yield Subscriber(**dict(row), ids=tuple(ids.get(row["id"], ())))

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that belong to a subscriber (any kind)."""
        out: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            chunk = tuple(ids[i:i + _CHUNK])
            out.update(r[0] for r in self.db.execute(
                f"SELECT id FROM subscriber_ids WHERE id IN ({_marks(len(chunk))})", chunk))
        return out

    # -- adding and linking -----------------------------------------------------------------
    def add(self, number: str, channel: str, consent_ref: str, at: float | None = None,
            user_id: str | None = None, *, ids: Iterable[str] = (),
            wording: str | None = None, note: str | None = None) -> tuple[Subscriber, bool]:
        """Subscribe the person with id ``number`` (and ``ids``, and the business-scoped
        ``user_id``); returns (subscriber, created). A person already subscribed under any
        of these ids is left as is (the caller links the new ids).

        ``consent_ref`` is the inbound message id of the consent ("cli:..." or
        "import:..." for an operator action), ``wording`` the words that counted."""
        every = [i for i in dict.fromkeys(
            (number, *ids, USER_PREFIX + user_id if user_id else "")) if i]
        with self.db.tx():
            existing = self.find(every)
            if existing:
                return existing, False
            t = at or now()
            last = None if consent_ref.startswith(("cli:", "import:")) else t
            address = preferred_address(every) or number
            cur = self.db.execute(
                "INSERT INTO subscribers (number, channel, consent_at, consent_ref,"
                " last_inbound_at, consent_wording, consent_note) VALUES (?,?,?,?,?,?,?)",
                (address, channel, t, consent_ref, last, wording, note))
            sid = int(cur.lastrowid)
            self.db.conn.executemany(
                "INSERT INTO subscriber_ids (id, subscriber_id, kind, linked_at)"
                " VALUES (?,?,?,?)", [(i, sid, id_kind(i), t) for i in every])
            self.tally.bump("subscribed", 1, t)
            return self.by_id(sid), True  # type: ignore[return-value]

    def link(self, subscriber_id: int, ids: str | Iterable[str] | None) -> list[str]:
        """Link ``ids`` (or one business-scoped id given without "user:", as before) to the
        subscriber. An id that belongs to another subscriber means the two are one person:
        they are merged (:meth:`merge`). Returns the ids that were new for the person."""
        if ids is None:
            return []
        if isinstance(ids, str):
            ids = [ids if ids.startswith(USER_PREFIX) else USER_PREFIX + ids]
        wanted = [i for i in dict.fromkeys(ids) if i]
        if not wanted:
            return []
        added: list[str] = []
        with self.db.tx():
            keep = subscriber_id
            for ident in wanted:
                owner = self.db.scalar("SELECT subscriber_id FROM subscriber_ids WHERE id=?",
                                       (ident,))
                if owner == keep:
                    continue
                if owner is None:
                    self.db.execute("INSERT INTO subscriber_ids (id, subscriber_id, kind,"
                                    " linked_at) VALUES (?,?,?,?)",
                                    (ident, keep, id_kind(ident), now()))
                    added.append(ident)
                else:
                    keep = self.merge(keep, owner)
            self._set_address(keep)
        return added

    def merge(self, a: int, b: int) -> int:
        """Two subscribers are one person: keep the one with the earlier consent, move the
        other's ids and unsent deliveries to it (a notice both would get goes once), and
        delete the other. Returns the id kept."""
        rows = {r["id"]: r for r in self.db.execute(
            "SELECT id, consent_at, last_inbound_at FROM subscribers WHERE id IN (?, ?)",
            (a, b))}
        if len(rows) < 2:
            return a if a in rows else b
        keep, gone = sorted((a, b), key=lambda i: (rows[i]["consent_at"], i))
        t = now()
        with self.db.tx():
            self.db.execute("UPDATE subscriber_ids SET subscriber_id=? WHERE subscriber_id=?",
                            (keep, gone))
            self.db.execute(
                "UPDATE deliveries SET state='cancelled', to_addr=NULL, reply=NULL,"
                " subscriber_id=NULL, finished_at=? WHERE subscriber_id=? AND state='pending'"
                " AND notice_id IN (SELECT notice_id FROM deliveries WHERE subscriber_id=?"
                " AND notice_id IS NOT NULL)", (t, gone, keep))
            self.db.execute("UPDATE deliveries SET subscriber_id=? WHERE subscriber_id=?",
                            (keep, gone))
            last = max(rows[keep]["last_inbound_at"] or 0, rows[gone]["last_inbound_at"] or 0)
            self.db.execute("UPDATE subscribers SET last_inbound_at=? WHERE id=?",
                            (last or None, keep))
            self.db.execute("DELETE FROM subscribers WHERE id=?", (gone,))
            self._set_address(keep)
        return keep

    def _set_address(self, subscriber_id: int) -> str | None:
        """Point the subscriber's address, and its unsent deliveries, at the preferred of
        its ids (the number once it is known)."""
        ids = [r[0] for r in self.db.execute(
            "SELECT id FROM subscriber_ids WHERE subscriber_id=?", (subscriber_id,))]
        address = preferred_address(ids)
        if address is None:
            return None
        old = self.db.scalar("SELECT number FROM subscribers WHERE id=?", (subscriber_id,))
        if old != address:
            self.db.execute("UPDATE subscribers SET number=? WHERE id=?", (address, subscriber_id))
        self.db.execute("UPDATE deliveries SET to_addr=? WHERE subscriber_id=? AND state='pending'"
                        " AND to_addr IS NOT ?", (address, subscriber_id, address))
        return address

    # -- identity changes and erasure -------------------------------------------------------
    def move(self, subscriber_id: int, old: Sequence[str], new: Sequence[str]) -> Subscriber:
        """The person's ids changed (a new number, a new business-scoped id): link ``new``,
        erase ``old`` (ids in both stay). Unsent deliveries go to the new address; replies
        queued to an old id outside the subscription are cancelled; an old id written in the
        consent message id (a whatsapp-web.js id holds the number) is masked there."""
        gone = [i for i in dict.fromkeys(old) if i and i not in new]
        with self.db.tx():
            keep = subscriber_id
            if new:
                self.link(keep, new)
                keep = self.find(new).id  # type: ignore[union-attr]
            for ident in gone:
                self.db.execute("DELETE FROM subscriber_ids WHERE id=? AND subscriber_id=?",
                                (ident, keep))
            self._set_address(keep)
            if gone:
                self.db.execute(
                    f"UPDATE deliveries SET state='cancelled', to_addr=NULL, reply=NULL,"
                    f" finished_at=? WHERE subscriber_id IS NULL AND state='pending'"
                    f" AND to_addr IN ({_marks(len(gone))})", (now(), *gone))
                ref = self.db.scalar("SELECT consent_ref FROM subscribers WHERE id=?", (keep,))
                masked = ref or ""
                for ident in gone:
                    core = ident.split(":", 1)[1] if ":" in ident else ident.lstrip("+")
                    if core and core in masked:
                        masked = masked.replace(core, mask(ident).split(":")[-1].lstrip("+"))
                if masked != ref:
                    self.db.execute("UPDATE subscribers SET consent_ref=? WHERE id=?",
                                    (masked, keep))
        return self.by_id(keep)  # type: ignore[return-value]

    def remove(self, number: str, user_id: str | None = None, *,
               ids: Iterable[str] = ()) -> bool:
        """Erase the subscriber found by any of the ids (as :meth:`find`), with every id of
        the person: delete the rows, cancel pending deliveries, anonymise history."""
        every = [number, *ids] + ([USER_PREFIX + user_id] if user_id else [])
        with self.db.tx():
            sub = self.find(every)
            if not sub:
                return False
            self.erase(sub, also=every)
        return True

    def erase(self, sub: Subscriber, also: Iterable[str] = ()) -> None:
        """Erase ``sub`` and every id of the person (see :meth:`remove`)."""
        addresses = sorted({*sub.ids, sub.number, *(a for a in also if a)})
        t = now()
        with self.db.tx():
            self.db.execute(
                "UPDATE deliveries SET state=CASE WHEN state IN ('pending','sending')"
                " THEN 'cancelled' ELSE state END, finished_at=coalesce(finished_at, ?),"
                " subscriber_id=NULL, to_addr=NULL, reply=NULL, provider_id=NULL, error=NULL"
                " WHERE subscriber_id=?", (t, sub.id))
            # Replies queued to the person outside the subscription (the STOP confirmation
            # is added after this call, so it is not touched here).
            self.db.execute(
                f"UPDATE deliveries SET state='cancelled', to_addr=NULL, reply=NULL,"
                f" finished_at=? WHERE to_addr IN ({_marks(len(addresses))})"
                f" AND state='pending'", (t, *addresses))
            self.db.execute("DELETE FROM subscriber_ids WHERE subscriber_id=?", (sub.id,))
            self.db.execute("DELETE FROM subscribers WHERE id=?", (sub.id,))
            self.tally.bump("unsubscribed", 1, t)

    # -- an operator's import ---------------------------------------------------------------
    def import_numbers(self, numbers: Sequence[str], channel: str, consent_ref: str, *,
                       wording: str, note: str | None = None,
                       at: float | None = None) -> list[tuple[int, str]]:
        """Subscribe each E.164 number of ``numbers`` that no subscriber holds yet, in one
        durable transaction; returns (subscriber id, number) of those added, in order.
        The consent proof of each is ``consent_ref`` ("import:<file>"), ``wording`` and
        ``note`` (the operator's reason)."""
        t = at or now()
        with self.db.tx(durable=True):
            held = self.existing(list(dict.fromkeys(numbers)))
            fresh = [n for n in dict.fromkeys(numbers) if n not in held]
            before = self.db.scalar("SELECT coalesce(max(id), 0) FROM subscribers")
            self.db.conn.executemany(
                "INSERT INTO subscribers (number, channel, consent_at, consent_ref,"
                " last_inbound_at, consent_wording, consent_note) VALUES (?,?,?,?,NULL,?,?)",
                [(n, channel, t, consent_ref, wording, note) for n in fresh])
            self.db.execute(
                "INSERT INTO subscriber_ids (id, subscriber_id, kind, linked_at)"
                " SELECT number, id, 'number', consent_at FROM subscribers WHERE id > ?",
                (before,))
            self.tally.bump("subscribed", len(fresh), t)
            return [(r[0], r[1]) for r in self.db.execute(
                "SELECT id, number FROM subscribers WHERE id > ? ORDER BY id", (before,))]

    # -- small state ------------------------------------------------------------------------
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

    def count_unmatched_optout(self) -> int:
        """One more opt-out from an id that matched no subscriber; returns the total."""
        with self.db.tx():
            count, _ = self.unmatched_optouts()
            doc = {"count": count + 1, "last_at": now()}
            self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                            (UNMATCHED_KEY, json.dumps(doc)))
        return count + 1

    def unmatched_optouts(self) -> tuple[int, float | None]:
        """(opt-outs that matched no subscriber since the store began, time of the last)."""
        raw = self.db.scalar("SELECT value FROM state WHERE key=?", (UNMATCHED_KEY,))
        if not raw:
            return 0, None
        doc = json.loads(raw)
        return int(doc.get("count", 0)), doc.get("last_at")

    # -- keyed hashes (bridge.store.hashes) ---------------------------------------------------
    def keyed_hash(self, purpose: str, length: float, value: str) -> tuple[bytes, bytes | None]:
        """``value`` hashed under the current and the previous key of ``purpose``'s epochs
        of ``length`` seconds (16 bytes each; previous None when that key is gone), for
        state kept outside these tables (e.g. the Cloud API's unique-recipient window)."""
        return self.hashes.digests(purpose, length, value)

    def first_seen(self, channel: str, message_id: str, ttl: float) -> bool:
        """True the first time an inbound message id is seen (channels redeliver)."""
        return self.hashes.remember("inbound_seen", "msg", ttl, ttl, channel, message_id)

    def allow_reply(self, kind: str, sender: str, window: float) -> bool:
        """At most one ``kind`` reply per sender per window."""
        if window <= 0:
            return True
        return self.hashes.remember("reply_limits", "reply", window, window, kind, sender)

    def purge_hashes(self) -> int:
        """Delete expired hashes and the epoch keys no entry can still need."""
        return self.hashes.purge()
