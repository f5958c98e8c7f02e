"""Counts of the whole store for metrics, read over a connection of their own.

Counting a large delivery history takes seconds, so the metrics exporter calls
:func:`read_counts` in a worker thread; a read-only connection of its own (WAL readers do
not block the writer) keeps it off the daemon's connection and event loop.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bridge.store.subscribers import UNMATCHED_KEY


@dataclass(frozen=True)
class StoreCounts:
    notices: int  # notices ever made
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, state) -> n
    queue_depth: int = 0  # deliveries waiting or being sent
    subscribers: int = 0
    unmatched_optouts: int = 0  # wishes to stop from an id that matched no subscriber


def read_counts(path: Path) -> StoreCounts:
    """The store's counts over a read-only connection of its own (safe in any thread while
    the daemon writes). Raises sqlite3.Error when the file cannot be read."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        def one(sql: str) -> int:
            return conn.execute(sql).fetchone()[0] or 0

        return StoreCounts(
            notices=one("SELECT count(*) FROM notices"),
            deliveries={(r[0], r[1]): r[2] for r in conn.execute(
                "SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state")},
            queue_depth=one("SELECT count(*) FROM deliveries"
                            " WHERE state IN ('pending', 'sending')"),
            subscribers=one("SELECT count(*) FROM subscribers"),
            unmatched_optouts=_unmatched_optouts(conn),
        )
    finally:
        conn.close()


def _unmatched_optouts(conn: sqlite3.Connection) -> int:
    """Opt-outs from ids that matched no subscriber (kept by bridge.store.subscribers)."""
    row = conn.execute("SELECT value FROM state WHERE key=?", (UNMATCHED_KEY,)).fetchone()
    return int(json.loads(row[0]).get("count", 0)) if row else 0
