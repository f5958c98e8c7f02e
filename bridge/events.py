"""Typed in-process events: what happened in the application, for whoever wants to know.

The few places that know publish a frozen event; subscribers (mail back, the operator
console, health) react without the publisher knowing them::

    bus = EventBus()
    bus.subscribe(ChannelPaused, lambda e: print(e.reason))
    bus.publish(ChannelPaused(channel="cloud", reason="190 token expired"))

Rules:

- :meth:`EventBus.publish` is synchronous and runs every subscriber of the event's type
  at once, in the order they subscribed, on the publisher's thread (the event loop in the
  daemon). A subscriber must not block or await: it records what it needs (e.g. a row in
  the durable mail-out queue) and returns; work that waits (SMTP) happens in its own task.
- A subscriber that raises is logged and skipped: an event never breaks the code that
  published it (a mail's outcome stands whether or not a receipt could be queued).
- Events carry ids, counts and short reasons, never a subscriber's number.

Published by (see docs/architecture.md):

==================  ================================================================
MailProcessed       pipeline: a mail got its outcome (queued, duplicate, review, rejected)
ReviewDecided       review: a review item was approved or rejected
FanOutEnded         dispatcher: every delivery of a notice is finished
ChannelPaused       dispatcher: the channel's ``paused`` went from None to a reason
ChannelResumed      dispatcher: ... and back to None
SendingDegraded     send health: most sends in the window were not accepted (a storm)
SendingRecovered    send health: ... and sends are accepted again
DaemonStopping      supervisor: the daemon stops (SIGTERM, or a task that kept crashing)
==================  ================================================================
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

log = logging.getLogger("bridge.events")


@dataclass(frozen=True)
class Event:
    """Base of every event: ``at`` is when it happened (Unix seconds)."""


@dataclass(frozen=True)
class MailProcessed(Event):
    """A stored mail got its outcome (``queued``, ``duplicate``, ``review``, ``rejected``).

    ``recipients`` is the number of subscribers a queued notice went to (0 otherwise).
    Who sent the mail (the forwarder) is in the stored mail (``raw_mails``), which
    subscribers read by ``mail_id``: the outcome's own view of the sender depends on
    the outcome, a subscriber's rules (e.g. receipts) are its own.
    """

    mail_id: int
    outcome: str
    reason: str
    incident_id: int | None = None
    notice_id: int | None = None
    recipients: int = 0
    ticket: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ReviewDecided(Event):
    """A person approved or rejected a review item (``decision``: approved, rejected).

    ``notice_id``/``recipients``: the notice an approval queued; ``reason`` why it was
    rejected, when given; ``by`` who decided, when known (the console's user).
    """

    review_id: int
    mail_id: int
    decision: str
    notice_id: int | None = None
    recipients: int = 0
    reason: str | None = None
    by: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class FanOutEnded(Event):
    """Every delivery of notice ``notice_id`` is finished (sent, failed, superseded, ...).

    ``failures`` is ``((reason, count), ...)``, most frequent first, for the deliveries
    that failed for good; reasons come from the channel and hold no numbers (masked).
    """

    notice_id: int
    recipients: int
    failed: int = 0
    failures: tuple[tuple[str, int], ...] = ()
    seconds: float = 0.0  # from the first claim to the end, as the dispatcher saw it
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ChannelPaused(Event):
    """The channel cannot send at all (token, policy, broker down): ``reason`` says why."""

    channel: str
    reason: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ChannelResumed(Event):
    """The channel sends again; ``was`` is why it had been paused, ``paused_for`` seconds."""

    channel: str
    was: str = ""
    paused_for: float = 0.0
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SendingDegraded(Event):
    """Sending is degraded (:mod:`bridge.sendhealth`): at least ``[health] degraded_share``
    of the send results in the last ``window_s`` seconds were not accepted. ``reason``
    counts them by reason ("96 % of 100 sends not accepted in the last 60 s: 131000 x90,
    HTTP 500 x6"); ``since`` is when it began (Unix seconds)."""

    reason: str
    since: float
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SendingRecovered(Event):
    """Sends are accepted again after :class:`SendingDegraded`; ``was`` its last reason,
    ``degraded_for`` seconds. Also published once after start (``was`` empty) when the
    first full window is ok: an alert told before a restart gets its all-clear."""

    was: str = ""
    degraded_for: float = 0.0
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class DaemonStopping(Event):
    """The daemon stops: ``fatal`` when a task kept crashing (exit status 1), else a signal
    or a request. Published before the ordered stop, so subscribers have that long."""

    reason: str
    fatal: bool = False
    at: float = field(default_factory=time.time)


E = TypeVar("E", bound=Event)


class EventBus:
    """Subscribe handlers by event type; publish runs them synchronously (see module doc)."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable]] = {}

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler(event)`` for every published event of type ``kind`` (exactly that
        type: the events are flat)."""
        self._handlers.setdefault(kind, []).append(handler)

    def publish(self, event: Event) -> None:
        """Run every subscriber of ``type(event)`` now; one that raises is logged, never
        re-raised."""
        for handler in list(self._handlers.get(type(event), ())):
            try:
                handler(event)
            except Exception:
                log.exception("events: a subscriber of %s failed", type(event).__name__)
