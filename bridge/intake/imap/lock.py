"""One daemon per folder: a lease kept on the IMAP server as a folder name.

Two bridges reading one folder both store the same mails before either moves them, and
customers get every notice twice. Their stores are apart, so the lock must live on the
server. IMAP has no lock command, but creating and renaming a mailbox are atomic: a
CREATE of an existing name fails, and of two RENAMEs of one name only the first finds it.
So the lease is a folder named::

    <lock_folder> <folder id> <install id> <expires>
    storingsbridge-lock 3a7bd3e2 9f1c2b7e40aa 1795862400

- ``folder id``: 8 hex digits of SHA-256 of the watched folder's name (one lease per folder);
- ``install id``: this installation (random, kept in the store): a restart of the same
  install takes its own lease back at once, even after a crash;
- ``expires``: Unix time; the holder renames the folder to a later time every
  :data:`RENEW_EVERY` seconds, so a lease of a daemon that died lapses after
  :data:`LEASE` seconds at most.

Taking a lapsed lease is a RENAME of its folder (only one contender can win it); two
newcomers that CREATE at once both see two leases on the re-list and the higher install
id gives way. A clean stop DELETEs the folder. Only LIST, CREATE, RENAME and DELETE are
used (RFC 3501), so this works on every server that lets the user create folders; where
it does not, the lock is skipped with one warning and the intake relies on noticing
mails vanishing under it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from bridge.intake.imap.client import Connection
from bridge.intake.imap.commands import mailbox_arg, parse_list
from bridge.intake.imap.failures import Dead, Failure, SecondConsumer

log = logging.getLogger("bridge.intake.imap")

LEASE = 600.0  # seconds a lease holds without renewal
RENEW_EVERY = 120.0  # seconds between renewals


@dataclass(frozen=True)
class Lease:
    name: str
    install: str
    expires: int


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


class MailboxLock:
    """The lease on ``folder`` for install ``install``, through ``conn``.

    ``acquire()`` raises :class:`SecondConsumer` when another install holds a live lease;
    ``renew_due()`` says how many seconds until ``renew()`` should run."""

    def __init__(self, conn: Connection, prefix: str, folder: str, install: str):
        self.conn = conn
        self.prefix = prefix
        self.folder = folder
        self.install = install
        self.fid = hashlib.sha256(folder.encode("utf-8")).hexdigest()[:8]
        self.held: str | None = None  # the name of our lease folder
        self.renewed_at = 0.0
        self.unsupported: str | None = None  # the server's answer when it refused the folder

    def _name(self, expires: float) -> str:
        return f"{self.prefix} {self.fid} {self.install} {int(expires)}"

    async def _leases(self) -> list[Lease]:
        resp = await self.conn.command(f"LIST {self.prefix}", "LIST", '""',
                                       mailbox_arg(f"{self.prefix} {self.fid} %"))
        out = []
        for name in parse_list(resp.lines):
            parts = name.rsplit(" ", 3)
            if len(parts) == 4 and parts[0] == self.prefix and parts[1] == self.fid \
                    and parts[3].isdigit():
                out.append(Lease(name, parts[2], int(parts[3])))
        return out

    def _refuse(self, other: Lease) -> SecondConsumer:
        return SecondConsumer(
            f"lock {self.folder}",
            f"another storingsbridge (install {other.install}) reads folder {self.folder!r}"
            f" of this mailbox: it holds the lock (a folder named {self.prefix!r} {self.fid}"
            f" {other.install} …) until {_when(other.expires)}. Only one daemon may read a"
            f" folder (each mail would be"
            f" notified twice): stop the other one; this one takes over once that lock is"
            f" released or has lapsed")

    async def acquire(self) -> None:
        """Take (or take back) the lease. Raises SecondConsumer, Dead."""
        if self.unsupported:
            return
        now = time.time()
        try:
            leases = await self._leases()
            live = [x for x in leases if x.install != self.install and x.expires > now]
            if live:
                raise self._refuse(max(live, key=lambda x: x.expires))
            target = self._name(now + LEASE)
            mine = [x for x in leases if x.install == self.install]
            lapsed = [x for x in leases if x.install != self.install]
            if mine:
                await self._rename(mine[0].name, target)
                for extra in mine[1:]:
                    await self._delete(extra.name)
            elif lapsed:
                old = lapsed[0]
                await self._rename(old.name, target)  # a rival taking it too gets NO
                log.warning("imap: took over the lapsed lock of install %s on %s (expired %s)",
                            old.install, self.folder, _when(old.expires))
                for extra in lapsed[1:]:
                    await self._delete(extra.name)
            else:
                await self.conn.command(f"CREATE {self.prefix}", "CREATE", mailbox_arg(target))
            self.held, self.renewed_at = target, time.monotonic()
            # Two newcomers at once: both see both leases; the lower install id keeps it.
            rivals = [x for x in await self._leases()
                      if x.install != self.install and x.expires > now]
            if rivals and min(x.install for x in rivals) < self.install:
                await self.release()
                raise self._refuse(min(rivals, key=lambda x: x.install))
        except (SecondConsumer, Dead):
            raise
        except Failure as f:
            if f.kind in ("network", "busy"):
                raise
            # A server that refuses the lock folder (no top-level folders, NOPERM): go on
            # without the lock; a second reader is then noticed by mails vanishing.
            self.unsupported = f.answer
            log.warning("imap: cannot keep the lock folder %r on this server (%s): a second"
                        " daemon on %s is noticed only when mails vanish; set imap.lock_folder"
                        " to a name the server allows (e.g. under INBOX)", self.prefix,
                        f.answer, self.folder)

    def renew_due(self) -> float:
        """Seconds until the lease should be renewed (0: now); a large number without one."""
        if self.held is None:
            return 3600.0
        return max(0.0, self.renewed_at + RENEW_EVERY - time.monotonic())

    async def renew(self) -> None:
        """Push the lease's expiry on; if it was taken meanwhile, acquire again (which
        refuses when another daemon holds it now)."""
        if self.held is None:
            return
        target = self._name(time.time() + LEASE)
        try:
            await self._rename(self.held, target)
        except Failure as f:
            if f.kind in ("network", "busy"):
                raise
            self.held = None
            log.warning("imap: the lock folder of %s was gone (%s); taking the lock again",
                        self.folder, f.answer)
            await self.acquire()
            return
        self.held, self.renewed_at = target, time.monotonic()

    async def release(self) -> None:
        """Give the lease up (a clean stop): DELETE our lock folder."""
        if self.held is None:
            return
        name, self.held = self.held, None
        await self._delete(name)

    async def _rename(self, old: str, new: str) -> None:
        await self.conn.command(f"RENAME {self.prefix}", "RENAME", mailbox_arg(old),
                                mailbox_arg(new))

    async def _delete(self, name: str) -> None:
        try:
            await self.conn.command(f"DELETE {self.prefix}", "DELETE", mailbox_arg(name))
        except Failure as f:
            if f.kind == "network":
                raise
            log.info("imap: could not delete lock folder %r: %s", name, f.answer)
