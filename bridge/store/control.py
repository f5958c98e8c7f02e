"""Operator controls kept in the store: the global pause of all sending.

An operator pause (console or ``bridge pause``) is a row of the ``state`` table, so every
process sees it: the dispatcher of the daemon treats it like a paused channel (nothing is
claimed, deliveries wait without using attempts, :mod:`bridge.outbox`), and ``bridge
dispatch`` refuses to send. ``bridge resume`` or the console lifts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bridge.store.db import Database, now

PAUSE_KEY = "control:pause"


@dataclass(frozen=True)
class Pause:
    """Sending is paused by a person: who, since when, and why (their words)."""

    by: str
    since: float
    reason: str

    def describe(self) -> str:
        """One line for logs and ``bridge status``: "paused by anna: storing in test"."""
        return f"paused by {self.by}" + (f": {self.reason}" if self.reason else "")


class Control:
    def __init__(self, db: Database):
        self.db = db

    def pause(self, by: str, reason: str = "") -> Pause:
        """Pause all sending (idempotent: an existing pause is kept as it is)."""
        with self.db.tx(durable=True):
            current = self.paused()
            if current is not None:
                return current
            p = Pause(by=by, since=now(), reason=reason.strip())
            self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                            (PAUSE_KEY, json.dumps(p.__dict__)))
        return p

    def resume(self) -> Pause | None:
        """Lift the pause; returns the pause that was lifted, None when there was none."""
        with self.db.tx(durable=True):
            current = self.paused()
            self.db.execute("DELETE FROM state WHERE key=?", (PAUSE_KEY,))
        return current

    def paused(self) -> Pause | None:
        """The operator pause in force, or None (one indexed read: cheap in a loop)."""
        raw = self.db.scalar("SELECT value FROM state WHERE key=?", (PAUSE_KEY,))
        if not raw:
            return None
        doc = json.loads(raw)
        return Pause(by=str(doc.get("by", "?")), since=float(doc.get("since", 0)),
                     reason=str(doc.get("reason", "")))
