"""Incidents (threads of reports by source and ticket) and the notices made for them."""

from __future__ import annotations

import json

from bridge.core.incidents import IncidentState
from bridge.core.models import OutageReport
from bridge.store.db import Database, now


class Incidents:
    def __init__(self, db: Database):
        self.db = db

    def get(self, source: str, ticket: str) -> IncidentState | None:
        row = self.db.one("SELECT * FROM incidents WHERE source=? AND ticket=?", (source, ticket))
        if not row:
            return None
        return IncidentState(
            id=row["id"],
            status=row["status"],
            report=OutageReport.from_json(json.loads(row["report"])),
        )

    def save(self, source: str, report: OutageReport, incident_id: int | None) -> int:
        """Record ``report`` as the incident's latest; returns the incident id."""
        t = now()
        doc = json.dumps(report.to_json(), ensure_ascii=False)
        at = report.sent_at.timestamp() if report.sent_at else None
        if incident_id is None:
            cur = self.db.execute(
                "INSERT INTO incidents (source, ticket, kind, status, report, report_at,"
                " opened_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (source, report.ticket, report.kind, report.status, doc, at, t, t),
            )
            return int(cur.lastrowid)
        self.db.execute(
            "UPDATE incidents SET kind=?, status=?, report=?, report_at=?, updated_at=? WHERE id=?",
            (report.kind, report.status, doc, at, t, incident_id),
        )
        return incident_id

    def add_notice(self, *, incident_id: int | None, raw_mail_id: int | None, kind: str,
                   status: str | None, template: str, text: str, report: OutageReport | None,
                   fallback: bool) -> int:
        cur = self.db.execute(
            "INSERT INTO notices (incident_id, raw_mail_id, kind, status, template, text, report,"
            " fallback, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (incident_id, raw_mail_id, kind, status, template, text,
             json.dumps(report.to_json(), ensure_ascii=False) if report else None,
             int(fallback), now()),
        )
        return int(cur.lastrowid)

    def notice(self, notice_id: int) -> dict | None:
        row = self.db.one("SELECT * FROM notices WHERE id=?", (notice_id,))
        return dict(row) if row else None

    def open_count(self) -> int:
        return self.db.scalar(
            "SELECT count(*) FROM incidents WHERE status NOT IN ('opgelost', 'geannuleerd')") or 0

    def list(self, limit: int = 50) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT id, source, ticket, kind, status, updated_at FROM incidents"
            " ORDER BY updated_at DESC LIMIT ?", (limit,))]
