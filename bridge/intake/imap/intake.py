"""The IMAP intake: sessions with the server, their failures, pauses and the lock.

Each session: connect, log in (:mod:`.client`), make sure the target folders exist, take
the lock on the folder (:mod:`.lock`), SELECT it, then passes over it (:mod:`.folder`)
between waits (IDLE, or polling). A failure ends the session; :mod:`.failures` says what
kind it is, and :meth:`ImapIntake._failed` how long to wait, or to pause.

Exactly once, by UID (never sequence numbers): the folder's state (through the port) holds
its UIDVALIDITY, the highest UID handled and the UIDs held back. A crash after the fetch
loses nothing (the mail is still in the folder, above the last UID); a crash after the
commit sends nothing twice (the raw mail with that source_ref is found and only moved).
When UIDVALIDITY changes, UIDs start over: the mails are stored again and the pipeline
marks them duplicate by Message-ID and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time

from bridge.config import ConfigError, secret
from bridge.intake.imap.client import Connection
from bridge.intake.imap.commands import encode_mailbox, mailbox_arg, parse_list
from bridge.intake.imap.failures import REPEATS_TO_PAUSE, Dead, Failure, Failures, Stopping
from bridge.intake.imap.folder import Folder
from bridge.intake.imap.lock import MailboxLock
from bridge.intake.imap.settings import ImapSettings
from bridge.part import BasePart
from bridge.port import IntakePort, StoreUnavailable

log = logging.getLogger("bridge.intake.imap")

INSTALL_KEY = "imap:install"  # this installation's id (the lock), kept through the port
_UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")


class ImapIntake(BasePart):
    """The ``[imap]`` part: ``run(stop)`` until stopped, ``describe()`` for ``bridge status``.
    Reaches the application only through ``port`` (:class:`bridge.port.IntakePort`)."""

    background = False

    def __init__(self, settings: ImapSettings, port: IntakePort):
        self.s = settings
        self.port = port
        self.folder = Folder(settings, port, on_error=self._error)
        self.failures = Failures(settings.backoff_max)
        self.conn: Connection | None = None
        self.lock: MailboxLock | None = None
        self.connected = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.paused: str | None = None  # why the intake is paused (and the operator's alert)
        self.paused_at: float | None = None
        self.login_refused: str | None = None  # the refusal, until a login succeeds
        self.reconnects = self.logins = 0
        self._session_failures = 0
        self._said: set[str] = set()  # one-time log lines already written
        self._pause_key: tuple | None = None

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
            "alert": self.paused or self.login_refused or (
                f"{len(self.folder.held)} mail(s) could not be fetched" if self.folder.held
                else None),
            "last_error": self.last_error, "last_error_at": self.last_error_at,
            **self.folder.describe(),
            "reconnects": self.reconnects, "logins": self.logins,
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
        while not stop.is_set():
            delay = 0.0
            try:
                await self._session(stop)
            except Stopping:
                break
            except Failure as f:
                delay = self._failed(f)
            except OSError as e:  # the network, outside a command (a write to a closed socket)
                delay = self._failed(Dead("network", f"{type(e).__name__}: {e}"))
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
            self.login_refused = f"login as {s.user!r} refused: {f.answer}"
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
        msg = (f"paused: {reason.rstrip('.')}. Mails stay in {s.folder}; trying again every"
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
        self.login_refused = None
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
        self.folder.adopt(uidvalidity)
        polling = s.mode == "poll" or not conn.has("IDLE")
        self.connected = True
        how = "IDLE"
        if polling:
            how = f"polling every {s.poll_interval:g} s"
            if s.mode == "idle":
                how += " (the server has no IDLE)"
        log.info("imap: connected to %s:%d as %s, folder %s (UIDVALIDITY %d, last UID %s), %s",
                 s.host, s.port, s.user, s.folder, self.folder.uidvalidity, self.folder.last_uid,
                 how)
        if s.processed_folder or s.rejected_folder:
            if not conn.has("MOVE") and not conn.has("UIDPLUS"):
                self._once("no-uidplus", logging.WARNING,
                           "imap: %s has neither MOVE nor UIDPLUS: handled mails are copied to"
                           " their folder and left in %s marked \\Deleted, never expunged (a"
                           " plain EXPUNGE would also remove other clients' deleted mails, RFC"
                           " 4549 §4.2.4); a mail client or the server's clean-up removes them",
                           s.host, s.folder)
        while not stop.is_set():
            await self.folder.sync(conn, stop)
            self._resume()
            if stop.is_set():
                break
            if self.lock is not None and self.lock.renew_due() == 0:
                await self.lock.renew()
            wait = s.poll_interval if polling else s.idle_renew
            if self.folder.describe()["awaiting_move"]:
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


def _uidvalidity(lines) -> int | None:
    for x in lines:
        m = _UIDVALIDITY_RE.search(bytes(x))
        if m:
            return int(m.group(1))
    return None
