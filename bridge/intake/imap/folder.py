"""The watched folder: its UID state, and one pass over it (take new mails, move done ones).

A pass (:meth:`Folder.sync`)::

    UID SEARCH UID <last+1>:*                     new mails (at first: ALL and UNDELETED)
    UID FETCH <uids> (UID RFC822.SIZE)            sizes, in batches of at most 500 UIDs
    UID FETCH <uids> (UID BODY.PEEK[])            bodies: at most 50 mails / 4 MB a command
    port.store_mail(raw, state=...)               raw mail + UID state, one transaction
    port.wait_outcomes(ids)                       the processor decides
    UID MOVE <uids> <folder>                      in batches of at most 500 UIDs

A mail whose fetch ends the connection twice (or that the server refuses to hand out) is
*held*: left in the folder, named in the status, tried again after an hour and at each
start; the other mails go on. Mails that vanish between the SEARCH and the FETCH mean
another reader takes them: after two, :class:`SecondConsumer` is raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

from bridge import faults
from bridge.core.models import RawMail
from bridge.intake.imap.client import Connection
from bridge.intake.imap.commands import (MAX_LINE, MAX_UIDS, mailbox_arg, parse_fetch,
                                         parse_search, parse_sizes, uid_batches, uid_ranges,
                                         uid_set)
from bridge.intake.imap.failures import Dead, Failure, SecondConsumer
from bridge.intake.imap.settings import ImapSettings
from bridge.port import IntakePort

log = logging.getLogger("bridge.intake.imap")

FETCH_MAX_UIDS = 50  # mails per UID FETCH of bodies
FETCH_MAX_BYTES = 4 << 20  # bytes per UID FETCH of bodies (a larger mail is fetched alone)
STRIKES_TO_HOLD = 2  # a mail whose fetch killed the connection this often is held back
HELD_RETRY = 3600.0  # seconds before a held mail is tried again (and at each start)
VANISHED_TO_PAUSE = 2  # mails vanishing under us within VANISH_WINDOW: another reader
VANISH_WINDOW = 900.0
OUTCOME_WAIT = 10.0  # seconds to wait for the pipeline's outcomes before moving later


class Folder:
    """The folder ``settings.folder`` as the intake knows it across connections.

    State through ``port`` (key ``imap:<user>@<host>:<port>/<folder>``): UIDVALIDITY, the
    highest UID handled, and the held UIDs, as JSON. ``on_error(msg)`` reports a problem
    worth a WARNING and the status line."""

    def __init__(self, settings: ImapSettings, port: IntakePort,
                 on_error: Callable[[str], None]):
        self.s = settings
        self.port = port
        self.on_error = on_error
        self.state_key = f"imap:{settings.user}@{settings.host}:{settings.port}/{settings.folder}"
        self.conn: Connection | None = None
        self.uidvalidity: int | None = None
        self.last_uid: int | None = None  # None: no baseline yet for this UIDVALIDITY
        self.held: dict[int, str] = {}  # UID -> why it could not be fetched
        self.last_mail_at: float | None = None
        self.stored = self.moved = self.flagged = self.left_deleted = 0
        self._pending: dict[int, int] = {}  # uid -> raw mail id, committed but not moved
        self._copied: set[int] = set()  # copied to their folder, not yet marked \Deleted
        self._strikes: dict[int, int] = {}
        self._held_at: dict[int, float] = {}
        self._vanished: list[float] = []
        self._max_uids, self._max_line = MAX_UIDS, MAX_LINE
        self._baseline = False
        self._said: set[str] = set()

    def describe(self) -> dict:
        return {"last_mail_at": self.last_mail_at, "uidvalidity": self.uidvalidity,
                "last_uid": self.last_uid, "stored": self.stored, "moved": self.moved,
                "flagged": self.flagged, "left_deleted": self.left_deleted,
                "held": sorted(self.held), "awaiting_move": len(self._pending)}

    def _once(self, key: str, level: int, msg: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, msg, *args)

    # -- UID state -------------------------------------------------------------------------------
    def adopt(self, uidvalidity: int) -> None:
        """Take the folder's UIDVALIDITY from SELECT: keep the UID state when it is the same,
        start over (a baseline) when it changed."""
        raw = self.port.state_get(self.state_key)
        st = json.loads(raw) if raw else {}
        if st.get("uidvalidity") == uidvalidity:
            self.last_uid = st.get("last_uid")
            for uid in st.get("held", []):
                self.held.setdefault(int(uid), "could not be fetched before")
        else:
            if st:
                log.warning("imap: UIDVALIDITY of %s changed from %s to %d: UIDs start over; mails"
                            " already handled are recognised by Message-ID and bytes and not sent"
                            " again", self.s.folder, st.get("uidvalidity"), uidvalidity)
            self.last_uid = None
            self.held.clear()
            self._pending.clear()
            self._copied.clear()
            self.uidvalidity = uidvalidity
            self.port.state_set(self.state_key, self._state())
        if self.uidvalidity is not None and self.uidvalidity != uidvalidity:
            self._pending.clear()
            self._copied.clear()
        self.uidvalidity = uidvalidity

    def _state(self, last_uid: int | None = None, held: dict | None = None) -> str:
        return json.dumps({"uidvalidity": self.uidvalidity,
                           "last_uid": self.last_uid if last_uid is None else last_uid,
                           "held": sorted(self.held if held is None else held)})

    def _ref(self, uid: int) -> str:
        return f"imap:{self.uidvalidity}:{uid}"

    # -- one pass over the folder ----------------------------------------------------------------
    async def _search(self, *criteria: str) -> list[int]:
        conn = self.conn
        assert conn is not None
        resp = await conn.command("UID SEARCH", "SEARCH", *criteria, uid=True)
        return parse_search(resp.lines)

    async def sync(self, conn: Connection, stop: asyncio.Event) -> None:
        """One pass: take every new mail, move what is decided. Raises Failure."""
        self.conn = conn
        conn.news = False
        flag_mode = not self.s.processed_folder
        baseline = self._baseline = self.last_uid is None
        present: list[int] | None = None
        if baseline:
            # No UID history for this UIDVALIDITY: every mail still in the folder is new when
            # handled mails are moved away; when they are only flagged, the unseen ones are.
            present = await self._search("ALL")
            new = await self._search("UNSEEN", "UNDELETED") if flag_mode else \
                await self._search("UNDELETED")
            leftovers: list[int] = []
        else:
            new = [u for u in await self._search("UID", f"{self.last_uid + 1}:*")
                   if u > self.last_uid]
            # Stored before but not yet moved/flagged (a crash or a lost connection in between).
            leftovers = [u for u in await self._search("UNSEEN", "UNDELETED")
                         if u <= self.last_uid and u not in self._pending]
            new = sorted(set(new) | set(self.held))
        # a held mail waits HELD_RETRY (from its last try in this process) before the next
        new = [u for u in new if u not in self.held
               or time.monotonic() - self._held_at.get(u, -HELD_RETRY) >= HELD_RETRY]
        for uid in leftovers:
            mail_id = self.port.stored_mail_id(self._ref(uid))
            if mail_id is not None:
                self._pending[uid] = mail_id
        todo = []
        for uid in new:
            mail_id = self.port.stored_mail_id(self._ref(uid))
            if mail_id is not None:  # committed before a crash, moved not yet
                self._pending[uid] = mail_id
                self._advance(uid)
            else:
                todo.append(uid)
        complete = await self._take(todo, stop)
        if baseline and complete:
            top = max((present or []) + new, default=0)
            self.port.state_set(self.state_key, self._state(last_uid=top))
            self.last_uid = top
            self._baseline = False
        await self._finish(stop, wait=True)

    def _advance(self, uid: int) -> None:
        if not self._baseline and self.last_uid is not None and uid > self.last_uid:
            self.last_uid = uid
            self.port.state_set(self.state_key, self._state())

    async def _take(self, uids: list[int], stop: asyncio.Event) -> bool:
        """Fetch and store ``uids``: sizes first, then bodies in batches of at most
        FETCH_MAX_UIDS mails and FETCH_MAX_BYTES bytes, suspects (a mail whose fetch killed
        the connection) alone and last. Returns False when a stop cut it short."""
        if not uids:
            return True
        conn = self.conn
        assert conn is not None
        sizes: dict[int, int] = {}

        async def size(batch: list[int], text: str) -> None:
            resp = await conn.command("UID FETCH RFC822.SIZE", "FETCH", text,
                                      "(UID RFC822.SIZE)", uid=True, fetch=True)
            sizes.update(parse_sizes(resp.lines))

        await self._each_batch(uids, "UID FETCH  (UID RFC822.SIZE)", size)
        gone = [u for u in uids if u not in sizes]
        was_held = [u for u in gone if u in self.held]
        for uid in was_held:  # removed by the operator: fine
            del self.held[uid]
            log.info("imap: held UID %d is no longer in %s", uid, self.s.folder)
            self.port.state_set(self.state_key, self._state())
        self._vanish([u for u in gone if u not in was_held])
        groups: list[list[int]] = []
        group: list[int] = []
        total = 0
        for uid in (u for u in uids if u in sizes and not self._strikes.get(u)):
            if group and (len(group) >= FETCH_MAX_UIDS or total + sizes[uid] > FETCH_MAX_BYTES):
                groups.append(group)
                group, total = [], 0
            group.append(uid)
            total += sizes[uid]
        if group:
            groups.append(group)
        groups += [[u] for u in uids if u in sizes and self._strikes.get(u)]
        for group in groups:
            if stop.is_set():
                return False
            await self._fetch(group)
            await self._finish(stop, wait=False)  # move what is decided while fetching on
        return True

    async def _fetch(self, uids: list[int]) -> None:
        conn = self.conn
        assert conn is not None
        failure: Failure | None = None
        text = uid_set(uid_ranges(uids))  # at most FETCH_MAX_UIDS: a short line
        try:
            resp = await conn.command("UID FETCH BODY", "FETCH", text, "(UID BODY.PEEK[])",
                                      uid=True, fetch=True)
            lines = resp.lines
        except Failure as f:
            failure, lines = f, f.partial
        bodies = parse_fetch(lines)
        faults.point("imap-after-fetch")
        for uid in uids:
            if uid in bodies:
                self._store(uid, bodies[uid])
        missing = [u for u in uids if u not in bodies]
        if failure is None or failure.code == "EXPUNGEISSUED":
            self._vanish(missing)  # answered OK without a body: expunged by another client
            return
        if not missing:
            return
        if isinstance(failure, Dead) or failure.kind in ("network", "busy"):
            uid = missing[0]  # the mail in transfer when the connection died
            self._strikes[uid] = self._strikes.get(uid, 0) + 1
            if self._strikes[uid] >= STRIKES_TO_HOLD or uid in self.held:
                self._hold(uid, f"its fetch ended the connection {self._strikes[uid]} times"
                                f" ({failure.answer})")
            raise failure
        if len(uids) > 1:  # a NO/BAD for the batch: find the mail it is about, one by one
            for uid in missing:
                await self._fetch([uid])
            return
        self._hold(uids[0], failure.answer)

    def _hold(self, uid: int, why: str) -> None:
        """Leave a mail that cannot be fetched in the folder and go on with the others."""
        self._strikes.pop(uid, None)
        first = uid not in self.held
        self.held[uid] = why
        self._held_at[uid] = time.monotonic()
        if not self._baseline and (self.last_uid is None or uid > self.last_uid):
            self.last_uid = uid
        self.port.state_set(self.state_key, self._state())
        if first:
            self.on_error(f"UID {uid} in {self.s.folder} could not be fetched: {why}; it stays in"
                        f" the folder and is tried again in {HELD_RETRY / 60:g} min and at each"
                        f" start; the other mails go on")

    def _vanish(self, uids: list[int]) -> None:
        """Mails we were about to take are gone: another reader is taking them."""
        if not uids:
            return
        for uid in uids:
            self.held.pop(uid, None)
        now = time.monotonic()
        self._vanished = [t for t in self._vanished if now - t < VANISH_WINDOW] + [now] * len(uids)
        log.warning("imap: UID %s vanished from %s before it could be fetched (expunged by"
                    " another client)", ",".join(map(str, uids)), self.s.folder)
        if len(self._vanished) >= VANISHED_TO_PAUSE:
            self._vanished.clear()
            raise SecondConsumer(
                f"vanish {self.s.folder}",
                f"mails vanish from {self.s.folder!r} before this bridge can take them: another"
                f" program reads this folder (a second storingsbridge without the lock, an old"
                f" install, a mail rule). Only one reader may take mails from a folder: stop"
                f" the other one")

    def _store(self, uid: int, data: bytes) -> None:
        # During a baseline the last UID is written only at its end (a crash repeats it).
        last = self.last_uid if self._baseline else max(self.last_uid or 0, uid)
        held = {u: w for u, w in self.held.items() if u != uid}
        mail_id = self.port.store_mail(
            RawMail(data=data, source="imap", source_ref=self._ref(uid)),
            state=(self.state_key, self._state(last_uid=last, held=held)))
        self.last_uid, self.held = last, held
        self._strikes.pop(uid, None)
        faults.point("imap-after-commit")
        self.stored += 1
        self.last_mail_at = time.time()
        self._pending[uid] = mail_id
        log.info("imap: mail %d stored from UID %d of %s (%d bytes)", mail_id, uid,
                 self.s.folder, len(data))

    # -- moving what is done ---------------------------------------------------------------------
    def _batches(self, uids: list[int], command: str) -> list[tuple[list[int], str]]:
        overhead = len(command) + 12  # the tag, spaces and CRLF
        return uid_batches(uids, overhead=overhead, max_uids=self._max_uids,
                           max_line=self._max_line)

    async def _finish(self, stop: asyncio.Event, *, wait: bool) -> None:
        """Move (or flag) every committed mail whose outcome is known; with ``wait``, wait
        briefly for the others first (woken by the processor, not by polling)."""
        if not self._pending:
            return
        ids = list(self._pending.values())
        timeout = min(self.s.timeout, OUTCOME_WAIT) if wait else 0.0
        if timeout and not stop.is_set():
            conn = self.conn
            assert conn is not None
            got = await conn.wait_any(self.port.wait_outcomes(ids, timeout), stop.wait(),
                                      timeout=timeout + 1)
            outcomes = got if got is not None else await self.port.wait_outcomes(ids, 0)
        else:
            outcomes = await self.port.wait_outcomes(ids, 0)
        groups: dict[str, list[int]] = {}
        waiting = 0
        for uid, mail_id in self._pending.items():
            outcome = outcomes.get(mail_id, "gone")  # "gone": purged meanwhile
            if outcome is None:
                waiting += 1
                continue
            dest = self.s.rejected_folder if outcome == "rejected" else self.s.processed_folder
            groups.setdefault(dest, []).append(uid)
        if waiting and wait:
            log.info("imap: %d stored mails still being processed; moved later", waiting)
        for dest, uids in groups.items():
            await self._each_batch(sorted(uids), f"UID MOVE  {mailbox_arg(dest)}",
                                   lambda batch, text, d=dest: self._dispose(batch, text, d))

    async def _each_batch(self, uids: list[int], command: str, run) -> None:
        """``await run(batch, uid_set_text)`` for each batch of ``uids`` that fits the command
        line. A BAD to a batch of several UIDs (a server with a shorter line limit than
        MAX_LINE) halves the batches from then on and runs that batch again."""
        for batch, text in self._batches(uids, command):
            try:
                await run(batch, text)
            except Failure as f:
                if not (f.answer.startswith("BAD") and len(batch) > 1):
                    raise
                self._max_uids = max(1, min(self._max_uids, len(batch)) // 2)
                self._max_line = max(200, min(self._max_line, len(text) + len(command)) // 2)
                self._once("smaller-batches", logging.WARNING,
                           "imap: %s answered %s to a command naming %d UIDs (%d octets);"
                           " using batches of at most %d UIDs and %d octets from now on",
                           self.s.host, f.answer, len(batch), len(text), self._max_uids,
                           self._max_line)
                await self._each_batch(batch, command, run)

    async def _dispose(self, uids: list[int], uidset: str, dest: str) -> None:
        conn = self.conn
        assert conn is not None
        if not dest:
            await conn.command("UID STORE \\Seen", "STORE", uidset, "+FLAGS.SILENT",
                               r"(\Seen)", uid=True, untagged="FETCH")
            self.flagged += len(uids)
        elif conn.has("MOVE"):
            await conn.command(f"UID MOVE {dest}", "MOVE", uidset, mailbox_arg(dest), uid=True)
            self.moved += len(uids)
        else:
            if not self._copied.issuperset(uids):
                await conn.command(f"UID COPY {dest}", "COPY", uidset, mailbox_arg(dest),
                                   uid=True)
                self._copied.update(uids)
            await conn.command("UID STORE \\Deleted", "STORE", uidset, "+FLAGS.SILENT",
                               r"(\Deleted)", uid=True, untagged="FETCH")
            if conn.has("UIDPLUS"):
                # RFC 4315: expunges exactly these UIDs, never another client's
                await conn.command("UID EXPUNGE", "EXPUNGE", uidset, uid=True)
                self.moved += len(uids)
            else:
                self.left_deleted += len(uids)
            self._copied.difference_update(uids)
        for uid in uids:
            self._pending.pop(uid, None)
        log.info("imap: %s UID %s %s", "flagged" if not dest else "moved", uidset,
                 f"to {dest}" if dest else "\\Seen")
