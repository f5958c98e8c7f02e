"""A stand-in for the application's ChannelPort, for tests that build a channel alone."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence

from bridge.core.models import OutageReport
from bridge.port import InboundEvent, KeyedHash, NoticeProgress, ReceiptState


class StubPort:
    """Implements bridge.port.ChannelPort in memory: inbound messages go to ``inbound``
    (an async callable; None: a channel that is not expected to receive), receipts are
    recorded in ``statuses``, ``progress`` answers notice_progress."""

    def __init__(self, inbound: Callable[[InboundEvent], Awaitable[object]] | None = None,
                 progress: dict[int, NoticeProgress] | None = None,
                 max_age_hours: float = 12.0):
        self._inbound = inbound
        self.progress = progress or {}
        self.dispatch_max_age_hours = max_age_hours
        self.state: dict[str, str] = {}
        self.statuses: list[tuple[str, str, str | None, bool]] = []

    async def inbound(self, event: InboundEvent) -> None:
        if self._inbound is None:
            raise AssertionError(f"unexpected inbound event {event!r}")
        await self._inbound(event)

    async def delivery_status(self, provider_id: str, state: ReceiptState,
                              error: str | None = None, unreachable: bool = False) -> None:
        self.statuses.append((provider_id, state, error, unreachable))

    def requeue(self, provider_id: str, delay: float, error: str,
                max_attempts: int) -> str | None:
        return None

    def state_get(self, key: str) -> str | None:
        return self.state.get(key)

    def state_set(self, key: str, value: str) -> None:
        self.state[key] = value

    def keyed_hash(self, purpose: str, window: float, value: str) -> KeyedHash:
        h = hmac.new(purpose.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]
        return KeyedHash(h, None)

    def notice_progress(self, notice_id: int) -> NoticeProgress | None:
        return self.progress.get(notice_id)

    def render_for_notice(self, sources: Sequence[str], report: OutageReport | None,
                          text: str) -> list[str]:
        raise AssertionError("no templates in this test")
