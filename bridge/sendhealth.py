"""Sending health: a sliding window of send results by reason -> ok or degraded.

The dispatcher tells :class:`SendHealth` every result (:meth:`SendHealth.note`): ``sent``,
``retry`` (a passing refusal: rate limit, HTTP 5xx, timeout), ``failed`` (for good) or
``paused`` (the channel cannot send at all). From the last ``[health] window_s`` seconds
(60 by default) it judges:

- **degraded** when at least ``degraded_share`` (0.5) of at least ``min_results`` (5)
  results were not accepted (retry or failed; paused results are the channel's pause,
  judged apart); while no result arrives, a degraded state holds as long as deliveries
  still wait for a retry; ``urgent`` (``/healthz`` answers 503) once it has lasted
  ``degraded_after_s`` (120 s);
- **ok** otherwise.

:func:`overall` adds what pauses sending outright (the channel's pause, the operator's
pause, a store that cannot be written) to give the state operators see:
``ok``, ``degraded`` or ``paused``, with a reason.

It also writes the log's one WARNING summary per window ("dispatch: last 60 s: 412 sent, 88
retrying (130429 x80, HTTP 500 x8), 0 failed"; nothing when every send was accepted)
instead of a line per retry, and publishes :class:`bridge.events.SendingDegraded` /
:class:`bridge.events.SendingRecovered` when the state changes (the operator alert;
``SendingRecovered`` also once after start, when the first full window is ok, so an alert
told before a restart gets its all-clear).

Memory is bounded: one bucket per second of the window, one entry per delivery waiting
for a retry (dropped when it falls due).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from bridge.config import HealthConfig
from bridge.core.phone import mask_text
from bridge.events import EventBus, SendingDegraded, SendingRecovered
from bridge.logs import eta

log = logging.getLogger("bridge.outbox")

State = Literal["ok", "degraded", "paused"]
Outcome = Literal["sent", "retry", "failed", "paused"]
STATE_VALUE = {"ok": 0, "degraded": 1, "paused": 2}  # the /metrics gauge

# Error codes that mean "over a rate limit" (Cloud API 130429 throughput, 131056 pair
# rate, 80007 WABA rate; HTTP 429). See docs/cloud-api.md. After the adaptive-rate work
# the dispatcher passes the SendResult's typed throttle field instead.
def reason_key(error: str | None) -> str:
    """A short reason to count results by: the error code ("130429"), or the first two
    words when the text starts with a word ("HTTP 500", "network timeout"), masked."""
    words = (error or "").split()
    if not words:
        return "error"
    if words[0].rstrip(":").isdigit():
        key = words[0].rstrip(":")
    else:
        key = " ".join(w.rstrip(":,;") for w in words[:2])
    return mask_text(key[:40])


def _counts(c: collections.Counter[str]) -> str:
    """"130429 x80, HTTP 500 x8" (most frequent first, at most five)."""
    return ", ".join(f"{k} x{n}" for k, n in c.most_common(5))


@dataclass
class _Second:
    second: int
    sent: int = 0
    bad: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class Judgement:
    """The window's verdict (:meth:`SendHealth.judge`)."""

    state: Literal["ok", "degraded"]
    reason: str | None  # why degraded; None when ok
    since: float | None  # when the state began (Unix seconds; None: since start)
    urgent: bool  # degraded for at least degraded_after_s: /healthz answers 503
    sent: int  # results in the window, accepted ...
    not_accepted: int  # ... and not (retry, failed)
    retrying: int  # deliveries waiting for a retry now
    throttled: int  # rate-limit answers since start


