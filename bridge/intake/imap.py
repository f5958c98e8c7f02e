"""IMAP intake (aioimaplib): each new mail in one folder becomes a stored raw mail, exactly once.

One mail's life on the server::

    UID FETCH <uid> (UID BODY.PEEK[])       the mail stays unseen on the server
    store: raw mail + last UID, one durable transaction (source_ref "imap:<uidvalidity>:<uid>")
    app.mail_stored(id)                     the processor takes it (same pipeline as SMTP)
    wait for its outcome (briefly)          rejected -> rejected folder, else processed folder
    UID MOVE (or UID COPY + \\Deleted + UID EXPUNGE), or UID STORE +FLAGS (\\Seen)

Exactly once, by UID (never sequence numbers): ``store.state`` holds the folder's UIDVALIDITY
and the highest UID stored. A crash after the fetch loses nothing (the mail is still in the
folder, its UID above the last one stored); a crash after the commit sends nothing twice (the
raw mail with that source_ref is found and only moved). When UIDVALIDITY changes, UIDs start
over: the mails are stored again and the pipeline marks them duplicate by Message-ID and bytes.

aioimaplib hangs in a few places (IDLE answered by a closed connection, TLS mismatches), so
every await here has a deadline and races the connection-lost callback; silence beyond the
deadline counts as a dead connection and leads to a reconnect with exponential backoff.
aioimaplib has no STARTTLS: ``tls`` is ``imaps`` (implicit TLS) or ``none`` (loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import sqlite3
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable

import aioimaplib

from bridge import faults
from bridge.config import ConfigError, Section, secret
from bridge.part import BasePart
from bridge.store import RawMail, StoreError

log = logging.getLogger("bridge.intake.imap")

FETCH_CHUNK = 20  # UIDs per UID FETCH
_EXISTS_RE = re.compile(rb"\* \d+ (?:EXISTS|RECENT)\r\n")
_FETCH_RE = re.compile(rb"^(?:\* )?\d+ FETCH \(")
_UID_RE = re.compile(rb"\bUID (\d+)")
_LITERAL_RE = re.compile(rb"\{(\d+)\}$")
_UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_CHANGES = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")


# -- config ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImapSettings:
    host: str
    user: str
    password_env: str
    port: int = 993
    tls: str = "imaps"  # imaps | none
    tls_ca_file: Path | None = None  # extra CA to trust (a private server's certificate)
    folder: str = "INBOX"
    processed_folder: str = "Processed"  # "" = flag \Seen and leave the mail where it is
    rejected_folder: str = "Rejected"  # "" = flag \Seen and leave the mail where it is
    mode: str = "idle"  # idle | poll
    poll_interval: float = 30.0
    idle_renew: float = 300.0  # re-issue IDLE after this many seconds (RFC 2177: < 29 min)
    timeout: float = 30.0  # deadline on every network wait
    backoff_max: float = 60.0  # cap of the reconnect backoff (1, 2, 4, ... s)
    login_backoff: float = 300.0  # wait after a refused login


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _folder(sec: Section, k: str, default: str) -> str:
    v = sec.str(k, default)
    if v and (not v.isascii() or any(c in v for c in '\r\n\0"\\*%') or v != v.strip()):
        raise sec.fail(k, f"must be a plain ASCII folder name (no quotes, backslashes, * or %),"
                          f" got {v!r}")
    return v


def parse_config(sec: Section, base: Path) -> ImapSettings:
    tls = sec.str("tls", "imaps")
    if isinstance(tls, str) and tls.lower() == "starttls":
        raise sec.fail("tls", "STARTTLS is not supported: aioimaplib has no STARTTLS. Use \"imaps\""
                              " (implicit TLS, usually port 993), or \"none\" to a loopback host"
                              " (e.g. through a local stunnel)")
    if tls not in ("imaps", "none"):
        raise sec.fail("tls", f"must be one of imaps, none, got {tls!r}")
    host = sec.str("host", required=True)
    if not host or any(c.isspace() for c in host):
        raise sec.fail("host", f"must be a host name or address, got {host!r}")
    if tls == "none" and not _is_loopback(host):
        raise sec.fail("tls", f"plain IMAP (\"none\") is only allowed to a loopback host"
                              f" (127.0.0.1, ::1, localhost), not {host!r}: the password and the"
                              f" mails would cross the network unencrypted; use \"imaps\"")
    user = sec.str("user", required=True)
    if not user:
        raise sec.fail("user", "must not be empty")
    password_env = sec.env("password_env")
    if not password_env:
        raise sec.fail("password_env", "is required (the environment variable holding the password)")
    s = ImapSettings(
        host=host,
        port=sec.int("port", 993 if tls == "imaps" else 143, min=1, max=65535),
        tls=tls,
        tls_ca_file=sec.path("tls_ca_file", None, base),
        user=user,
        password_env=password_env,
        folder=_folder(sec, "folder", "INBOX") or "INBOX",
        processed_folder=_folder(sec, "processed_folder", "Processed"),
        rejected_folder=_folder(sec, "rejected_folder", "Rejected"),
        mode=sec.str("mode", "idle", choices=("idle", "poll")),
        poll_interval=sec.float("poll_interval", 30.0, min=0.05, max=3600),
        idle_renew=sec.float("idle_renew", 300.0, min=1, max=25 * 60),
        timeout=sec.float("timeout", 30.0, min=0.5, max=600),
        backoff_max=sec.float("backoff_max", 60.0, min=1, max=3600),
        login_backoff=sec.float("login_backoff", 300.0, min=1, max=86400),
    )
    if s.tls_ca_file and s.tls != "imaps":
        raise sec.fail("tls_ca_file", "only used with tls = \"imaps\"")
    for k in ("processed_folder", "rejected_folder"):
        v = getattr(s, k)
        if v and (v.upper() == s.folder.upper() if "INBOX" in (v.upper(), s.folder.upper())
                  else v == s.folder):
            raise sec.fail(k, f"must differ from folder ({s.folder!r}); leave it empty to flag"
                              f" mails \\Seen instead of moving them")
    sec.done()
    return s


def build(settings: ImapSettings, app) -> "ImapIntake":
    return ImapIntake(settings, app)


# -- errors ------------------------------------------------------------------------------------------
class Dead(Exception):
    """The connection is gone or silent: reconnect."""


class Stopping(Exception):
    """The daemon is stopping: a network wait was given up."""


class LoginRefused(Exception):
    """The server refused the credentials (or there are none): retry slowly."""


class ServerError(Exception):
    """The server answered NO/BAD to something we need: reconnect with backoff."""


def _text(resp) -> str:
    try:
        last = resp.lines[-1] if resp.lines else b""
        return bytes(last).decode("utf-8", "replace") if last else resp.result
    except Exception:
        return str(resp)


def _quote(name: str) -> str:
    return '"' + name + '"'  # names are validated: no quotes or backslashes


# -- aioimaplib with a look at every byte received ---------------------------------------------------
class _Protocol(aioimaplib.IMAP4ClientProtocol):
    def __init__(self, loop, conn_lost_cb, on_data):
        super().__init__(loop, conn_lost_cb)
        self._on_data = on_data

    def data_received(self, d: bytes) -> None:
        self._on_data(d)
        super().data_received(d)


class _Client(aioimaplib.IMAP4):
    """aioimaplib.IMAP4 whose protocol reports each chunk received (for liveness and EXISTS)."""

    def __init__(self, host, port, timeout, conn_lost_cb, ssl_context, on_data):
        self._on_data = on_data
        super().__init__(host=host, port=port, timeout=timeout, conn_lost_cb=conn_lost_cb,
                         ssl_context=ssl_context)

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb, self._on_data)
        self._client_task = local_loop.create_task(local_loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context))


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # mark as retrieved: an abandoned command's error is not news


# -- the intake ----------------------------------------------------------------------------------------
class ImapIntake(BasePart):
    background = False

    def __init__(self, settings: ImapSettings, app):
        self.s = settings
        self.app = app
        self.store = app.store
        self.state_key = f"imap:{settings.user}@{settings.host}:{settings.port}/{settings.folder}"
        self.connected = False
        self.idling = False
        self.last_mail_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.uidvalidity: int | None = None
        self.last_uid: int | None = None  # None: no baseline yet for this UIDVALIDITY
        self.stored = 0
        self.moved = 0
        self.flagged = 0
        self.reconnects = 0
        self._pending: dict[int, int | None] = {}  # uid -> raw mail id, committed but not moved
        self._client: _Client | None = None
        self._lost = asyncio.Event()
        self._stop = asyncio.Event()
        self._dirty = False  # the server announced new mail since the last search began
        self._tail = b""
        self._last_rx = 0.0
        self._polling = settings.mode == "poll"
        self._baseline = False

    # -- status -----------------------------------------------------------------------------------
    def describe(self) -> dict:
        return {
            "server": f"{self.s.host}:{self.s.port}", "folder": self.s.folder,
            "mode": "poll" if self._polling else "idle",
            "connected": self.connected, "idling": self.idling,
            "last_mail_at": self.last_mail_at, "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "uidvalidity": self.uidvalidity, "last_uid": self.last_uid,
            "stored": self.stored, "moved": self.moved, "flagged": self.flagged,
            "awaiting_move": len(self._pending), "reconnects": self.reconnects,
        }

    def _error(self, msg: str, level: int = logging.WARNING) -> None:
        self.last_error = msg
        self.last_error_at = time.time()
        log.log(level, "imap: %s", msg)

    # -- the loop -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        self._stop = stop
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = 0.0
            except Stopping:
                break
            except LoginRefused as e:
                self._error(f"login as {self.s.user!r} on {self.s.host}:{self.s.port} failed: {e};"
                            f" retrying in {self.s.login_backoff:g} s", logging.ERROR)
                delay = self.s.login_backoff
            except (Dead, ServerError, OSError, asyncio.TimeoutError, aioimaplib.AioImapException,
                    StoreError, sqlite3.Error) as e:
                if self.connected:  # it worked for a while: start the backoff over
                    failures = 0
                delay = min(self.s.backoff_max, 2.0 ** failures)
                failures += 1
                what = type(e).__name__ if not str(e) else f"{type(e).__name__}: {e}"
                if isinstance(e, asyncio.TimeoutError):
                    what = f"no answer within {self.s.timeout:g} s"
                self._error(f"{self.s.host}:{self.s.port}: {what}; reconnecting in {delay:g} s")
            finally:
                await self._close()
            if stop.is_set():
                break
            if delay:
                self.reconnects += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> None:
        s = self.s
        try:
            password = secret(s.password_env, "imap.password_env")
        except ConfigError as e:
            raise LoginRefused(str(e)) from None
        ctx = None
        if s.tls == "imaps":
            ctx = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        self._lost = asyncio.Event()
        self._dirty = False
        self._tail = b""
        lost = self._lost
        self._client = client = _Client(s.host, s.port, s.timeout, lambda exc: lost.set(), ctx,
                                        self._on_data)
        await self._io(client.wait_hello_from_server(), "greeting")
        resp = await self._io(client.login(s.user, password), "LOGIN")
        if resp.result != "OK":
            raise LoginRefused(_text(resp))
        # The capabilities before login are not those after (e.g. MOVE, UIDPLUS): ask again.
        await self._io(client.protocol.capability(), "CAPABILITY")
        for folder in {s.processed_folder, s.rejected_folder} - {""}:
            await self._ensure_folder(folder)
        resp = await self._io(client.select(_quote(s.folder)), "SELECT")
        if resp.result != "OK":
            raise ServerError(f"SELECT {s.folder}: {_text(resp)}")
        m = next((_UIDVALIDITY_RE.search(bytes(x)) for x in resp.lines
                  if _UIDVALIDITY_RE.search(bytes(x))), None)
        if not m:
            raise ServerError(f"SELECT {s.folder}: no UIDVALIDITY in the answer")
        self._adopt(int(m.group(1)))
        self._polling = s.mode == "poll" or not client.has_capability("IDLE")
        self.connected = True
        how = "IDLE"
        if self._polling:
            how = f"polling every {s.poll_interval:g} s"
            if s.mode == "idle":
                how += " (the server has no IDLE)"
        log.info("imap: connected to %s:%d as %s, folder %s (UIDVALIDITY %d, last UID %s), %s",
                 s.host, s.port, s.user, s.folder, self.uidvalidity, self.last_uid, how)
        while not stop.is_set():
            await self._sync(stop)
            if stop.is_set():
                break
            if self._polling:
                await self._poll_wait(stop)
            else:
                await self._idle(stop)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), min(2.0, s.timeout))

    async def _close(self) -> None:
        self.connected = False
        self.idling = False
        client, self._client = self._client, None
        if client is None:
            return
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()
        task = getattr(client, "_client_task", None)
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            task.add_done_callback(_retrieve)
        if getattr(client, "_idle_waiter", None) is not None:
            client._idle_waiter.cancel()

    def _on_data(self, d: bytes) -> None:
        self._last_rx = time.monotonic()
        chunk = self._tail + d
        if _EXISTS_RE.search(chunk):
            self._dirty = True
        self._tail = chunk[-40:]

    async def _io(self, aw: Awaitable[Any], what: str, timeout: float | None = None) -> Any:
        """Await one network step with a deadline, racing the connection's loss."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self._lost.wait())
        # A stop cuts a wait short, but once stopping, the last steps (IDLE DONE, moves of
        # mails already processed, LOGOUT) still get their deadline.
        stopping = asyncio.ensure_future(self._stop.wait() if not self._stop.is_set()
                                         else asyncio.Event().wait())
        limit = self.s.timeout if timeout is None else timeout
        try:
            done, _ = await asyncio.wait({task, lost, stopping}, timeout=limit,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            lost.cancel()
            stopping.cancel()
        if task in done:
            return task.result()
        task.cancel()
        task.add_done_callback(_retrieve)
        if lost in done or self._lost.is_set():
            raise Dead(f"{what}: connection closed by the server")
        if stopping in done:
            raise Stopping(what)
        raise Dead(f"{what}: no answer within {limit:g} s (dead connection)")

    async def _ensure_folder(self, folder: str) -> None:
        client = self._client
        resp = await self._io(client.list('""', _quote(folder)), f"LIST {folder}")
        if resp.result == "OK" and any(bytes(x).strip() for x in resp.lines[:-1]):
            return
        resp = await self._io(client.create(_quote(folder)), f"CREATE {folder}")
        if resp.result != "OK" and b"ALREADYEXISTS" not in b" ".join(bytes(x) for x in resp.lines):
            raise ServerError(f"cannot create folder {folder!r}: {_text(resp)}")
        if resp.result == "OK":
            log.info("imap: created folder %s", folder)

    # -- UID state --------------------------------------------------------------------------------
    def _adopt(self, uidvalidity: int) -> None:
        raw = self.store.state.get(self.state_key)
        st = json.loads(raw) if raw else {}
        if st.get("uidvalidity") == uidvalidity:
            self.last_uid = st.get("last_uid")
        else:
            if st:
                log.warning("imap: UIDVALIDITY of %s changed from %s to %d: UIDs start over; mails"
                            " already handled are recognised by Message-ID and bytes and not sent"
                            " again", self.s.folder, st.get("uidvalidity"), uidvalidity)
            self.last_uid = None
            self._pending.clear()
            self.store.state.set(self.state_key, json.dumps(
                {"uidvalidity": uidvalidity, "last_uid": None}))
        if self.uidvalidity is not None and self.uidvalidity != uidvalidity:
            self._pending.clear()
        self.uidvalidity = uidvalidity

    def _save_state(self, last_uid: int | None = None) -> None:
        self.store.state.set(self.state_key, json.dumps(
            {"uidvalidity": self.uidvalidity,
             "last_uid": self.last_uid if last_uid is None else last_uid}))

    # -- one pass over the folder -----------------------------------------------------------------
    async def _search(self, *criteria: str) -> list[int]:
        resp = await self._io(self._client.uid_search(*criteria, charset=None),
                              f"UID SEARCH {' '.join(criteria)}")
        if resp.result != "OK":
            raise ServerError(f"UID SEARCH {' '.join(criteria)}: {_text(resp)}")
        out: set[int] = set()
        for line in resp.lines[:-1]:
            line = bytes(line).strip()
            if line.upper().startswith(b"SEARCH"):
                line = line[6:]
            if line and all(t.isdigit() for t in line.split()):
                out.update(int(t) for t in line.split())
        return sorted(out)

    async def _sync(self, stop: asyncio.Event) -> None:
        self._dirty = False
        complete = False
        flag_mode = not self.s.processed_folder
        baseline = self._baseline = self.last_uid is None
        if baseline:
            # No UID history for this UIDVALIDITY: every mail still in the folder is new when
            # handled mails are moved away; when they are only flagged, the unseen ones are.
            everything = await self._search("ALL")
            new = await self._search("UNSEEN", "UNDELETED") if flag_mode else \
                await self._search("UNDELETED")
            leftovers: list[int] = []
        else:
            new = [u for u in await self._search("UID", f"{self.last_uid + 1}:*")
                   if u > self.last_uid]
            # Stored before but not yet moved/flagged (a crash or a lost connection in between).
            leftovers = [u for u in await self._search("UNSEEN", "UNDELETED")
                         if u <= self.last_uid and u not in self._pending]
        for uid in leftovers:
            stored = self.store.mails.by_source_ref(self._ref(uid))
            if stored is not None:
                self._pending[uid] = stored.id
        for i in range(0, len(new), FETCH_CHUNK):
            if stop.is_set():
                break
            await self._fetch_and_store(new[i:i + FETCH_CHUNK])
        else:
            complete = True
        if baseline and complete:
            top = max(everything + new, default=0)
            self._save_state(top)
            self.last_uid = top
            self._baseline = False
        await self._finish(stop)

    def _ref(self, uid: int) -> str:
        return f"imap:{self.uidvalidity}:{uid}"

    async def _fetch_and_store(self, uids: list[int]) -> None:
        todo = []
        for uid in uids:
            stored = self.store.mails.by_source_ref(self._ref(uid))
            if stored is not None:  # committed before a crash, moved not yet
                self._pending[uid] = stored.id
                self._advance(uid)
            else:
                todo.append(uid)
        if not todo:
            return
        uidset = ",".join(map(str, todo))
        resp = await self._io(self._client.uid("fetch", uidset, "(UID BODY.PEEK[])"),
                              f"UID FETCH {uidset}")
        if resp.result != "OK":
            raise ServerError(f"UID FETCH {uidset}: {_text(resp)}")
        bodies = parse_fetch(resp.lines)
        faults.point("imap-after-fetch")
        for uid in todo:
            data = bodies.get(uid)
            if data is None:  # expunged by someone else meanwhile
                log.warning("imap: UID %d vanished before it could be fetched", uid)
                continue
            # During a baseline the last UID is written only at its end (a crash repeats it).
            last = self.last_uid if self._baseline else max(self.last_uid or 0, uid)
            with self.store.tx(durable=True):
                mail_id = self.store.mails.add(RawMail(data=data, source="imap",
                                                       source_ref=self._ref(uid)))
                self._save_state(last)
            self.last_uid = last
            faults.point("imap-after-commit")
            self.stored += 1
            self.last_mail_at = time.time()
            self._pending[uid] = mail_id
            log.info("imap: mail %d stored from UID %d of %s (%d bytes)", mail_id, uid,
                     self.s.folder, len(data))
            self.app.mail_stored(mail_id)

    def _advance(self, uid: int) -> None:
        if not self._baseline and self.last_uid is not None and uid > self.last_uid:
            self._save_state(uid)
            self.last_uid = uid

    async def _finish(self, stop: asyncio.Event) -> None:
        """Move (or flag) every committed mail whose outcome is known; wait for it briefly."""
        if not self._pending:
            return
        deadline = time.monotonic() + min(self.s.timeout, 10.0)
        groups: dict[str, list[int]] = {}
        while True:
            groups.clear()
            waiting = 0
            outcomes = self._outcomes([i for i in self._pending.values() if i is not None])
            for uid, mail_id in self._pending.items():
                outcome = outcomes.get(mail_id, "gone")  # "gone": purged meanwhile
                if outcome is None:
                    waiting += 1
                    continue
                dest = self.s.rejected_folder if outcome == "rejected" else self.s.processed_folder
                groups.setdefault(dest, []).append(uid)
            if not waiting or stop.is_set() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        if waiting:
            log.info("imap: %d stored mails still being processed; moved later", waiting)
        for dest, uids in groups.items():
            await self._dispose(sorted(uids), dest)
            for uid in uids:
                self._pending.pop(uid, None)

    def _outcomes(self, ids: list[int]) -> dict[int, str | None]:
        """Outcome per raw mail id (None: not processed yet), without loading the bytes."""
        out: dict[int, str | None] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = self.store.db.execute(
                f"SELECT id, outcome FROM raw_mails WHERE id IN ({','.join('?' * len(chunk))})",
                tuple(chunk))
            out.update((r[0], r[1]) for r in rows)
        return out

    async def _dispose(self, uids: list[int], dest: str) -> None:
        client = self._client
        uidset = ",".join(map(str, uids))
        if not dest:
            await self._ok(client.uid("store", uidset, "+FLAGS.SILENT", r"(\Seen)"),
                           f"UID STORE {uidset} +FLAGS (\\Seen)")
            self.flagged += len(uids)
            return
        if client.has_capability("MOVE"):
            await self._ok(client.uid("move", uidset, _quote(dest)), f"UID MOVE {uidset} {dest}")
        else:
            await self._ok(client.uid("copy", uidset, _quote(dest)), f"UID COPY {uidset} {dest}")
            await self._ok(client.uid("store", uidset, "+FLAGS.SILENT", r"(\Deleted)"),
                           f"UID STORE {uidset} +FLAGS (\\Deleted)")
            if client.has_capability("UIDPLUS"):
                await self._ok(client.uid("expunge", uidset), f"UID EXPUNGE {uidset}")
            else:
                await self._ok(client.expunge(), "EXPUNGE")
        self.moved += len(uids)
        log.info("imap: moved UID %s to %s", uidset, dest)

    async def _ok(self, aw: Awaitable[Any], what: str):
        resp = await self._io(aw, what)
        if resp.result != "OK":
            raise ServerError(f"{what}: {_text(resp)}")
        return resp

    # -- waiting for news -----------------------------------------------------------------------
    async def _poll_wait(self, stop: asyncio.Event) -> None:
        wait = self.s.poll_interval if not self._pending else min(self.s.poll_interval, 1.0)
        if self._dirty:
            return
        await self._wait_any(stop.wait(), self._lost.wait(), timeout=wait)
        if self._lost.is_set():
            raise Dead("connection closed by the server")

    async def _idle(self, stop: asyncio.Event) -> None:
        client = self._client
        renew = self.s.idle_renew if not self._pending else min(self.s.idle_renew, 1.0)
        # idle_start hangs when the server closes instead of answering (aioimaplib #110).
        idle = await self._io(client.idle_start(timeout=renew + self.s.timeout), "IDLE")
        self.idling = True
        try:
            until = time.monotonic() + renew
            while not self._dirty and not stop.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                got = await self._wait_any(client.protocol.idle_queue.get(), stop.wait(),
                                           self._lost.wait(), timeout=left)
                if self._lost.is_set():
                    raise Dead("connection closed by the server during IDLE")
                if isinstance(got, list) and any(w in bytes(line) for line in got for w in _CHANGES):
                    break  # news: end IDLE and look
        finally:
            self.idling = False
        client.idle_done()
        resp = await self._io(idle, "IDLE DONE")
        if resp.result != "OK":
            raise ServerError(f"IDLE: {_text(resp)}")
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                client.protocol.idle_queue.get_nowait()

    async def _wait_any(self, *aws: Awaitable[Any], timeout: float) -> Any:
        tasks = [asyncio.ensure_future(a) for a in aws]
        try:
            done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return tasks[0].result() if tasks[0] in done else None
        finally:
            for t in tasks:
                t.cancel()


def parse_fetch(lines: list) -> dict[int, bytes]:
    """UID -> raw bytes from the lines of a ``UID FETCH (UID BODY.PEEK[])`` answer.

    aioimaplib gives each ``n FETCH (... {size}`` line as bytes and the literal that follows
    as a bytearray; the UID may come before or after the literal.
    """
    out: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None

    def flush():
        if uid is not None and body is not None:
            out[uid] = body

    for item in lines:
        if isinstance(item, bytearray):
            body = bytes(item)
            continue
        line = bytes(item)
        if _FETCH_RE.match(line):
            flush()
            uid, body = None, None
        m = _UID_RE.search(line)
        if m and (_FETCH_RE.match(line) or uid is None):
            uid = int(m.group(1))
    flush()
    return out
