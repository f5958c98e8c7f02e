"""The one interface every channel implements, and what a channel module provides.

A channel module (``bridge/channels/<type>.py``, or a package such as ``cloud/``) provides
the three functions of :class:`ChannelModule`:

- ``parse_config(section, base_dir)`` -> its settings (a frozen dataclass) for the
  ``[channel.<type>]`` table;
- ``create(settings, port)`` -> a :class:`Channel`; ``port`` is the
  :class:`bridge.port.ChannelPort`, the channel's only way into the application;
- ``check(settings, port)`` -> problems for ``bridge check`` (``port``: a
  :class:`bridge.port.CheckPort`), as ``key:0: what`` lines; ``": warning:"`` in a line
  makes it a warning.

The dispatcher calls :meth:`Channel.send` for each delivery and reads the pacing
attributes; the supervisor runs :meth:`Channel.run` as a long-running task (connections,
upkeep) and :meth:`Channel.close` at the end; the web server mounts the routes of
:meth:`Channel.routes` (e.g. the Cloud API webhook) and the metrics exporter adds
:meth:`Channel.metrics`. Inbound messages go to ``port.inbound`` (the same path for every
channel). A channel never imports an intake, the store, the renderer or the web server.

:class:`BaseChannel` gives the defaults (no own rate cap, no pacing, no receipts, no
routes, no metrics, nothing to close, an idle ``run``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from bridge.config import Section, SettingsTable
    from bridge.port import ChannelPort, CheckPort


@dataclass(frozen=True)
class Outgoing:
    """One message to one recipient."""

    delivery_id: int
    to: str  # E.164 ("+31612345678") or "user:<business-scoped id>"
    text: str
    kind: Literal["notice", "reply"]
    notice_id: int | None = None
    # the template the text was rendered from: "notices/storing_nieuw.j2" for a notice,
    # "replies/welcome.j2" for a reply (None: not known)
    template: str | None = None
    report: dict | None = None  # the notice's report (JSON), for channel-side templates
    window_open: bool | None = None  # recipient wrote within 24 h (None: not looked up)
    attempt: int = 1


SendStatus = Literal["sent", "retry", "failed", "paused"]
# Which limit a "retry" answer says was hit: the sender's as a whole (e.g. Cloud API 130429,
# 80007, HTTP 429: the dispatcher lowers its global rate) or one recipient's (Cloud API
# 131056: only that recipient waits).
RateLimit = Literal["global", "recipient"]


@dataclass(frozen=True)
class SendResult:
    """What became of one send.

    - sent: accepted by the channel (``provider_id`` e.g. the Cloud API's wamid);
    - retry: transient; try again later (``retry_after`` seconds, or the dispatcher's backoff);
    - failed: permanent for this message (``unreachable``: counts towards removing the
      subscriber);
    - paused: the channel cannot send at all now (token, policy, broker down); the delivery
      waits without using up an attempt.

    ``rate_limit`` (with ``retry``): the answer was a rate limit, ``"global"`` (the
    dispatcher slows down as a whole, honouring ``retry_after`` for every send) or
    ``"recipient"`` (only this recipient waits, ``retry_after`` seconds). Neither uses up
    an attempt: the delivery waits for the shared rate (global) or for its recipient.
    """

    status: SendStatus
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    unreachable: bool = False
    rate_limit: RateLimit | None = None

    @classmethod
    def ok(cls, provider_id: str | None = None) -> "SendResult":
        return cls("sent", provider_id=provider_id)


# -- what a channel contributes to the web server and the metrics ------------------------------
@dataclass(frozen=True)
class WebOptions:
    """What the ``[web]`` table says to a channel's routes: whether a webhook is wanted,
    and the names of the environment variables holding its verify token and the secret
    that signs its requests (``web.webhook``, ``web.verify_token_env``,
    ``web.app_secret_env``)."""

    webhook: bool
    verify_token_env: str
    app_secret_env: str


@dataclass(frozen=True)
class HttpRequest:
    """One request to a channel's route, read in full (``body``: the raw bytes, for
    signature checks; at most ``web.max_body``)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # case-insensitive names
    body: bytes


@dataclass(frozen=True)
class HttpResponse:
    status: int = 200
    text: str = ""
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Route:
    """One HTTP route a channel contributes (e.g. ``POST /webhook``)."""

    method: Literal["GET", "POST"]
    path: str
    handler: Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class Metric:
    """One metric family a channel contributes to ``/metrics`` (Prometheus).

    ``name`` without ``_total`` (a counter gets it on export); ``samples`` maps label values
    (in the order of ``labels``) to the value. A family with the name of one of the
    bridge's own (``bridge_channel_errors``) adds its samples to it.
    """

    name: str
    help: str
    kind: Literal["counter", "gauge"]
    labels: tuple[str, ...] = ()
    samples: Mapping[tuple[str, ...], float] = field(default_factory=dict)


# -- the channel ----------------------------------------------------------------------------------
class Channel(Protocol):
    name: str
    max_rate: float | None  # messages/s this channel allows (None: no cap of its own)
    min_interval: float  # seconds between two messages to the same recipient
    jitter: float  # extra random delay (s) added between sends, 0 for none
    wants_window: bool  # does send() need Outgoing.window_open?
    # The channel reports delivery later (ChannelPort.delivery_status): then only a
    # delivered/read receipt proves a subscriber reachable, not acceptance.
    receipts: bool

    @property
    def paused(self) -> str | None:
        """Why the channel cannot send right now, or None."""
        ...

    async def send(self, msg: Outgoing) -> SendResult:
        """Send one message. Never raises for the peer's errors: they are a SendResult."""
        ...

    async def run(self) -> None:
        """Long-running upkeep (connections, inbound, probes). Returns only when cancelled."""
        ...

    async def close(self) -> None:
        """Release connections and save state; called once when the daemon stops."""
        ...

    def describe(self) -> dict[str, object]:
        """State for `bridge status` and /healthz (JSON-able)."""
        ...

    def routes(self, options: WebOptions) -> Sequence[Route]:
        """HTTP routes for the web server to mount (the Cloud API's webhook). Called once
        when the web server is built; raises :class:`bridge.config.ConfigError` when a
        secret the routes need is not set."""
        ...

    def metrics(self) -> Sequence[Metric]:
        """The channel's own metrics, read at each scrape."""
        ...

    def initiate_problem(self, reply: str) -> str | None:
        """Why the reply named ``reply`` (``replies/<reply>.j2``, e.g. the "welcome" of an
        import) cannot go to people who have not written to us, or None when it can (the
        Cloud API needs an approved template for that)."""
        ...


class BaseChannel:
    """Defaults for the members of :class:`Channel` most channels do not need."""

    name: str = "channel"
    max_rate: float | None = None
    min_interval: float = 0.0
    jitter: float = 0.0
    wants_window: bool = False
    receipts: bool = False
    paused: str | None = None

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to keep up: wait until cancelled

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {"type": self.name, "state": "paused" if self.paused else "ready"}

    def routes(self, options: WebOptions) -> Sequence[Route]:
        return ()

    def metrics(self) -> Sequence[Metric]:
        return ()

    def initiate_problem(self, reply: str) -> str | None:
        return None


class ChannelModule(Protocol):
    """What ``bridge.config.channel_module(type)`` returns: a channel module."""

    def parse_config(self, sec: Section, base: Path) -> SettingsTable:
        """The ``[channel.<type>]`` table -> settings; raises ConfigError naming the key."""
        ...

    def create(self, settings: SettingsTable, port: ChannelPort) -> Channel:
        """The channel for ``settings`` (connects only in ``run``)."""
        ...

    def check(self, settings: SettingsTable, port: CheckPort) -> list[str]:
        """Problems for ``bridge check`` (``key:0: what``; ``: warning:`` for warnings)."""
        ...
