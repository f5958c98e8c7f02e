"""One IMAP connection over aioimaplib's protocol, with deadlines of silence.

aioimaplib (2.0) is used for what it does well: framing, tags, literals in answers, routing
untagged lines to the command that asked. This module wraps it (nothing is patched in
place) where the intake needs more:

- **Deadlines of silence, not of size.** aioimaplib's ``IMAP4`` wraps each command in one
  deadline, so an 11 MB mail on a slow link "times out" while its bytes are still flowing.
  Here a command is dead only when *nothing* has arrived for ``timeout`` seconds
  (:meth:`Connection.io`); every received chunk counts as life.
- **No recursion per line.** ``IMAP4ClientProtocol._handle_responses`` recursed once per
  line, so an answer of more than ~1,000 lines in one read (1,742 ``* n EXPUNGE`` lines
  after a MOVE) raised RecursionError inside ``data_received`` and killed the connection.
  :class:`_Protocol` runs the same steps in a loop (the fix proposed upstream in
  aioimaplib PRs #103/#119/#130 for issue #118); batches of at most 500 UIDs keep answers
  short as well.
- **Login that every server parses.** ``AUTHENTICATE PLAIN`` (RFC 4616, with RFC 4959
  SASL-IR when offered) where the server offers it; otherwise ``LOGIN`` with both
  arguments as RFC 3501 quoted strings, or literals for 8-bit text. aioimaplib sent the
  user name bare, so ``kpn storingen`` failed as if the password were wrong.
- Every wait also ends when the connection is lost (aioimaplib can hang on IDLE to a
  closing server, #110) or the daemon stops.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
from typing import Any, Awaitable, Callable

import aioimaplib
from aioimaplib.aioimaplib import (CRLF, Command, FetchCommand, IncompleteRead,
                                   literal_data_re)

from bridge.intake.imap.commands import mailbox_arg, string_args
from bridge.intake.imap.failures import Dead, Failure, Stopping, refused
from bridge.intake.imap.settings import ImapSettings

_NEWS_RE = re.compile(rb"\* \d+ (?:EXISTS|RECENT)\r\n")
_CHANGES = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")


def answer_text(resp: Any) -> str:
    """The tagged answer's text (``[OVERQUOTA] Quota exceeded``) of an aioimaplib Response."""
    try:
        last = resp.lines[-1] if resp.lines else b""
        return bytes(last).decode("utf-8", "replace") if last else str(resp.result)
    except Exception:
        return str(resp)


class _Protocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib's protocol, reporting each received chunk, parsing answers in a loop, and
    sending queued continuation data (literals, SASL responses) on the server's ``+``."""

    def __init__(self, loop, conn_lost_cb, on_data: Callable[[bytes], None]):
        super().__init__(loop, conn_lost_cb)
        self._on_data = on_data
        self.continuations: list[bytes] = []

    def data_received(self, d: bytes) -> None:
        self._on_data(d)
        super().data_received(d)

    def _handle_responses(self, data: bytes, line_handler, current_cmd=None) -> None:
        # The steps of aioimaplib 2.0.3's recursive version, as a loop: one pass per line.
        while True:
            if not data:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                data = current_cmd.append_literal_data(data)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            line, separator, tail = data.partition(CRLF)
            if not separator:
                raise IncompleteRead(current_cmd, data)
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None
            data = tail

    def _continuation(self, line: bytes) -> None:
        if self.continuations and self.pending_sync_command is not None:
            self.transport.write(self.continuations.pop(0) + CRLF)
            return
        super()._continuation(line)


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned command's error is not news


