"""Earlier versions of templates edited in the console.

Before a template is saved (or restored) its text as it was goes here, with who replaced
it and when; the current text is the file in the editable layer (``var/templates/``, see
:mod:`bridge.template_edit`). Restoring a version saves its text again as the newest.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.db import Database, now


@dataclass(frozen=True)
class TemplateVersion:
    id: int
    name: str  # e.g. "notices/storing_nieuw.j2"
    source: str
    saved_at: float  # when it was replaced
    saved_by: str  # who replaced it
    note: str | None  # "shipped" (the text of templates/), "edited"


class TemplateVersions:
    def __init__(self, db: Database):
        self.db = db

    def keep(self, name: str, source: str, by: str, note: str) -> int:
        with self.db.tx(durable=True):
            cur = self.db.execute(
                "INSERT INTO template_versions (name, source, saved_at, saved_by, note)"
                " VALUES (?,?,?,?,?)", (name, source, now(), by, note))
        return int(cur.lastrowid)

    def of(self, name: str, limit: int = 50) -> list[TemplateVersion]:
        """Newest first."""
        return [TemplateVersion(**dict(r)) for r in self.db.execute(
            "SELECT * FROM template_versions WHERE name=? ORDER BY id DESC LIMIT ?",
            (name, limit))]

    def get(self, version_id: int) -> TemplateVersion | None:
        row = self.db.one("SELECT * FROM template_versions WHERE id=?", (version_id,))
        return TemplateVersion(**dict(row)) if row else None
