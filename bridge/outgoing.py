"""The message a claimed delivery becomes: :class:`Messages` builds the channel's
:class:`~bridge.channels.base.Outgoing` for the dispatcher (bridge/outbox.py).

A notice's text, template and report are read once and cached (a fan-out sends one notice
to thousands); the 24-hour window of the Cloud API (the subscriber wrote in the last 24 h)
is read for a claimed batch at once (:meth:`Messages.windows`), not once per send.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

from bridge.channels.base import Channel, Outgoing
from bridge.store import Delivery, Store

NOTICES_CACHED = 64  # notices whose texts are kept; the cache is emptied beyond this


class Messages:
    """Outgoing messages of deliveries from one store."""

    def __init__(self, store: Store):
        self.store = store
        self._notices: dict[int, dict] = {}
        # subscriber id -> last inbound message (epoch s, None: never), of the claimed batch
        self._inbound_at: dict[int, float | None] = {}

    def windows(self, batch: Iterable[Delivery]) -> None:
        """Read the last inbound message of the batch's subscribers in one query (judged
        as of the claim: at most the batch's half second of sending earlier)."""
        self._inbound_at = self.store.subscribers.last_inbound_many(
            d.subscriber_id for d in batch
            if d.subscriber_id is not None and d.notice_id is not None)

    def build(self, d: Delivery, channel: Channel) -> Outgoing:
        """The message of delivery ``d`` for ``channel``: a reply, or a notice with its
        template and report (``window_open`` only when the channel wants the window)."""
        if d.notice_id is None:
            return Outgoing(delivery_id=d.id, to=d.to_addr, text=d.reply or "", kind="reply",
                            template=f"replies/{d.reply_name}.j2" if d.reply_name else None,
                            window_open=True, attempt=d.attempts)
        notice = self._notice(d.notice_id)
        window = None
        if channel.wants_window and d.subscriber_id is not None:
            sid = d.subscriber_id
            last = (self._inbound_at[sid] if sid in self._inbound_at
                    else self.store.subscribers.last_inbound_at(sid))
            window = bool(last and time.time() - last < 86400)
        return Outgoing(delivery_id=d.id, to=d.to_addr, text=notice["text"], kind="notice",
                        notice_id=d.notice_id, template=notice["template"],
                        report=notice["report"], window_open=window, attempt=d.attempts)

    def _notice(self, notice_id: int) -> dict:
        n = self._notices.get(notice_id)
        if n is None:
            row = self.store.incidents.notice(notice_id) or {"text": "", "template": "", "report": None}
            n = {"text": row["text"], "template": row["template"],
                 "report": json.loads(row["report"]) if row.get("report") else None}
            if len(self._notices) > NOTICES_CACHED:
                self._notices.clear()
            self._notices[notice_id] = n
        return n
