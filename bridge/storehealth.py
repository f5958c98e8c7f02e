"""Whether the store can be written now, and how the daemon waits while it cannot.

A full disk (SQLITE_FULL), an I/O error (SQLITE_IOERR) or a store file made read-only
while the daemon runs is not a crash: nothing is lost (what was not committed was not
acknowledged) and the operator's fix (free space) needs no restart. So, while the store
cannot be written:

- the supervisor (:mod:`bridge.app`) does not count a task that stopped on it as a crash
  (an I/O or read-only error only while a probe write fails too: :meth:`StoreHealth.failed`):
  the mail processor, the dispatcher and any other part wait here (:meth:`wait_writable`)
  and start again once a probe write commits (:meth:`bridge.store.db.Database.probe_write`),
  probing after 1 s, doubling to :data:`PROBE_MAX` (10 s): the daemon resumes within
  about 10 s of space returning;
- the edges refuse what they cannot commit and lose nothing: SMTP answers 451 (the
  sender's MTA tries again), IMAP leaves mails on the server, the Cloud API webhook
  answers 500 (Meta redelivers), the MQTT channel holds the inbound message unacknowledged;
- the log gets one WARNING a minute (:data:`WARN_EVERY`) with the reason and what was
  refused meanwhile, not a traceback per retry, and one line when writes work again;
- ``/healthz`` shows the reason (:attr:`problem`, via :class:`bridge.port.Health`).

Only a store the daemon cannot write at start stops it (``bridge run`` exits 78, see
:meth:`bridge.store.db.Database.check_writable`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Callable

from bridge.aio import first_of
from bridge.store.db import write_problem
from bridge.store.errors import WRITE_PROBLEMS

log = logging.getLogger("bridge.store")

WARN_EVERY = 60.0  # seconds between WARNING lines while the store cannot be written
PROBE_FIRST = 1.0  # seconds before the first probe write; doubles each time ...
PROBE_MAX = 10.0  # ... up to this
FULL = WRITE_PROBLEMS[sqlite3.SQLITE_FULL]  # "database or disk is full"
CALM = 60.0  # writable this long: a new failure is a new episode (backoff from the start)


class StoreHealth:
    """The store's write health, shared by the supervisor and the edges' app side.

    ``path`` is the store's file (for the log lines). ``probe()`` tries a small durable
    write and returns None when it committed, else why not
    (:meth:`bridge.store.db.Database.probe_write`). ``clock`` is monotonic seconds.
    """

    def __init__(self, probe: Callable[[], str | None], *, path: str = "the store",
                 clock: Callable[[], float] = time.monotonic,
                 warn_every: float = WARN_EVERY, probe_first: float = PROBE_FIRST,
                 probe_max: float = PROBE_MAX):
        self._probe = probe
        self.path = path  # named in the log lines
        self._clock = clock
        self.warn_every = warn_every
        self.probe_first = probe_first
        self.probe_max = probe_max
        self.problem: str | None = None  # why the store cannot be written now, or None
        self.since: float | None = None  # epoch seconds the current episode began
        self._since_mono = 0.0
        self._last_warning: float | None = None
        self._last_resume_log: float | None = None
        self._last_ok = -CALM  # monotonic time the store last became writable again
        self._streak = 0  # episodes in a row without CALM seconds between them
        self.refused: dict[str, int] = {}  # what the edges refused this episode, by edge
        self.waiting: set[str] = set()  # parts waiting for the store now
        self.episodes = 0  # since start (for tests and status)
        self._writable: asyncio.Event | None = None

    # -- reports ----------------------------------------------------------------------------
    def failed(self, part: str, e: BaseException) -> str | None:
        """``part`` stopped on ``e``: when ``e`` means the store cannot be written now,
        note it (and warn, at most once a :attr:`warn_every`) and return the reason; else
        return None (a crash, for the supervisor to count).

        A full disk is always a pause (a probe may fit where a big mail does not). Any
        other write problem (an I/O error, a read-only or unopenable file) is one only
        while a probe write fails too: when the store takes the probe, the error was no
        store-wide write problem (one bad page, a bug) and restarting the part at once
        would repeat it for ever, so it counts as a crash."""
        problem = write_problem(e)
        if problem is None:
            return None
        if problem != FULL and self.problem is None and self._probe() is None:
            return None
        self.unwritable(problem)
        return problem

    def unwritable(self, problem: str, edge: str | None = None) -> None:
        """The store refused a write for ``problem``; ``edge`` (``smtp``, ``webhook``,
        ``mqtt``, ``imap``) refused what it held because of it."""
        now = self._clock()
        if self.problem is None:
            self.episodes += 1
            self._streak = self._streak + 1 if now - self._last_ok < CALM else 1
            self.problem, self.since, self._since_mono = problem, time.time(), now
            self._writable = None
        else:
            self.problem = problem
        if edge is not None:
            self.refused[edge] = self.refused.get(edge, 0) + 1
        if self._last_warning is None or now - self._last_warning >= self.warn_every:
            self._last_warning = now
            self._warn(now)

    def _warn(self, now: float) -> None:
        refused = ", ".join(f"{n} by {edge}" for edge, n in sorted(self.refused.items()))
        log.warning(
            "store: cannot write %s for %.0f s: %s; mail processing, sending and inbound "
            "messages are paused (SMTP answers 451, IMAP leaves mails on the server, webhooks "
            "answer 500), nothing is lost; refused meanwhile: %s; trying again every %g s at "
            "most, and resuming by itself once the store takes writes (free disk space)",
            self.path, now - self._since_mono, self.problem, refused or "nothing",
            self.probe_max)

    def wrote(self) -> None:
        """A write committed: the store is writable (again)."""
        if self.problem is None:
            return
        now = self._clock()
        took = now - self._since_mono
        self._last_ok = now
        level = logging.INFO
        if self._last_resume_log is None or now - self._last_resume_log >= self.warn_every:
            self._last_resume_log = now
            level = logging.WARNING
        log.log(level, "store: writable again after %.0f s (%s); processing, sending and "
                "inbound messages resume (refused meanwhile: %s)", took, self.problem,
                ", ".join(f"{n} by {e}" for e, n in sorted(self.refused.items())) or "nothing")
        self.problem = self.since = None
        self.refused = {}
        if self._writable is not None:
            self._writable.set()

    def probe(self) -> str | None:
        """Try a probe write now: None when it committed, else why not (also noted)."""
        why = self._probe()
        if why is not None:
            self.unwritable(why)
        return why

    # -- waiting ----------------------------------------------------------------------------
    async def wait_writable(self, part: str, stop: asyncio.Event) -> bool:
        """Wait until the store takes a probe write (True) or ``stop`` is set (False).
        Probes after :attr:`probe_first` seconds, doubling up to :attr:`probe_max`; another
        part's successful probe (or any committed write, :meth:`wrote`) ends the wait too."""
        self.waiting.add(part)
        try:
            n = max(0, self._streak - 1)
            while not stop.is_set():
                if self.problem is None:
                    return True
                if self._writable is None:
                    self._writable = asyncio.Event()
                writable = self._writable
                delay = min(self.probe_max, self.probe_first * 2 ** min(n, 16))
                n += 1
                await first_of(stop.wait(), writable.wait(), timeout=delay)
                if stop.is_set():
                    return False
                if writable.is_set() or self.problem is None:
                    return True
                if self.probe() is None:
                    self.wrote()
                    return True
            return False
        finally:
            self.waiting.discard(part)
