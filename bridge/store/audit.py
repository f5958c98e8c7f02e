"""The audit log: every change an operator makes (console or CLI), with who and when.

Rows are only added, never changed. ``detail`` holds what changed in words, with numbers
masked (a revealed number is logged as "revealed", never the number).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.db import Database, now


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str  # the console user's name, or "cli:<os user>"
    action: str  # e.g. "review.approve", "sending.pause", "template.save"
    target: str | None  # e.g. "review 4", "notice 12", "notices/storing_nieuw.j2"
    detail: str | None
    address: str | None  # the browser's address (console), None for the CLI


class Audit:
    def __init__(self, db: Database):
        self.db = db

    def record(self, actor: str, action: str, target: str | None = None,
               detail: str | None = None, address: str | None = None) -> int:
        """Add one entry (in the caller's transaction when there is one, so a change and its
        entry commit together). Returns its id."""
        with self.db.tx():
            cur = self.db.execute(
                "INSERT INTO audit (at, actor, action, target, detail, address)"
                " VALUES (?,?,?,?,?,?)", (now(), actor, action, target, detail, address))
        return int(cur.lastrowid)

    def entries(self, limit: int = 100, offset: int = 0, action: str | None = None,
                actor: str | None = None) -> list[AuditEntry]:
        """Newest first; ``action`` matches a prefix ("review" matches "review.approve")."""
        sql, params = "SELECT * FROM audit WHERE 1=1", []
        if action:
            sql += " AND action LIKE ? ESCAPE '\\'"
            params.append(action.replace("%", "\\%").replace("_", "\\_") + "%")
        if actor:
            sql += " AND actor = ?"
            params.append(actor)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        return [AuditEntry(**dict(r)) for r in self.db.execute(sql, tuple(params))]

    def count(self) -> int:
        return self.db.scalar("SELECT count(*) FROM audit") or 0
