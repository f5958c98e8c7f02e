"""The one small interface every channel implements.

A channel module (bridge/channels/<type>.py) provides:

- ``parse_config(section: Section, base_dir: Path) -> <frozen dataclass>`` for its
  ``[channel.<type>]`` table;
- ``create(settings, ctx: ChannelContext) -> Channel``.

The dispatcher calls :meth:`Channel.send` for each delivery and reads the pacing
attributes; the supervisor runs :meth:`Channel.run` as a long-running task (connections,
inbound messages, webhooks). Inbound messages go to ``ctx.inbound`` (the same path for
every channel). A channel never imports an intake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Protocol

from bridge.core.models import InboundMessage


@dataclass(frozen=True)
class Outgoing:
    """One message to one recipient."""

    delivery_id: int
    to: str  # E.164 ("+31612345678") or "user:<business-scoped id>"
    text: str
    kind: Literal["notice", "reply"]
    notice_id: int | None = None
    template: str | None = None  # notice template name, e.g. "notices/storing_nieuw.j2"
    report: dict | None = None  # the notice's report (JSON), for channel-side templates
    window_open: bool | None = None  # recipient wrote within 24 h (None: not looked up)
    attempt: int = 1


SendStatus = Literal["sent", "retry", "failed", "paused"]


@dataclass(frozen=True)
class SendResult:
    """What became of one send.

    - sent: accepted by the channel (``provider_id`` e.g. the Cloud API's wamid);
    - retry: transient; try again later (``retry_after`` seconds, or the dispatcher's backoff);
    - failed: permanent for this message (``unreachable``: counts towards removing the
      subscriber);
    - paused: the channel cannot send at all now (token, policy, broker down); the delivery
      waits without using up an attempt.
    """

    status: SendStatus
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    unreachable: bool = False

    @classmethod
    def ok(cls, provider_id: str | None = None) -> "SendResult":
        return cls("sent", provider_id=provider_id)


InboundSink = Callable[[InboundMessage], Awaitable[Any]]
StatusSink = Callable[[str, str, "str | None", bool], Awaitable[Any]]


@dataclass
class ChannelContext:
    """What a channel gets from the application."""

    inbound: InboundSink  # hand over an inbound message; returns once it is committed
    status: StatusSink | None = None  # (provider_id, state, error, unreachable) from receipts
    renderer: Any = None  # bridge.core.render.Renderer, for channel-side templates
    store: Any = None  # bridge.store.Store, for the channel's own small state
    extra: dict = field(default_factory=dict)


class Channel(Protocol):
    name: str
    max_rate: float | None  # messages/s this channel allows (None: no cap of its own)
    min_interval: float  # seconds between two messages to the same recipient
    jitter: float  # extra random delay (s) added between sends, 0 for none
    wants_window: bool  # does send() need Outgoing.window_open?
    # Optional, default False: the channel reports delivery later (ChannelContext.status).
    # Then only a delivered/read receipt proves a subscriber reachable, not acceptance.
    receipts: bool

    @property
    def paused(self) -> str | None:
        """Why the channel cannot send right now, or None."""

    async def send(self, msg: Outgoing) -> SendResult: ...

    async def run(self) -> None:
        """Long-running upkeep (connections, inbound). Returns only when cancelled or done."""

    def describe(self) -> dict:
        """State for `bridge status` and /healthz."""
