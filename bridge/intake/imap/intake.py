"""The IMAP intake: each new mail in one folder becomes a stored raw mail, exactly once.

One mail's life on the server::

    UID FETCH <uids> (UID RFC822.SIZE)      sizes: batches of at most 50 mails / 4 MB
    UID FETCH <uids> (UID BODY.PEEK[])      the mail stays unseen on the server
    port.store_mail(raw, state=...)         raw mail + UID state, one durable transaction
    port.wait_outcomes(ids)                 the processor decides (same pipeline as SMTP)
    UID MOVE <uids> <folder>                rejected -> rejected folder, else processed;
      or UID COPY + UID STORE \\Deleted + UID EXPUNGE (UIDPLUS),
      or UID COPY + UID STORE \\Deleted (no UIDPLUS: never EXPUNGE), or UID STORE \\Seen

Exactly once, by UID (never sequence numbers): the intake's state (through the port) holds
the folder's UIDVALIDITY, the highest UID handled and the UIDs held back. A crash after the
fetch loses nothing (the mail is still in the folder, above the last UID); a crash after the
commit sends nothing twice (the raw mail with that source_ref is found and only moved).
When UIDVALIDITY changes, UIDs start over: the mails are stored again and the pipeline
marks them duplicate by Message-ID and bytes.

Failures and their backoff: :mod:`bridge.intake.imap.failures`; the lock against a second
daemon: :mod:`bridge.intake.imap.lock`; the connection: :mod:`bridge.intake.imap.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time

from bridge import faults
from bridge.config import ConfigError, secret
from bridge.core.models import RawMail
from bridge.intake.imap.client import Connection
from bridge.intake.imap.commands import (MAX_LINE, MAX_UIDS, encode_mailbox, mailbox_arg,
                                         parse_fetch, parse_list, parse_search, parse_sizes,
                                         uid_batches, uid_ranges, uid_set)
from bridge.intake.imap.failures import (REPEATS_TO_PAUSE, Dead, Failure, Failures,
                                         SecondConsumer, Stopping)
from bridge.intake.imap.lock import MailboxLock
from bridge.intake.imap.settings import ImapSettings
from bridge.port import IntakePort, StoreUnavailable

log = logging.getLogger("bridge.intake.imap")

FETCH_MAX_UIDS = 50  # mails per UID FETCH of bodies
FETCH_MAX_BYTES = 4 << 20  # bytes per UID FETCH of bodies (a larger mail is fetched alone)
STRIKES_TO_HOLD = 2  # a mail whose fetch killed the connection this often is held back
HELD_RETRY = 3600.0  # seconds before a held mail is tried again (and at each start)
VANISHED_TO_PAUSE = 2  # mails vanishing under us within VANISH_WINDOW: another reader
VANISH_WINDOW = 900.0
OUTCOME_WAIT = 10.0  # seconds to wait for the pipeline's outcomes before moving later
INSTALL_KEY = "imap:install"
_UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")


class ImapIntake:
    """The ``[imap]`` part: ``run(stop)`` until stopped, ``describe()`` for ``bridge status``.
    Reaches the application only through ``port`` (:class:`bridge.port.IntakePort`)."""

    background = False

    def __init__(self, settings: ImapSettings, port: IntakePort):
        self.s = settings
        self.port = port
        self.state_key = f"imap:{settings.user}@{settings.host}:{settings.port}/{settings.folder}"
        self.failures = Failures(settings.backoff_max)
        self.conn: Connection | None = None
        self.lock: MailboxLock | None = None
        self.connected = False
        self.last_mail_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.paused: str | None = None  # why the intake is paused (and the operator's alert)
        self.paused_at: float | None = None
        self.uidvalidity: int | None = None
        self.last_uid: int | None = None  # None: no baseline yet for this UIDVALIDITY
        self.held: dict[int, str] = {}  # UID -> why it could not be fetched
        self.stored = self.moved = self.flagged = self.left_deleted = self.reconnects = 0
        self.logins = 0
        self._pending: dict[int, int] = {}  # uid -> raw mail id, committed but not moved
        self._copied: set[int] = set()  # copied to their folder, not yet marked \Deleted
        self._strikes: dict[int, int] = {}
        self._held_at: dict[int, float] = {}
        self._vanished: list[float] = []
        self._session_failures = 0
        self._max_uids, self._max_line = MAX_UIDS, MAX_LINE
        self._baseline = False
        self._said: set[str] = set()  # one-time log lines already written
        self._pause_key: tuple | None = None
        self._stop = asyncio.Event()

    # -- status ----------------------------------------------------------------------------------
    def describe(self) -> dict:
        conn = self.conn
        return {
            "server": f"{self.s.host}:{self.s.port}", "folder": self.s.folder,
            "mode": self.s.mode if conn is None or conn.has("IDLE") else "poll",
            "state": "paused" if self.paused else "connected" if self.connected else "waiting",
            "connected": self.connected, "idling": bool(conn and conn.idling),
            "paused": self.paused, "paused_at": self.paused_at,
            # a condition needing an operator (the mail-back alert reads this)
            "alert": self.paused or (f"{len(self.held)} mail(s) could not be fetched"
                                     if self.held else None),
            "last_mail_at": self.last_mail_at, "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "uidvalidity": self.uidvalidity, "last_uid": self.last_uid,
            "stored": self.stored, "moved": self.moved, "flagged": self.flagged,
            "left_deleted": self.left_deleted, "held": sorted(self.held),
            "awaiting_move": len(self._pending), "reconnects": self.reconnects,
            "logins": self.logins,
            "lock": self.lock.held if self.lock else None,
        }

    def _error(self, msg: str, level: int = logging.WARNING) -> None:
        self.last_error = msg
        self.last_error_at = time.time()
        log.log(level, "imap: %s", msg)

    def _once(self, key: str, level: int, msg: str, *args) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, msg, *args)

    # -- the loop --------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            delay = 0.0
            try:
                await self._session(stop)
            except Stopping:
                break
            except Failure as f:
                delay = self._failed(f)
            except StoreUnavailable as e:
                delay = self._failed(Failure("store", f"the store cannot commit: {e}",
                                             kind="network"))
            finally:
                await self._close(stop)
            if stop.is_set():
                break
            if delay:
                self.reconnects += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def _failed(self, f: Failure) -> float:
        """Log ``f`` (the first of a streak as a WARNING with the server's answer, repeats
        quietly), pause on a permanent cause, and return the seconds to wait."""
        s, where = self.s, f"{self.s.host}:{self.s.port}"
        n = self.failures.failed(f)
        self._session_failures += 1
        if f.kind == "login":
            msg = (f"login as {s.user!r} on {where} failed: {f.answer}; retrying in"
                   f" {s.login_backoff:g} s")
            if n == 1:
                self._error(msg, logging.ERROR)
            else:
                self.last_error_at = time.time()
                log.info("imap: %s (%d times in a row)", msg, n)
            return s.login_backoff
        if f.kind in ("permanent", "consumer") or (f.kind == "failed" and n >= REPEATS_TO_PAUSE):
            self._pause(f, n)
            return s.pause_retry
        delay = self.failures.delay(f, max(n, self._session_failures))
        msg = f"{where}: {f}; reconnecting in {delay:g} s"
        if n == 1:
            self._error(msg)
        else:
            self.last_error, self.last_error_at = msg, time.time()
            log.info("imap: %s (%d times in a row)", msg, n)
        return delay

    def _pause(self, f: Failure, n: int) -> None:
        s = self.s
        if f.kind == "consumer":
            reason = f.answer
        elif f.kind == "permanent":
            reason = f"{f.key} refused by {s.host}: {f.answer}"
        else:
            reason = f"{f.key} failed {n} times in a row with the same answer: {f.answer}"
        key = (f.kind, f.key, f.code)
        first = self._pause_key != key
        self._pause_key = key
        self.paused, self.paused_at = reason, self.paused_at if not first else time.time()
        msg = (f"paused: {reason}. Mails stay in {s.folder}; trying again every"
               f" {s.pause_retry:g} s (or restart the daemon once fixed)")
        if first:
            self._error(msg, logging.ERROR if f.kind == "consumer" else logging.WARNING)
        else:
            self.last_error_at = time.time()
            log.info("imap: still %s", msg)

    def _resume(self) -> None:
        self._session_failures = 0
        if self.paused:
            log.warning("imap: resumed: %s no longer holds", self.paused)
            self.paused = self.paused_at = self._pause_key = None

    async def _close(self, stop: asyncio.Event) -> None:
        self.connected = False
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if stop.is_set() and not conn.lost.is_set() and self.lock is not None:
            with contextlib.suppress(Failure, Stopping, OSError):
                await self.lock.release()
        if stop.is_set():
            await conn.logout()
        conn.close()

    def _on_ok(self, key: str) -> None:
        n = self.failures.succeeded(key)
        if n:
            log.info("imap: %s works again after %d failure(s)", key, n)

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.s
        try:
            password = secret(s.password_env, "imap.password_env")
        except ConfigError as e:
            raise Failure("LOGIN", str(e), kind="login") from None
        self.conn = conn = Connection(s, stop, on_ok=self._on_ok)
        await conn.open()
        self.failures.succeeded("connect")
        await conn.login(s.user, password)
        self.logins += 1
        log.info("imap: logged in to %s:%d as %r (%s)", s.host, s.port, s.user, conn.mechanism)
        for folder in dict.fromkeys([s.processed_folder, s.rejected_folder]):
            if folder:
                await self._ensure_folder(folder)
        if s.lock_folder:
            if self.lock is None:
                self.lock = MailboxLock(conn, s.lock_folder, s.folder, self._install_id())
            self.lock.conn = conn
            await self.lock.acquire()
        resp = await conn.select(s.folder)
        uidvalidity = _uidvalidity(resp.lines)
        if uidvalidity is None:
            raise Failure(f"SELECT {s.folder}", "no UIDVALIDITY in the answer")
        self._adopt(uidvalidity)
        polling = s.mode == "poll" or not conn.has("IDLE")
        self.connected = True
        how = "IDLE"
        if polling:
            how = f"polling every {s.poll_interval:g} s"
            if s.mode == "idle":
                how += " (the server has no IDLE)"
        log.info("imap: connected to %s:%d as %s, folder %s (UIDVALIDITY %d, last UID %s), %s",
                 s.host, s.port, s.user, s.folder, self.uidvalidity, self.last_uid, how)
        if s.processed_folder or s.rejected_folder:
            if not conn.has("MOVE") and not conn.has("UIDPLUS"):
                self._once("no-uidplus", logging.WARNING,
                           "imap: %s has neither MOVE nor UIDPLUS: handled mails are copied to"
                           " their folder and left in %s marked \\Deleted, never expunged (a"
                           " plain EXPUNGE would also remove other clients' deleted mails, RFC"
                           " 4549 §4.2.4); a mail client or the server's clean-up removes them",
                           s.host, s.folder)
        while not stop.is_set():
            await self._sync(stop)
            self._resume()
            if stop.is_set():
                break
            if self.lock is not None and self.lock.renew_due() == 0:
                await self.lock.renew()
            wait = s.poll_interval if polling else s.idle_renew
            if self._pending:
                wait = min(wait, 1.0)
            if self.lock is not None and self.lock.held:
                wait = min(wait, max(1.0, self.lock.renew_due()))
            if conn.news:
                continue
            if polling:
                await conn.wait_any(stop.wait(), conn.lost.wait(), timeout=wait)
                if conn.lost.is_set():
                    raise Dead("poll", "connection closed by the server")
            else:
                await conn.idle(wait)

    def _install_id(self) -> str:
        install = self.port.state_get(INSTALL_KEY)
        if not install:
            install = secrets.token_hex(6)
            self.port.state_set(INSTALL_KEY, install)
        return install

    async def _ensure_folder(self, folder: str) -> None:
        conn = self.conn
        assert conn is not None
        resp = await conn.command(f"LIST {folder}", "LIST", '""', mailbox_arg(folder))
        if parse_list(resp.lines):
            return
        try:
            await conn.command(f"CREATE {folder}", "CREATE", mailbox_arg(folder))
            log.info("imap: created folder %s (%s on the wire)", folder, encode_mailbox(folder))
        except Failure as f:
            if f.code != "ALREADYEXISTS":
                if f.kind == "failed" and f.answer.startswith("NO"):
                    f.kind = "permanent"  # a name the server will not take does not change
                raise

    # -- UID state -------------------------------------------------------------------------------
    def _adopt(self, uidvalidity: int) -> None:
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

    async def _sync(self, stop: asyncio.Event) -> None:
        conn = self.conn
        assert conn is not None
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
            failure, lines = f, getattr(f, "partial", None) or []
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
            self._error(f"UID {uid} in {self.s.folder} could not be fetched: {why}; it stays in"
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


def _uidvalidity(lines) -> int | None:
    for x in lines:
        m = _UIDVALIDITY_RE.search(bytes(x))
        if m:
            return int(m.group(1))
    return None
