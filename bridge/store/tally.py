"""Subscribes and unsubscribes counted per hour, for the console's chart.

Only counts: no id, no number. A person who leaves is erased (AVG), so the chart cannot
be made from the subscribers table; instead every subscribe and unsubscribe adds one to
its hour's counter here, in the transaction that made the change. Hours (Unix time //
3600) rather than days, so the chart can show days in any time zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bridge.store.db import Database, now

EVENTS = ("subscribed", "unsubscribed")


class Tally:
    def __init__(self, db: Database):
        self.db = db

    def bump(self, event: str, n: int = 1, at: float | None = None) -> None:
        """Add ``n`` to ``event``'s counter of the hour of ``at`` (default now). Call inside
        the transaction that subscribed or erased."""
        if n <= 0:
            return
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        hour = int((at if at is not None else now()) // 3600)
        self.db.execute(
            "INSERT INTO subscriber_tally (hour, event, n) VALUES (?,?,?)"
            " ON CONFLICT (hour, event) DO UPDATE SET n = n + excluded.n", (hour, event, n))

    def per_day(self, days: int, tz: str, today: date | None = None
                ) -> list[tuple[date, int, int]]:
        """[(day, subscribed, unsubscribed)] for the last ``days`` local days of ``tz``,
        oldest first, today included, days without events as zeros."""
        zone = ZoneInfo(tz)
        today = today or datetime.now(zone).date()
        first = today - timedelta(days=days - 1)
        start = datetime(first.year, first.month, first.day, tzinfo=zone).timestamp()
        out = {first + timedelta(days=i): [0, 0] for i in range(days)}
        for hour, event, n in self.db.execute(
                "SELECT hour, event, n FROM subscriber_tally WHERE hour >= ?",
                (int(start // 3600),)):
            day = datetime.fromtimestamp(hour * 3600, timezone.utc).astimezone(zone).date()
            if day in out:
                out[day][EVENTS.index(event)] += n
        return [(d, s, u) for d, (s, u) in sorted(out.items())]
