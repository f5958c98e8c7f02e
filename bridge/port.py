"""The small declared interface through which the edges reach the application.

- :class:`IntakePort`: what a mail intake (SMTP, IMAP, ``bridge ingest``) may ask;
- :class:`ChannelPort`: what a channel (console, MQTT phone, Cloud API) may ask;
- :class:`CheckPort`: what a channel's ``bridge check`` hook may ask (no store, no sends);
- :class:`StatusPort`: what the web server and the metrics may read.

An edge is handed one object that implements the protocol it needs (implemented on the
application side: :class:`bridge.mailroom.Mailroom`, :class:`bridge.switchboard.Switchboard`,
:class:`bridge.checks.ChannelChecks`, :class:`bridge.app.App`); it never receives the
store, the App, the renderer or the pipeline itself, never runs SQL, and never reaches
for private attributes. Everything an edge may ask of the application is a method here,
so a newcomer reads this file to know what an edge can do.

Errors: a method that writes raises :class:`StoreUnavailable` when the store cannot take the
write now (disk full, locked, I/O error): the edge must then not acknowledge what it holds
(SMTP 451, IMAP leaves the mail, a webhook answers 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Protocol, Sequence

from bridge.core.models import IdentityChange, IdPairing, InboundMessage, OutageReport, RawMail

if TYPE_CHECKING:  # types only: the port itself imports nothing from the shell
    from bridge.channels.base import Channel, SendResult
    from bridge.outbox import Counters
    from bridge.store import Delivery
    from bridge.store.stats import StoreCounts

__all__ = ["ChannelPort", "CheckPort", "Health", "InboundEvent", "IntakePort", "KeyedHash",
           "NoticeProgress", "NoticeTemplates", "RawMail", "ReceiptState", "SampleNotice", "Sending",
           "StatusPort", "StoreUnavailable", "TemplateFailed"]


class StoreUnavailable(RuntimeError):
    """The store could not commit now; nothing was acknowledged and nothing is lost.

    ``problem``: why the store cannot be written at all for now ("database or disk is
    full", "disk I/O error", ...), in which case the daemon is paused on it and logs it
    once a minute itself (the edge need not log each refusal loudly); None for a passing
    failure (e.g. the database locked by another process for too long)."""

    def __init__(self, message: str, problem: str | None = None):
        super().__init__(message)
        self.problem = problem


class IntakePort(Protocol):
    """What a mail intake (SMTP, IMAP, ``bridge ingest``) may ask of the application."""

    def store_mail(self, mail: RawMail, *, state: tuple[str, str] | None = None) -> int:
        """Commit ``mail`` durably (fsync before returning) and return its raw mail id; the
        mail processor is woken. ``state`` = (key, value) is written in the same
        transaction (e.g. the IMAP intake's last UID), so the two never disagree.
        Call before acknowledging the mail to its sender (SMTP 250, IMAP MOVE).

        Raises :class:`StoreUnavailable` when the store cannot commit."""

    def stored_mail_id(self, source_ref: str) -> int | None:
        """The id of the newest raw mail stored with this ``source_ref`` (e.g.
        ``imap:<uidvalidity>:<uid>``), or None: the intake's exactly-once check."""

    def state_get(self, key: str) -> str | None:
        """The intake's own small durable state (e.g. UIDVALIDITY and last UID as JSON)."""

    def state_set(self, key: str, value: str) -> None:
        """Write the intake's state durably. Raises :class:`StoreUnavailable`."""

    async def wait_outcomes(self, mail_ids: Sequence[int],
                            timeout: float) -> Mapping[int, str | None]:
        """Wait up to ``timeout`` seconds until every mail in ``mail_ids`` has an outcome
        (``queued``, ``duplicate``, ``review``, ``rejected``), then return them; a mail
        still being processed maps to None, a mail no longer stored to ``"gone"``.
        Returns early as soon as all are known; woken by the processor, not by polling
        (mails processed by another process are noticed within half a second)."""


# -- channels ------------------------------------------------------------------------------------
# What a channel hands to the application (ChannelPort.inbound): a message a person sent, a
# change of a person's id (a Cloud API ``system`` message), or ids of one person seen
# together (a Cloud API status with ``recipient_id`` and ``recipient_user_id``).
InboundEvent = InboundMessage | IdentityChange | IdPairing

# A delivery's later state as a channel reports it (e.g. a Cloud API status webhook).
ReceiptState = Literal["sent", "delivered", "read", "failed"]


class TemplateFailed(ValueError):
    """A channel-side template string could not be rendered (the message says why)."""


@dataclass(frozen=True)
class KeyedHash:
    """A value remembered without the value: HMAC-SHA256 (hex, 32 chars) under the key of
    the current time epoch, and under the previous epoch's key (None when that key is
    gone). Each key is deleted two epochs after its own, and with it any way to link a
    hash to the value. Compare both when looking something up."""

    current: str
    previous: str | None


@dataclass(frozen=True)
class NoticeProgress:
    """Where a notice's fan-out stands."""

    waiting: int  # deliveries pending or being sent
    stale: int  # deliveries dropped as stale (older than dispatch.max_age_hours)
    created_at: float  # when the notice was made (epoch seconds)


class NoticeTemplates(Protocol):
    """Channel-side templates (e.g. the Cloud API's template parameters)."""

    @property
    def dispatch_max_age_hours(self) -> float:
        """``dispatch.max_age_hours``: unsent deliveries older than this are dropped as
        stale by the dispatcher."""
        ...

    def render_for_notice(self, sources: Sequence[str], report: OutageReport | None,
                          text: str) -> list[str]:
        """Render each of ``sources`` in the notices' sandbox (same filters, limits and
        CPU deadline), with the notice context of ``report`` (``r``, ``waar``, ``diensten``,
        ... as the notice templates see it; only ``r = None`` without a report) plus
        ``tekst``: ``text`` on one line. A source with ``{{``/``{%``/``{#`` is a template,
        anything else one Jinja expression. Returns the texts, normalised, not cut.

        Raises :class:`TemplateFailed` for the first source that fails."""
        ...


class ChannelPort(NoticeTemplates, Protocol):
    """What a channel may ask of the application."""

    async def inbound(self, event: InboundEvent) -> None:
        """Hand over an inbound event: an :class:`InboundMessage`, an
        :class:`IdentityChange` (the subscription follows the person, the old id is
        erased) or an :class:`IdPairing` (the ids are linked to their subscriber). Returns
        once the event, its effect (subscribe, erase, move, link, ...) and any reply are
        committed durably; only then may the channel acknowledge it (webhook 200, MQTT
        PUBACK). Repeats are harmless (messages and identity changes are deduplicated by
        their id; linking twice changes nothing). Raises :class:`StoreUnavailable` (or,
        for a bug, anything else): the channel must not acknowledge, so it comes again."""
        ...

    async def delivery_status(self, provider_id: str, state: ReceiptState,
                              error: str | None = None, unreachable: bool = False) -> None:
        """A later report on a sent message, by the channel's own id (e.g. a wamid).
        States only move forward (sent < delivered < read; failed is final); a report
        that does not move the delivery (a repeat, out of order, unknown id) changes
        nothing. A delivered/read receipt resets the subscriber's unreachable count;
        ``failed`` with ``unreachable`` adds one (the subscriber is removed after
        ``inbound.unreachable_after`` in a row). Raises :class:`StoreUnavailable`."""
        ...

    def requeue(self, provider_id: str, delay: float, error: str,
                max_attempts: int) -> str | None:
        """A notice the channel accepted that failed later for a passing reason: queue it
        again for its subscriber in ``delay`` seconds, while the delivery has had fewer
        than ``max_attempts`` attempts and no newer notice of its incident replaced it.
        Returns the address it goes to again (E.164 or ``user:<id>``), else None.
        Raises :class:`StoreUnavailable`."""
        ...

    def state_get(self, key: str) -> str | None:
        """The channel's own small durable state (e.g. ``cloud:unique-recipients``).
        Raises :class:`StoreUnavailable`."""
        ...

    def state_set(self, key: str, value: str) -> None:
        """Write the channel's state durably. Raises :class:`StoreUnavailable`."""
        ...

    def keyed_hash(self, purpose: str, window: float, value: str) -> KeyedHash:
        """``value`` (e.g. a recipient) as a :class:`KeyedHash` under per-epoch keys of
        ``window`` seconds, one key set per ``purpose``; the same value gives the same hash
        within an epoch, across restarts. Raises :class:`StoreUnavailable`."""
        ...

    def notice_progress(self, notice_id: int) -> NoticeProgress | None:
        """The fan-out of ``notice_id`` (None: no such notice). Counts the notice's
        deliveries: for warnings, not for every send. Raises :class:`StoreUnavailable`."""
        ...


# -- a channel's `bridge check` ---------------------------------------------------------------
@dataclass(frozen=True)
class SampleNotice:
    """A sample report and the notice text the notice templates make of it."""

    report: OutageReport
    text: str


class CheckPort(NoticeTemplates, Protocol):
    """What a channel module's ``check(settings, port)`` may ask (``bridge check``: the
    store is not opened and nothing is sent)."""

    def notice_templates(self) -> frozenset[str]:
        """Short names of the notice templates present (``storing_nieuw`` for
        ``notices/storing_nieuw.j2``); empty when the folder is missing."""
        ...

    def sample_notices(self) -> Sequence[SampleNotice]:
        """One realistic report for every (kind, status), and a minimal one, each with the
        notice text rendered for it."""
        ...


# -- the web server and metrics ---------------------------------------------------------------
@dataclass(frozen=True)
class Health:
    """Store, channel and queue for ``GET /healthz`` (with :class:`Sending`, which judges
    them: see :func:`bridge.sendhealth.overall`)."""

    store_ok: bool
    paused: str | None  # why the channel cannot send, or None
    channel: Mapping[str, object]  # the channel's describe()
    queue_depth: int | None  # deliveries waiting or being sent (None: store not readable)
    uptime_s: float
    # why the store cannot be written now (e.g. "database or disk is full"; processing,
    # sending and inbound are paused until it can), or None
    store_problem: str | None = None


@dataclass(frozen=True)
class Sending:
    """How sending goes (:mod:`bridge.sendhealth`), for ``/healthz``, ``/metrics`` and
    ``bridge status``. ``state``: ``ok``, ``degraded`` (most sends in the window not
    accepted) or ``paused`` (the store, the channel or the operator); ``urgent``: it needs
    an operator now (``/healthz`` answers 503)."""

    state: Literal["ok", "degraded", "paused"]
    reason: str | None
    since: float | None  # when the state began (Unix seconds), when known
    urgent: bool
    rate: float | None  # the dispatcher's current allowed rate, messages/s (None: none here)
    retrying: int  # deliveries waiting for a retry now
    throttled: int  # rate-limit answers since start


class StatusPort(Protocol):
    """What the web server (``/healthz``, ``/metrics``, the channel's routes) may read."""

    # Called as listener(delivery, result, latency_seconds) after each successful send.
    send_listeners: list[Callable[[Delivery, SendResult, float], None]]

    @property
    def channel(self) -> Channel:
        """The channel in use: its routes, metrics and pause state."""
        ...

    def health(self) -> Health:
        """Store, channel and queue now (cheap: index counts only)."""
        ...

    def sending(self, health: Health | None = None) -> Sending:
        """How sending goes now; ``health``: a :meth:`health` just taken (else taken
        here). Cheap: no store scan."""
        ...

    def store_counts(self) -> StoreCounts:
        """The store's counts for metrics, over a read-only connection of its own: slow on
        a large history, so call it in a worker thread, never on the event loop."""
        ...

    def mail_outcomes(self) -> Mapping[str, int]:
        """Mails processed since start, by outcome (queued, duplicate, review, rejected)."""
        ...

    def inbound_effects(self) -> Mapping[str, int]:
        """Inbound messages handled since start, by effect (subscribed, support, ...)."""
        ...

    def send_totals(self) -> Counters | None:
        """The dispatcher's results since start; None when this process has none."""
        ...