class Connection:
    """One connection to the server for one session of the intake.

    ``on_ok(key)`` is called after each command the server answered OK (the intake's
    failure memory); ``stop`` ends waits early (except those begun after it was set: the
    last steps of a stop still get their deadline). Errors: :class:`Dead` (lost, silent),
    :class:`~bridge.intake.imap.failures.Failure` (a NO/BAD, kind by its response code),
    :class:`Stopping`."""

    def __init__(self, settings: ImapSettings, stop: asyncio.Event,
                 on_ok: Callable[[str], None] = lambda key: None):
        self.s = settings
        self.stop = stop
        self.on_ok = on_ok
        self.lost = asyncio.Event()
        self.last_rx = 0.0
        self.news = False  # the server announced new mail (EXISTS/RECENT) since cleared
        self.idling = False
        self.mechanism = ""  # how the login went: "AUTHENTICATE PLAIN" or "LOGIN"
        self.bytes_received = 0
        self._tail = b""
        self.protocol: _Protocol | None = None
        self._connect: asyncio.Task | None = None

    # -- plumbing --------------------------------------------------------------------------------
    def _on_data(self, d: bytes) -> None:
        self.last_rx = time.monotonic()
        self.bytes_received += len(d)
        chunk = self._tail + d
        if _NEWS_RE.search(chunk):
            self.news = True
        self._tail = chunk[-40:]

    async def io(self, aw: Awaitable[Any], what: str, timeout: float | None = None) -> Any:
        """Await one network step. It is dead when nothing at all has been received for
        ``timeout`` seconds (default: the setting), however long the step as a whole takes.
        Raises :class:`Dead` (silence, lost connection) or :class:`Stopping`."""
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self.lost.wait())
        stopping = asyncio.ensure_future(self.stop.wait() if not self.stop.is_set()
                                         else asyncio.Event().wait())
        limit = self.s.timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            while True:
                left = max(start, self.last_rx) + limit - time.monotonic()
                if left <= 0:
                    break
                done, _ = await asyncio.wait({task, lost, stopping}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                if done:
                    break
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            lost.cancel()
            stopping.cancel()
        if task.done():
            try:
                return task.result()
            except aioimaplib.AioImapException as e:
                raise Dead(what, f"{type(e).__name__}: {e}") from None
        task.cancel()
        task.add_done_callback(_retrieve)
        if self.lost.is_set():
            raise Dead(what, "connection closed by the server")
        if stopping.done() and not stopping.cancelled():
            raise Stopping(what)
        raise Dead(what, f"no answer within {limit:g} s (dead connection)")

    async def wait_any(self, *aws: Awaitable[Any], timeout: float) -> Any:
        """The first of ``aws`` to finish (its result when it is the first one), or None."""
        tasks = [asyncio.ensure_future(a) for a in aws]
        try:
            done, _ = await asyncio.wait(tasks, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            return tasks[0].result() if tasks[0] in done else None
        finally:
            for t in tasks:
                t.cancel()

    def has(self, capability: str) -> bool:
        """Does the server announce ``capability`` (e.g. ``"MOVE"``, ``"AUTH=PLAIN"``)?"""
        return self.protocol is not None and capability.upper() in {
            c.upper() for c in self.protocol.capabilities}

    # -- session ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (TLS as configured) and wait for the greeting and the capabilities."""
        s = self.s
        ctx = None
        if s.tls == "imaps":
            ctx = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        loop = asyncio.get_running_loop()
        lost = self.lost
        self.protocol = _Protocol(loop, lambda exc: lost.set(), self._on_data)
        protocol = self.protocol
        self._connect = asyncio.ensure_future(
            loop.create_connection(lambda: protocol, s.host, s.port, ssl=ctx))
        try:
            await self.io(asyncio.shield(self._connect), "connect")
        except OSError as e:  # refused, unreachable, DNS, TLS handshake (ssl.SSLError)
            raise Dead("connect", f"{type(e).__name__}: {e}") from None
        await self.io(protocol.wait("AUTH|NONAUTH"), "greeting")

    async def login(self, user: str, password: str) -> None:
        """AUTHENTICATE PLAIN where offered (or configured), else LOGIN with quoted (or
        literal) arguments; then CAPABILITY again (the list after login differs: MOVE,
        UIDPLUS). Raises Failure kind ``login`` for refused credentials."""
        p = self.protocol
        assert p is not None
        mech = self.s.auth_mechanism
        if mech == "auto":
            mech = "plain" if self.has("AUTH=PLAIN") else "login"
        if mech == "login" and self.has("LOGINDISABLED"):
            raise Failure("LOGIN", "the server refuses LOGIN here (LOGINDISABLED) and offers no"
                                   " AUTHENTICATE PLAIN", kind="login")
        if mech == "plain":
            key = "AUTHENTICATE PLAIN"
            token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
            if self.has("SASL-IR"):
                cmd = Command("AUTHENTICATE", p.new_tag(), "PLAIN", token, loop=p.loop)
            else:
                cmd = Command("AUTHENTICATE", p.new_tag(), "PLAIN", loop=p.loop)
                p.continuations = [token.encode()]
            scrub = token
        else:
            key = "LOGIN"
            first, *rest = string_args(user, password)
            cmd = Command("LOGIN", p.new_tag(), first.decode("ascii"), loop=p.loop)
            p.continuations = list(rest)
            scrub = password
        try:
            resp = await self.io(p.execute(cmd, scrub=scrub), key)
        finally:
            p.continuations = []
        if resp.result != "OK":
            raise refused(key, resp.result, answer_text(resp), login=True)
        self.mechanism = key
        self.on_ok("LOGIN")
        async with p.state_condition:
            p.state = aioimaplib.AUTH
            p.state_condition.notify_all()
        await self.io(p.capability(), "CAPABILITY")

    async def command(self, key: str, name: str, *args: str, uid: bool = False,
                      untagged: str | None = None, fetch: bool = False) -> Any:
        """Run one command (``UID <name> args`` with ``uid``) and return aioimaplib's
        Response; a NO or BAD raises :class:`Failure` classified by its response code.
        ``key`` names the command for the failure memory and messages."""
        p = self.protocol
        assert p is not None
        prefix = "UID" if uid else None
        if fetch:
            cmd: Command = FetchCommand(p.new_tag(), *args, prefix=prefix, loop=p.loop)
        else:
            cmd = Command(name, p.new_tag(), *args, prefix=prefix, untagged_resp_name=untagged,
                          loop=p.loop)
        try:
            resp = await self.io(p.execute(cmd), key)
        except Dead as e:
            e.partial = cmd.response.lines  # what did arrive
            raise
        if resp.result != "OK":
            f = refused(key, resp.result, answer_text(resp))
            f.partial = resp.lines
            raise f
        self.on_ok(key)
        return resp

    async def select(self, folder: str) -> Any:
        p = self.protocol
        assert p is not None
        key = f"SELECT {folder}"
        resp = await self.io(p.select(mailbox_arg(folder)), key)
        if resp.result != "OK":
            raise refused(key, resp.result, answer_text(resp))
        self.on_ok(key)
        return resp

    async def idle(self, seconds: float) -> None:
        """IDLE (RFC 2177) until news, ``seconds``, or a stop; then DONE."""
        p = self.protocol
        assert p is not None
        task = asyncio.ensure_future(p.idle())
        ack = asyncio.ensure_future(p.wait_for_idle_response())
        try:
            await self.io(asyncio.wait({task, ack}, return_when=asyncio.FIRST_COMPLETED), "IDLE")
        finally:
            ack.cancel()
        if task.done():  # answered without the "+": refused
            resp = task.result()
            raise refused("IDLE", resp.result, answer_text(resp))
        self.idling = True
        try:
            until = time.monotonic() + seconds
            while not self.news and not self.stop.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                got = await self.wait_any(p.idle_queue.get(), self.stop.wait(), self.lost.wait(),
                                          timeout=left)
                if self.lost.is_set():
                    raise Dead("IDLE", "connection closed by the server during IDLE")
                if isinstance(got, list) and any(w in bytes(x) for x in got for w in _CHANGES):
                    break  # news: end IDLE and look
        finally:
            self.idling = False
        p.idle_done()
        resp = await self.io(task, "IDLE DONE")
        if resp.result != "OK":
            raise refused("IDLE", resp.result, answer_text(resp))
        self.on_ok("IDLE")
        while not p.idle_queue.empty():
            p.idle_queue.get_nowait()

    async def logout(self) -> None:
        p = self.protocol
        if p is None or self.lost.is_set():
            return
        try:
            await self.io(p.logout(), "LOGOUT", timeout=min(2.0, self.s.timeout))
        except (Failure, Stopping, OSError):
            pass

    def close(self) -> None:
        """Drop the connection now (no LOGOUT)."""
        self.idling = False
        p, self.protocol = self.protocol, None
        if p is not None and p.transport is not None:
            p.transport.close()
        task = self._connect
        if task is not None:
            if not task.done():
                task.cancel()
            task.add_done_callback(_retrieve)
