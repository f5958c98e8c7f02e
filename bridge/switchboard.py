"""The application's side of :class:`bridge.port.ChannelPort`: where channels plug in.

One :class:`Switchboard` per App. It hands inbound messages to the inbound path, moves
deliveries forward on the channel's later reports, requeues, keeps the channel's small
state and keyed hashes in the store, and renders channel-side template strings in the
notices' sandbox. A channel gets this object and nothing else of the application.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Callable, Sequence, TypeVar

from bridge.core.models import OutageReport
from bridge.core.render import RenderError, Renderer
from bridge.port import (InboundEvent, KeyedHash, NoticeProgress, ReceiptState, StoreUnavailable,
                         TemplateFailed)
from bridge.store import Store, StoreError, write_problem

T = TypeVar("T")


class NoticeStrings:
    """Channel-side template strings rendered in the notices' sandbox (the
    ``render_for_notice`` of :class:`bridge.port.ChannelPort` and ``CheckPort``)."""

    def __init__(self, renderer: Renderer):
        self._renderer = renderer

    def render_for_notice(self, sources: Sequence[str], report: OutageReport | None,
                          text: str) -> list[str]:
        tekst = re.sub(r"\s+", " ", text or "").strip()
        if report is not None:
            context = {**self._renderer.notice_context(report, None), "tekst": tekst}
        else:
            context = {"r": None, "tekst": tekst}
        try:
            return [self._renderer.render_string(s, context) for s in sources]
        except RenderError as e:
            raise TemplateFailed(str(e)) from e


class Switchboard(NoticeStrings):
    """Implements :class:`bridge.port.ChannelPort` over the store, the inbound path and
    the renderer.

    ``handle_inbound(event)`` commits an inbound event (a message, an identity change, a
    pairing of ids) and its effect durably (:meth:`bridge.inbound.InboundHandler.take`);
    ``unreachable(subscriber_id, in_a_row)``
    is told when a report makes a subscriber unreachable once more; ``commit_sends()``
    commits the dispatcher's sends recorded but not yet committed (a receipt may overtake
    its send's group commit).
    """

    def __init__(self, store: Store, renderer: Renderer, *, max_age_hours: float,
                 handle_inbound: Callable[[InboundEvent], object],
                 unreachable: Callable[[int, int], None] | None = None,
                 commit_sends: Callable[[], None] | None = None,
                 on_unwritable: Callable[[str, str], None] | None = None,
                 on_written: Callable[[], None] | None = None):
        super().__init__(renderer)
        self._on_unwritable = on_unwritable  # (problem, "inbound"): the store is full
        self._on_written = on_written  # an inbound event committed: the store takes writes
        self._store = store
        self._max_age_hours = max_age_hours
        self._handle_inbound = handle_inbound
        self._unreachable = unreachable
        self._commit_sends = commit_sends

    @property
    def dispatch_max_age_hours(self) -> float:
        return self._max_age_hours

    async def inbound(self, event: InboundEvent) -> None:
        try:
            _guard(lambda: self._handle_inbound(event))
        except StoreUnavailable as e:
            if e.problem is not None and self._on_unwritable is not None:
                self._on_unwritable(e.problem, "inbound")
            raise
        if self._on_written is not None:
            self._on_written()

    async def delivery_status(self, provider_id: str, state: ReceiptState,
                              error: str | None = None, unreachable: bool = False) -> None:
        _guard(lambda: self._progress(provider_id, state, error, unreachable))

    def _progress(self, provider_id: str, state: ReceiptState, error: str | None,
                  unreachable: bool) -> None:
        st = self._store
        row = st.deliveries.progress(provider_id, state, error)
        if row is None and self._commit_sends is not None:
            # The send may be recorded but not yet committed (group commit): commit, look again.
            self._commit_sends()
            row = st.deliveries.progress(provider_id, state, error)
        if not (row and row["changed"] and row.get("subscriber_id")):
            return  # unknown, a repeat, or out of order: nothing moves
        if state == "failed" and unreachable:
            n = st.subscribers.unreachable(row["subscriber_id"])
            if self._unreachable is not None:
                self._unreachable(row["subscriber_id"], n)
        elif state in ("delivered", "read"):
            # A channel with receipts: only a receipt shows the number works, not the 200.
            st.subscribers.reachable(row["subscriber_id"])

    def requeue(self, provider_id: str, delay: float, error: str,
                max_attempts: int) -> str | None:
        return _guard(lambda: self._store.deliveries.requeue(
            provider_id, time.time() + delay, error, max_attempts))

    def state_get(self, key: str) -> str | None:
        return _guard(lambda: self._store.state.get(key))

    def state_set(self, key: str, value: str) -> None:
        _guard(lambda: self._store.state.set(key, value))

    def keyed_hash(self, purpose: str, window: float, value: str) -> KeyedHash:
        h, p = _guard(lambda: self._store.subscribers.keyed_hash(purpose, window, value))
        return KeyedHash(h.hex(), p.hex() if p else None)

    def notice_progress(self, notice_id: int) -> NoticeProgress | None:
        def read() -> NoticeProgress | None:
            row = self._store.incidents.notice(notice_id)
            if row is None:
                return None
            counts = self._store.deliveries.notice_counts(notice_id)
            return NoticeProgress(waiting=counts.get("pending", 0) + counts.get("sending", 0),
                                  stale=counts.get("stale", 0),
                                  created_at=float(row["created_at"]))

        return _guard(read)


def _guard(fn: Callable[[], T]) -> T:
    """Run a store operation; the store's own failures become StoreUnavailable."""
    try:
        return fn()
    except (StoreError, sqlite3.Error) as e:
        raise StoreUnavailable(str(e), write_problem(e)) from e
