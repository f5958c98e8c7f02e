"""What went wrong with the IMAP server, what kind of wrong it is, and how long to wait.

Kinds (``Failure.kind``) and what the intake does:

=============  ===========================================================================
``network``    connection refused, lost, TLS error, silence beyond ``timeout``: reconnect
               after 1, 2, 4, ... s (``backoff_max`` at most).
``busy``       ``NO [LIMIT]``/``[UNAVAILABLE]``/``[INUSE]`` (RFC 5530): the server is short
               of something for now: reconnect after 5, 10, 20, ... s (``backoff_max`` at
               most), not the login backoff.
``login``      the credentials were refused (or there are none): ``login_backoff``.
``permanent``  an answer that will not change by itself (``[OVERQUOTA]``, ``[NOPERM]``,
               ``[CANNOT]``, a folder name the server refuses): pause, look again every
               ``pause_retry`` s; mails stay in the mailbox.
``failed``     any other NO or BAD: backoff as ``network``; the same command failing the
               same way :data:`REPEATS_TO_PAUSE` times in a row is taken as permanent.
``consumer``   another reader of the folder (a second daemon holding the lock, or mails
               vanishing under us): refuse, pause, look again every ``pause_retry`` s.
=============  ===========================================================================

:class:`Failures` remembers, per command (``"UID MOVE Processed"``, ``"LOGIN"``), how many
times in a row it failed: a command's backoff grows until *that command* succeeds, so a
successful SELECT no longer starts the backoff of a failing MOVE over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.intake.imap.commands import BUSY_CODES, PERMANENT_CODES, response_code

# The same command failing with the same answer this many times in a row is permanent.
REPEATS_TO_PAUSE = 3
BUSY_FIRST_WAIT = 5.0  # seconds before the first retry after NO [LIMIT]/[UNAVAILABLE]/[INUSE]


class Stopping(Exception):
    """The daemon is stopping: a network wait was given up."""


class Failure(Exception):
    """One failed step. ``key`` names the command without its UIDs (``"UID MOVE
    Processed"``), ``answer`` is the server's text (or what happened), ``code`` the RFC 5530
    response code, ``kind`` what to do (see the module docs)."""

    kind = "failed"
    # The answer's lines that did arrive (a FETCH cut short still holds whole mails).
    partial: list = []

    def __init__(self, key: str, answer: str, *, code: str | None = None,
                 kind: str | None = None):
        answer = _shape(answer)
        super().__init__(f"{key}: {answer}")
        self.key = key
        self.answer = answer
        self.code = code
        if kind:
            self.kind = kind


class Dead(Failure):
    """The connection is gone or silent: reconnect."""

    kind = "network"


class SecondConsumer(Failure):
    """Another program reads this folder: refuse to take mails from it."""

    kind = "consumer"


def refused(key: str, result: str, text: str, *, login: bool = False) -> Failure:
    """The Failure for a NO/BAD ``result`` with tagged ``text`` to the command ``key``."""
    code = response_code(text)
    answer = f"{result} {text}".strip()
    if code in BUSY_CODES:
        kind = "busy"
    elif login:  # [AUTHENTICATIONFAILED] and the like (LOGIN_CODES), or no code at all
        kind = "login"
    elif code in PERMANENT_CODES:
        kind = "permanent"
    else:
        kind = "failed"
    return Failure(key, answer, code=code, kind=kind)


@dataclass
class _Streak:
    count: int
    answer: str


class Failures:
    """Consecutive failures per command key, and the backoff they call for.

    ``failed(f)`` returns the number of failures in a row of ``f.key`` with this answer
    (1 the first time: report it); ``succeeded(key)`` ends a streak and returns how long it
    was (report the recovery when > 0)."""

    def __init__(self, backoff_max: float):
        self.backoff_max = backoff_max
        self._streaks: dict[str, _Streak] = {}

    def failed(self, f: Failure) -> int:
        s = self._streaks.get(f.key)
        if s is None or s.answer != _shape(f.answer):
            s = self._streaks[f.key] = _Streak(0, _shape(f.answer))
        s.count += 1
        return s.count

    def succeeded(self, key: str) -> int:
        s = self._streaks.pop(key, None)
        return s.count if s else 0

    def count(self, key: str) -> int:
        s = self._streaks.get(key)
        return s.count if s else 0

    def delay(self, f: Failure, count: int) -> float:
        """Seconds to wait before the next try after the ``count``-th failure of ``f.key``
        (network, failed and busy kinds; the others wait fixed times)."""
        first = BUSY_FIRST_WAIT if f.kind == "busy" else 1.0
        return min(self.backoff_max, first * 2.0 ** (count - 1))

    def clear(self) -> None:
        self._streaks.clear()


def _shape(answer: str) -> str:
    """An answer without its timing noise: Dovecot appends "(0.001 + 0.000 secs)."."""
    return re.sub(r"\s*\([0-9. +]+secs?\)\.?$", "", answer).strip().rstrip(".")
