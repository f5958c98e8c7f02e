"""Send results the store could not record yet, kept in the send journal until it can.

The dispatcher (:mod:`bridge.outbox`) holds in memory the results the store refused for a
write problem (a full disk): the successful sends of a group commit that failed, and the
other results whose recording failed. :class:`HeldResults` also writes each of them into
the store's send journal (:mod:`bridge.store.sendjournal`, a pre-allocated file beside the
store that takes writes on a full disk) and zeroes its record once the store took it. A
stop or a crash before then loses nothing: the next start records the journal's results
(:meth:`HeldResults.replay`) before it puts the sends still under way back in the queue,
so a send the channel accepted is not sent again.

Without a journal (it could not be created, e.g. the disk was full at start) or with a
full one, a result is held in memory only, as before the journal: one WARNING says so.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from bridge.channels.base import Channel, SendResult
from bridge.config import DispatchConfig
from bridge.pacing import backoff
from bridge.store import Delivery, Store
from bridge.store.sendjournal import JournalUnusable, Replayed, SendJournal, SendRecord

log = logging.getLogger("bridge.outbox")


def record_of(d: Delivery, r: SendResult, cfg: DispatchConfig, min_interval: float,
              receipts: bool, now: float | None = None) -> SendRecord:
    """The journal record of the result ``r`` of delivery ``d``, as the dispatcher would
    record it (``Dispatcher._record``): a pause or a rate limit is a retry that uses no
    attempt, due after its ``retry_after`` (or the dispatcher's default wait); another
    transient answer a retry after ``retry_after`` or the backoff; ``now`` in epoch s."""
    t = time.time() if now is None else now
    if r.status == "sent":
        return SendRecord(d.id, "sent", r.provider_id,
                          flag=not receipts and d.subscriber_id is not None)
    if r.status == "failed":
        return SendRecord(d.id, "failed", r.error or "failed",
                          flag=r.unreachable and d.subscriber_id is not None)
    if r.status == "paused":
        return SendRecord(d.id, "retry", r.error or "channel paused",
                          due_at=t + (r.retry_after or 5.0), count_attempt=False)
    if r.rate_limit == "recipient":
        return SendRecord(d.id, "retry", r.error or "rate limit per recipient",
                          due_at=t + (r.retry_after or max(min_interval, 1.0)),
                          count_attempt=False)
    if r.rate_limit is not None:
        return SendRecord(d.id, "retry", r.error or "rate limit",
                          due_at=t + (r.retry_after or 0.0), count_attempt=False)
    delay = r.retry_after
    if delay is None:
        delay = backoff(d.attempts, cfg.backoff_base, cfg.backoff_max)
    return SendRecord(d.id, "retry", r.error or "transient error", due_at=t + delay)


class HeldResults:
    """The dispatcher's side of the send journal: open it, replay the last run's records,
    journal the results the store refuses now, zero them once it took them.

    Never raises from :meth:`hold`, :meth:`hold_sent` or :meth:`recorded` (a journal
    that fails is logged and the result stays in memory); :meth:`replay` raises what the
    store raises."""

    def __init__(self, store: Store, cfg: DispatchConfig, channel: Channel,
                 on_unreachable: Callable[[int, int], None] | None = None,
                 on_finished: Callable[[set[int]], None] | None = None):
        self.store = store
        self.cfg = cfg
        self.channel = channel
        self.on_unreachable = on_unreachable  # (subscriber id, count in a row), as outbox's
        # (notice ids) whose deliveries the replay finished: their fan-out may have ended
        self.on_finished = on_finished
        self.journal: SendJournal | None = None
        self._slots: dict[int, int] = {}  # delivery id -> its record's slot
        # the last group commit failed for a write problem: a send's result goes into the
        # journal as it comes back (the next commit is a second away)
        self.refusing = False
        self._warned: set[str] = set()  # the WARNINGs given once: "open", "full", "write"

    @property
    def holding(self) -> int:
        """Results of this run in the journal now (not yet recorded in the store)."""
        return len(self._slots)

    def open(self) -> None:
        """Open (create) the journal, unless open; a journal that cannot be created
        (e.g. a full disk at start) is one WARNING, and sending goes on without it."""
        if self.journal is not None:
            return
        try:
            self.journal = self.store.open_send_journal()
        except OSError as e:
            why = str(e) if isinstance(e, JournalUnusable) else f"{e.strerror or e}"
            self._warn("open", "dispatch: cannot use the send journal %s: %s; results the "
                       "store cannot take (a full disk) are held in memory only, and a stop "
                       "before it takes writes again sends them again",
                       self.store.send_journal_path(), why)

    def replay(self) -> Replayed | None:
        """Record the last run's journaled results in the store (logged), then zero them;
        returns what was recorded (None: nothing to do). Raises what the store raises
        (e.g. StoreFull: the records stay, tried again later)."""
        if self.journal is None or not self.journal.found():
            return None
        done = self.store.replay_sends(self.journal)
        if done.total or done.done_before:
            log.warning("dispatch: recorded %d send results kept in the send journal at the "
                        "last stop (sent %d, not sent again; failed %d; to retry %d; %d "
                        "recorded before)", done.total, done.sent, done.failed, done.retry,
                        done.done_before)
        if done.clear_error:
            log.info("dispatch: could not clear the send journal: %s", done.clear_error)
        return done

    def recover(self, why: str, exclude: set[int]) -> bool:
        """What a start (``why`` "start") or a crashed run ("crash") leaves under way: the
        last stop's journaled results are recorded (:meth:`replay`), then the sends still
        under way go back in the queue (they may go out twice), except the deliveries in
        ``exclude`` (those whose result the dispatcher holds). A fan-out the replay
        finished is passed to ``on_finished`` (its end is published). True when the replay
        recorded a result (a reply's number may just have left the store). Raises what the
        store raises (a full disk: nothing is put back, tried again later)."""
        replayed = self.replay()
        if replayed is not None and self.on_unreachable:
            for subscriber_id, n in replayed.unreachable:
                try:
                    self.on_unreachable(subscriber_id, n)
                except Exception:  # recorded; never a reason not to start
                    log.exception("dispatch: unreachable listener failed for subscriber %d",
                                  subscriber_id)
        if replayed is not None and replayed.notices and self.on_finished:
            try:
                self.on_finished(replayed.notices)
            except Exception:  # recorded; never a reason not to start
                log.exception("dispatch: the fan-out end of notices %s not published",
                              sorted(replayed.notices))
        n = self.store.deliveries.reset_inflight(exclude=exclude)
        if n and why == "start":
            log.warning("dispatch: %d sends were under way at the last stop; sending them again", n)
        elif n:
            log.warning("dispatch: %d claimed deliveries put back in the queue", n)
        return bool(replayed is not None and replayed.total)

    def hold(self, d: Delivery, r: SendResult) -> None:
        """Journal the result ``r`` of ``d`` that the store refused (a write problem)."""
        if d.id in self._slots or self.journal is None:
            return
        rec = record_of(d, r, self.cfg, self.channel.min_interval, self.channel.receipts)
        self._write([rec])

    def hold_sent(self, sent: list[tuple[str | None, int]]) -> None:
        """Journal the successful sends ``sent`` ([(message id, delivery id)]) of a group
        commit the store refused (or that came back since), those not journaled already."""
        self.refusing = True
        if self.journal is None:
            return
        flag = not self.channel.receipts
        # a sent reply to a non-subscriber: the flag finds no subscriber at replay
        recs = [SendRecord(i, "sent", pid, flag=flag) for pid, i in sent
                if i not in self._slots]
        if recs:
            self._write(recs)

    def committed(self, ids: Iterable[int]) -> None:
        """A group commit of the successful sends ``ids`` went through: zero their records."""
        self.refusing = False
        self.recorded(ids)

    def recorded(self, ids: Iterable[int]) -> None:
        """The results of deliveries ``ids`` are in the store now: zero their records once
        the store has them on disk (a store that cannot sync keeps them in the journal)."""
        if not self._slots or self.journal is None:
            return
        slots = [self._slots.pop(i) for i in ids if i in self._slots]
        if not slots:
            return
        try:
            # the store commits with synchronous=NORMAL: its copy on disk first, or a power
            # cut after the zeroing could lose both and the sends would go out again
            self.store.db.sync()
            self.journal.clear(slots)
        except OSError as e:  # replaying a record whose delivery is done does nothing
            log.info("dispatch: could not clear %d records of the send journal: %s",
                     len(slots), e.strerror or e)

    def close(self) -> None:
        """Close the journal; what it holds stays for the next start."""
        if self.journal is not None:
            self.journal.close()
            self.journal = None
            self._slots.clear()

    def _write(self, recs: list[SendRecord]) -> None:
        assert self.journal is not None
        try:
            slots = self.journal.write(recs)
        except OSError as e:
            self._warn("write", "dispatch: cannot write the send journal %s: %s; results the "
                       "store cannot take are held in memory only, and a stop before it takes "
                       "writes again sends them again", self.journal.path, e.strerror or e)
            return
        kept = 0
        for rec, slot in zip(recs, slots):
            if slot is not None:
                self._slots[rec.delivery_id] = slot
                kept += 1
        if kept < len(recs) and self.journal.free == 0:
            self._warn("full", "dispatch: the send journal %s is full (%d results); %d more "
                       "results the store cannot take are held in memory only, and a stop "
                       "before it takes writes again sends them again", self.journal.path,
                       self.holding, len(recs) - kept)
        elif kept < len(recs):
            self._warn("long", "dispatch: %d results with a message id too long for the "
                       "send journal are held in memory only", len(recs) - kept)

    def _warn(self, key: str, msg: str, *args) -> None:
        if key in self._warned:
            log.info(msg, *args)
        else:
            self._warned.add(key)
            log.warning(msg, *args)
