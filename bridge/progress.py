"""Fan-out progress: the dispatcher's log lines about a large notice, and its end event.

For a notice with at least LOG_FROM recipients the log says when its fan-out starts (how
many are left, at what rate, the ETA), every ``dispatch.progress_every`` seconds how far it
is, and when it is finished; every fan-out's end is published as
:class:`bridge.events.FanOutEnded` (mail back mails the failures).

What the lines count (so that after a restart they tell the truth):

- done/total and what is left come from the store (:meth:`Deliveries.notice_open`), read
  when a line is written (after the dispatcher's pending group commit), not from a counter
  of this process: sends before the restart, sends requeued by the channel, deliveries
  superseded or cancelled are all where the store says they are;
- the rate counts only what this process finished since the previous line, over the
  time since then (after a storm: the rate now, not the average with the storm), or since
  it began tracking the fan-out when that line is under MEASURE_AFTER seconds old; for the
  first MEASURE_AFTER seconds (too little to measure) the dispatcher's current allowed
  rate stands in;
- the ETA is what is left at that rate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from bridge.core.phone import mask_text
from bridge.events import EventBus, FanOutEnded
from bridge.logs import eta
from bridge.store import Delivery, Store

log = logging.getLogger("bridge.outbox")

LOG_FROM = 100  # recipients: smaller fan-outs get no progress lines
MEASURE_AFTER = 5.0  # seconds of sending before the measured rate is trusted


@dataclass
class _Fanout:
    total: int
    done: int = 0  # finished by this process since tracking began
    done_at_log: int = 0  # ... of which when the last line was written
    left: int = 0  # unfinished in the store when last read
    started: float = field(default_factory=time.monotonic)
    last_log: float = field(default_factory=time.monotonic)


class FanOutProgress:
    """Progress of the fan-outs the dispatcher is sending.

    ``rate()`` gives the dispatcher's current allowed rate (messages/s); ``flush()``
    commits its pending successful sends (so the store's counts include them)."""

    def __init__(self, store: Store, every: float, rate: Callable[[], float],
                 flush: Callable[[], None], events: EventBus | None = None):
        self.store = store
        self.every = every
        self.rate = rate
        self.flush = flush
        self.events = events
        self._fanouts: dict[int, _Fanout] = {}

    def __contains__(self, notice_id: int) -> bool:
        return notice_id in self._fanouts

    def clear(self) -> None:
        """Forget every fan-out (nothing is claimed or under way: the rest wait for retries,
        or were superseded, cancelled or dropped; tracked anew when claimed again)."""
        self._fanouts.clear()

    def track(self, batch: list[Delivery]) -> None:
        """Start tracking the notices of a claimed batch not tracked yet."""
        for d in batch:
            nid = d.notice_id
            if nid is None or nid in self._fanouts:
                continue
            total, unfinished = self.store.deliveries.notice_open(nid)
            self._fanouts[nid] = f = _Fanout(total=total, left=unfinished)
            if total >= LOG_FROM:
                rate = self.rate()
                if unfinished < total:
                    log.info("dispatch: notice %d: fan-out to %d recipients resumed, %d left,"
                             " %.0f/s, ETA %s", nid, total, unfinished, rate,
                             eta(unfinished / max(rate, 1e-6)))
                else:
                    log.info("dispatch: notice %d: fan-out to %d recipients, %.0f/s, ETA %s",
                             nid, total, rate, eta(total / max(rate, 1e-6)))
            f.started = f.last_log = time.monotonic()

    def advance(self, d: Delivery) -> None:
        """One of the notice's deliveries is finished (sent, failed, superseded, ...)."""
        nid = d.notice_id
        if nid is None:
            return
        f = self._fanouts.get(nid)
        if f is None:
            return
        f.done += 1
        f.left -= 1
        t = time.monotonic()
        if f.left > 0 and not (f.total >= LOG_FROM and t - f.last_log >= self.every):
            return
        left = self._left(nid)
        if left is None:
            return  # the store is busy: judged again at the next one
        f.left = left
        if left <= 0:
            if f.total >= LOG_FROM:
                log.info("dispatch: notice %d: fan-out finished, %d/%d, %d in %.1f s since"
                         " tracking began", nid, f.total, f.total, f.done, t - f.started)
            del self._fanouts[nid]
            self._ended(nid, f.total, t - f.started)
        elif f.total >= LOG_FROM and t - f.last_log >= self.every:
            rate, measured = self.measured(f, t)
            f.last_log, f.done_at_log = t, f.done
            log.info("dispatch: notice %d: %d/%d done, %d left, %.0f/s%s, ETA %s", nid,
                     f.total - left, f.total, left, rate,
                     "" if measured else " (allowed)", eta(left / max(rate, 1e-6)))

    def ended_if_done(self, notice_ids: set[int]) -> None:
        """Notices whose deliveries were finished without a send of this process (the send
        journal's results recorded at start): publish the end of those with none left
        unfinished, as :meth:`advance` does for the fan-outs it sees end."""
        for nid in sorted(notice_ids):
            total, unfinished = self.store.deliveries.notice_open(nid)
            if unfinished > 0:
                continue
            f = self._fanouts.pop(nid, None)
            self._ended(nid, total, time.monotonic() - f.started if f else 0.0)

    def measured(self, f: _Fanout, t: float) -> tuple[float, bool]:
        """(messages/s, measured?): what this process finished since the last line over
        that time (the rate now: not an average over a storm that is over), or since it
        began on the notice when the last line is too recent; the allowed rate while
        there is too little to measure."""
        since = t - f.last_log
        if f.last_log > f.started and since >= MEASURE_AFTER:
            return (f.done - f.done_at_log) / since, True
        elapsed = t - f.started
        if elapsed < MEASURE_AFTER or f.done < 2:
            return self.rate(), False
        return f.done / elapsed, True

    def _left(self, notice_id: int) -> int | None:
        try:
            self.flush()
            return self.store.deliveries.notice_open(notice_id)[1]
        except Exception as e:  # noqa: BLE001 - a progress line never fails a send's record
            log.debug("dispatch: fan-out progress of notice %d not read: %s", notice_id, e)
            return None

    def _ended(self, notice_id: int, total: int, seconds: float) -> None:
        if self.events is None:
            return
        failures = tuple((mask_text(r), n) for r, n in self.store.deliveries.failures(notice_id))
        self.events.publish(FanOutEnded(notice_id=notice_id, recipients=total,
                                        failed=sum(n for _, n in failures), failures=failures,
                                        seconds=seconds))