class SendHealth:
    """See the module doc. ``clock`` gives Unix seconds (tests pass their own)."""

    def __init__(self, cfg: HealthConfig | None = None, events: EventBus | None = None,
                 clock=time.time):
        self.cfg = cfg or HealthConfig()
        self.events = events
        self.clock = clock
        self._seconds: collections.deque[_Second] = collections.deque()
        self._retrying: dict[int, float] = {}  # delivery id -> when its retry is due
        self.throttled = 0  # rate-limit answers since start (a counter)
        self.state: Literal["ok", "degraded"] = "ok"
        self.reason: str | None = None
        self.since: float | None = None
        # the summary line's interval
        self._summary_start = clock()
        self._sum_sent = 0
        self._sum: dict[str, collections.Counter[str]] = {
            "retry": collections.Counter(), "failed": collections.Counter(),
            "paused": collections.Counter()}
        self._last_judged = 0.0
        self._confirmed = False  # a full window judged ok since start (or since degraded)
        self._window_reason = ""  # the last reason judged from a full window

    # -- input ---------------------------------------------------------------------------------
    def note(self, outcome: Outcome, error: str | None = None, *, delivery_id: int | None = None,
             retry_at: float | None = None, throttled: bool = False) -> None:
        """One send result. ``retry_at`` (Unix seconds): when a ``retry`` falls due;
        ``throttled``: a rate-limit answer (``SendResult.rate_limit`` was set)."""
        now = self.clock()
        if delivery_id is not None:
            if outcome == "retry" and retry_at is not None:
                self._retrying[delivery_id] = retry_at
            else:
                self._retrying.pop(delivery_id, None)
        sec = int(now)
        if not self._seconds or self._seconds[-1].second != sec:
            self._seconds.append(_Second(sec))
        b = self._seconds[-1]
        if outcome == "sent":
            b.sent += 1
            self._sum_sent += 1
        else:
            key = reason_key(error)
            if outcome != "paused":
                b.bad[key] += 1
            self._sum[outcome][key] += 1
            if outcome == "retry" and throttled:
                self.throttled += 1
        if now - self._last_judged >= 1.0 or now - self._summary_start >= self.cfg.window_s:
            self.tick(now)

    # -- judging -------------------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        start = now - self.cfg.window_s
        while self._seconds and self._seconds[0].second < start:
            self._seconds.popleft()

    def retrying(self, now: float | None = None) -> int:
        """Deliveries waiting for a retry now (their retry not yet due)."""
        now = self.clock() if now is None else now
        if len(self._retrying) > 64 or any(t <= now for t in self._retrying.values()):
            self._retrying = {i: t for i, t in self._retrying.items() if t > now}
        return len(self._retrying)

    def tick(self, now: float | None = None) -> None:
        """Judge the window (publishing a change of state) and write the summary line when
        its interval is over. Called with every result and every few seconds by the
        daemon's upkeep, so a state changes even while nothing is sent."""
        now = self.clock() if now is None else now
        self._last_judged = now
        self._trim(now)
        sent = sum(b.sent for b in self._seconds)
        bad: collections.Counter[str] = collections.Counter()
        for b in self._seconds:
            bad.update(b.bad)
        n_bad = sum(bad.values())
        total = sent + n_bad
        reason = self.reason
        if total >= self.cfg.min_results:
            degraded = n_bad / total >= self.cfg.degraded_share
            if degraded:
                reason = self._window_reason = (
                    f"{100 * n_bad / total:.0f} % of {total} sends not accepted in the last"
                    f" {self.cfg.window_s:g} s: {_counts(bad)}")
        elif total == 0:
            waiting = self.retrying(now)
            degraded = self.state == "degraded" and waiting > 0
            reason = (f"{waiting} deliveries wait for a retry; last seen: "
                      f"{self._window_reason}")
        else:
            degraded = self.state == "degraded"  # too few to change the verdict or reason
        if degraded:
            if self.state != "degraded":
                self.state, self.since = "degraded", now
                log.warning("dispatch: sending degraded: %s", reason)
                if self.events is not None:
                    self.events.publish(SendingDegraded(reason=reason, since=now, at=now))
            self.reason = reason
        elif self.state == "degraded":
            was, since = self.reason or "", self.since or now
            self.state, self.reason, self.since = "ok", None, now
            self._confirmed = True
            log.warning("dispatch: sending ok again after %s degraded", eta(now - since))
            if self.events is not None:
                self.events.publish(SendingRecovered(was=was, degraded_for=now - since, at=now))
        elif not self._confirmed and total >= self.cfg.min_results:
            # The first full window since start is ok: said once, so that an alert of
            # degraded sending told before a restart gets its all-clear.
            self._confirmed = True
            if self.events is not None:
                self.events.publish(SendingRecovered(at=now))
        if now - self._summary_start >= self.cfg.window_s:
            self._summary(now)

    def _summary(self, now: float) -> None:
        s = self._sum
        if any(s.values()):
            parts = [f"{self._sum_sent} sent"]
            for name, label in (("retry", "retrying"), ("failed", "failed"),
                                ("paused", "paused")):
                c = s[name]
                n = sum(c.values())
                if n or name != "paused":
                    parts.append(f"{n} {label}" + (f" ({_counts(c)})" if n else ""))
            log.warning("dispatch: last %.0f s: %s", now - self._summary_start, ", ".join(parts))
        self._summary_start = now
        self._sum_sent = 0
        for c in s.values():
            c.clear()

    def judge(self, now: float | None = None) -> Judgement:
        """The window's verdict now (judges the window first)."""
        now = self.clock() if now is None else now
        self.tick(now)
        sent = sum(b.sent for b in self._seconds)
        bad = sum(sum(b.bad.values()) for b in self._seconds)
        urgent = (self.state == "degraded" and self.since is not None
                  and now - self.since >= self.cfg.degraded_after_s)
        return Judgement(state=self.state, reason=self.reason, since=self.since, urgent=urgent,
                         sent=sent, not_accepted=bad, retrying=self.retrying(now),
                         throttled=self.throttled)


@dataclass(frozen=True)
class Verdict:
    """What operators see: the state, why, since when, and whether it needs them now
    (``urgent``: /healthz answers 503)."""

    state: State
    reason: str | None
    since: float | None
    urgent: bool


def overall(j: Judgement | None, *, store_ok: bool = True, store_problem: str | None = None,
            channel_paused: str | None = None, operator_paused: str | None = None) -> Verdict:
    """Combine the window's judgement with what pauses sending outright, first match wins:
    the store (unreachable, or it cannot be written: urgent), the channel's pause
    (urgent), the operator's pause (paused on purpose: not urgent), then the window."""
    if not store_ok:
        return Verdict("paused", "store: not reachable", None, True)
    if store_problem:
        return Verdict("paused", f"store: {store_problem}", None, True)
    if channel_paused:
        return Verdict("paused", f"channel: {channel_paused}", None, True)
    if operator_paused:
        return Verdict("paused", operator_paused, None, False)
    if j is None:
        return Verdict("ok", None, None, False)
    return Verdict(j.state, j.reason, j.since, j.urgent)
