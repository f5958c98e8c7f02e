"""The dispatcher: sends due deliveries from the persistent outbox.

- a global rate (the lower of ``dispatch.rate`` and the channel's own cap) that adapts to
  the channel's rate-limit answers, bounded concurrency, and per recipient one send at a
  time, the channel's minimum interval and a hold after a per-recipient rate limit
  (bridge/pacing.py). A recipient who must wait waits in the store: one UPDATE puts off
  all of its pending deliveries until it is free, and the claim finds them when due;
- a rate-limit answer (``SendResult.rate_limit``) sends the delivery back to the queue
  for the shared rate (global) or its recipient's hold, without using an attempt; other
  transient answers are retried with exponential backoff and jitter (``backoff_base``,
  ``backoff_max``), without end: only ``max_age_hours`` ends a delivery the channel keeps
  refusing for passing reasons. ``max_attempts`` ends a delivery whose send raised inside
  the channel (a bug, not an answer). A paused channel keeps its deliveries waiting;
- unsent deliveries older than ``max_age_hours`` are dropped as stale;
- one channel sends everything (the configured one; a delivery's ``channel`` column records
  where the subscriber came from, for information);
- work per claim is bounded (about half a second of sending) and the loop yields to the
  event loop after each claim;
- at most one dispatcher per database (a lock file); at start it puts the sends that were
  under way at a crash back in the queue: those, and only those, may go out twice. A send
  is under way from the call to the channel until its result is committed; successful
  results share one commit per FLUSH_DELAY (10 ms), so under way means at most
  ``concurrency`` sends plus 10 ms worth of answers. Results the store refuses (a full
  disk) are held in memory and in the send journal (bridge/heldresults.py), which the
  next start records first: a stop while the disk is full sends none of them again.

All sends run in one TaskGroup owned by :meth:`Dispatcher.run`; nothing is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bridge.aio import first_of
from bridge.channels.base import Channel, SendResult
from bridge.config import DispatchConfig
from bridge.core.phone import mask
from bridge.events import ChannelPaused, ChannelResumed, EventBus
from bridge.heldresults import HeldResults
from bridge.outgoing import Messages
from bridge.pacing import AdaptiveRate, RecipientPacing, backoff
from bridge.progress import FanOutProgress
from bridge.sendhealth import SendHealth
from bridge.store import Delivery, Store, write_problem

log = logging.getLogger("bridge.outbox")
# the per-database dispatcher lock: <store>.dispatch.lock (one dispatcher per store)
LOCK_SUFFIX = ".dispatch.lock"

BATCH = 256
FLUSH_DELAY = 0.01  # seconds a successful send's result may wait to share a commit
RECHECK = 0.1  # seconds after which claimed deliveries are checked for cancellation again
SCRUB_EVERY = 5.0  # seconds: while busy, erased numbers leave the WAL at least this often
HOLD_CLAIMS = 5.0  # seconds: a Retry-After hold longer than this stops claims meanwhile
DRAIN_GIVE_UP = 30.0  # seconds of rate limits with nothing accepted that end a drain


class DispatcherBusy(RuntimeError):
    """Another dispatcher (the daemon, or `bridge dispatch`) owns this database."""


@dataclass
class Counters:
    sent: int = 0
    retried: int = 0  # transient answers other than rate limits
    throttled: int = 0  # rate-limit answers (global or per recipient)
    failed: int = 0
    stale: int = 0
    paused: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, cfg: DispatchConfig, store: Store, channel: Channel, *,
                 on_unreachable: Callable[[int, int], None] | None = None,
                 on_sent: Callable[[Delivery, SendResult, float], None] | None = None,
                 events: EventBus | None = None, health: SendHealth | None = None):
        self.cfg = cfg
        self.store = store
        self.channel = channel
        self.on_unreachable = on_unreachable
        self.on_sent = on_sent
        # messages/s: the configured rate, and the adaptive one (``rate``) below it
        self.configured_rate = min(cfg.rate, channel.max_rate or cfg.rate)
        self.pace = AdaptiveRate(self.configured_rate, floor=cfg.min_rate,
                                 decrease=cfg.rate_decrease, increase=cfg.rate_increase)
        self.recipients = RecipientPacing()
        self.counters = Counters()
        self._wake = asyncio.Event()
        self._inflight_ids: set[int] = set()
        # fan-out progress lines and end events (bridge.progress)
        self.progress = FanOutProgress(store, cfg.progress_every, lambda: self.rate,
                                       self.flush, events)
        # the window of send results: ok / degraded, the summary line (bridge.sendhealth)
        self.health = health if health is not None else SendHealth(events=events)
        self.messages = Messages(store)  # a delivery's Outgoing (bridge.outgoing)
        self._lock_file = None
        self._scrub_due = False  # a number left the store: checkpoint the WAL soon
        self._scrub_after_flush = False  # ... once the pending group commit is done
        self._last_scrub = time.monotonic()
        self._tasks: set[asyncio.Task] = set()  # the sends under way
        # Results the store could not record yet (e.g. "database is locked"): recorded
        # again before the next claim, so a store hiccup neither loses nor repeats a send.
        # Those refused for a full disk also go into the send journal, until recorded.
        self._unrecorded: list[tuple[Delivery, SendResult, float]] = []
        self.held = HeldResults(store, cfg, channel, on_unreachable,
                                on_finished=self.progress.ended_if_done)
        # Successful sends are committed in small groups (group commit): one transaction
        # at most FLUSH_DELAY after the channel answered.
        self._sent: list[tuple[str | None, int]] = []
        self._reached: list[int] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        # bridge.events: fan-out ends, and the channel's pause state as this loop sees it
        self.events = events
        self._paused_seen: tuple[str, float] | None = None  # (reason, since)
        # sends under way not back in the queue yet (the store refused): at "start" (the
        # last stop's, after the send journal's results), or after a "crash" of a run
        self._requeue_due: str | None = None

    @property
    def rate(self) -> float:
        """The rate allowed now, messages/s (lowered by rate-limit answers)."""
        return self.pace.rate

    def _claim_size(self) -> int:
        # About half a second of work at a time, so a newer notice can still supersede
        # what is queued behind it on a slow channel.
        return max(1, min(BATCH, int(self.rate / 2)))

    # -- ownership ----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the per-database dispatcher lock, record the results the send journal kept
        at the last stop, then requeue the sends cut off by it. A store that cannot be
        written now (a full disk) leaves both to the first run (:meth:`run` raises while
        it cannot); other store errors raise (the lock is released)."""
        path = Path(str(self.store.db.path) + LOCK_SUFFIX)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DispatcherBusy(
                "another dispatcher (the running daemon?) owns this database") from None
        self._lock_file = f
        self.held.open()
        try:
            self._recover("start")
        except Exception as e:
            if write_problem(e) is None:
                self.release()
                raise
            self._requeue_due = "start"
            log.info("dispatch: the sends under way at the last stop wait until the store "
                     "takes writes: %s", write_problem(e))

    def _recover(self, why: str) -> None:
        """HeldResults.recover, but the sends whose result this run holds stay claimed."""
        if self.held.recover(why, {i for _, i in self._sent}
                             | {d.id for d, _, _ in self._unrecorded}):
            self._scrub_due = True  # a replayed reply to a non-subscriber: its number left
        self._requeue_due = None

    def release(self) -> None:
        """Let go of the dispatcher lock and close the send journal (what it holds stays)."""
        self.held.close()
        if self._lock_file:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def wake(self) -> None:
        self._wake.set()

    # -- main loops ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; then finish the sends under way and return."""
        await self._run(stop, drain=False)

    async def drain(self) -> Counters:
        """Send everything due now (and retries that fall due meanwhile), then return."""
        await self._run(asyncio.Event(), drain=True)
        return self.counters

    async def _run(self, stop: asyncio.Event, drain: bool) -> None:
        failure: Exception | None = None
        if self._lock_file is not None:
            self.held.open()  # perhaps not created at start (the disk was full)
        if self._requeue_due:  # the store refused to put the last stop's or run's claims back
            # raises while the store still refuses (the supervisor waits and starts us again)
            self._recover(self._requeue_due)
        try:
            async with asyncio.TaskGroup() as tg:
                try:
                    await self._loop(tg, stop, drain=drain)
                except Exception as e:
                    # The loop failed (e.g. the store): claim nothing more, but let the
                    # sends under way finish and be recorded before the crash is raised.
                    # (Raising into the TaskGroup now would cancel them mid-send, and they
                    # would go out again after the restart.)
                    failure = e
                    if self._tasks:
                        await asyncio.wait(set(self._tasks))
            if failure is not None:
                raise failure
        except Exception:  # a crash the supervisor restarts (cancelled: the next start resets)
            self._requeue_unfinished()
            raise
        finally:
            self.flush()
        self._maybe_scrub(force=True)

    async def _loop(self, tg: asyncio.TaskGroup, stop: asyncio.Event, drain: bool) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        last_expire, began = 0.0, time.monotonic()
        while not stop.is_set():
            if drain and (refusing := self.pace.refusing_for(began)) > DRAIN_GIVE_UP:
                # a one-shot in a storm: what the channel keeps refusing stays queued
                log.warning("dispatch: the channel accepted nothing for %.0f s (rate limits);"
                            " the rest stays queued", refusing)
                return
            if self._unrecorded:
                self._record_again()
            now = time.time()
            if now - last_expire > 30:
                last_expire = now
                self._expire()
            paused = self.channel.paused
            self._note_paused(paused)
            # an operator's pause (console, `bridge pause`): like a paused channel, no alert
            ready = not paused and self.store.control.paused() is None
            # a long Retry-After: claim nothing until it passed (what is claimed waits for it)
            ready = ready and self.pace.held() <= HOLD_CLAIMS
            batch = self.store.deliveries.claim(self._claim_size()) if ready else []
            if not batch:
                self._maybe_scrub()
                if not self._tasks:
                    # Nothing claimed, nothing under way: any fan-out still tracked ended
                    # (superseded, cancelled, stale) or waits for retries (tracked anew).
                    self.progress.clear()
                if drain:
                    if self._inflight_ids:
                        await asyncio.sleep(0.01)
                        continue
                    nxt = self.store.deliveries.next_due()
                    if nxt is None or nxt - time.time() > 5 or not ready:
                        return
                await self._idle(stop, ready)
                continue
            self._track(batch)
            await self._start_sends(tg, batch, sem, stop, drain)
            if self._scrub_due and time.monotonic() - self._last_scrub > SCRUB_EVERY:
                self._maybe_scrub()  # busy for long: do not keep erased numbers waiting
            await asyncio.sleep(0)  # one claim's work done: let everything else run

    async def _start_sends(self, tg: asyncio.TaskGroup, batch: list[Delivery],
                           sem: asyncio.Semaphore, stop: asyncio.Event, drain: bool) -> None:
        """Start the sends of one claimed batch at the shared rate; recipients who must
        wait are put off in the store (one UPDATE each); on stop or pause the rest of the
        batch goes back to the queue in one transaction."""
        dl = self.store.deliveries
        checked, gone = time.monotonic(), set()
        deferred: set[str] = set()  # recipients put off (with their claimed deliveries)
        channel = self.channel
        for i, d in enumerate(batch):
            if d.to_addr in deferred:
                continue
            if stop.is_set() and not drain:
                # Stopping: hand back what we claimed but did not start.
                dl.release([x.id for x in batch[i:]], time.time(), "stopped")
                return
            if channel.paused:
                dl.release([x.id for x in batch[i:]], time.time() + 1, channel.paused)
                return
            wait = await self.recipients.ready_in(d.to_addr, channel.min_interval)
            if wait > 0:
                dl.defer(d.to_addr, time.time() + wait,
                         [x.id for x in batch[i:] if x.to_addr == d.to_addr])
                deferred.add(d.to_addr)
                continue
            await sem.acquire()
            held = self.pace.held()
            if held > HOLD_CLAIMS or not await self.pace.acquire(None if drain else stop):
                # stopping, or a long Retry-After: the rest waits in the store
                sem.release()
                dl.release([x.id for x in batch[i:] if x.to_addr not in deferred],
                           time.time() + max(held, 0.0), "stopped" if held <= HOLD_CLAIMS
                           else "held for a Retry-After")
                return
            if time.monotonic() - checked > RECHECK:
                # Cancelled while waiting (its subscriber left), or superseded by a newer
                # notice of its incident queued since the claim? One query per RECHECK.
                checked = time.monotonic()
                gone = dl.recheck([x.id for x in batch[i:]])
            if d.id in gone:
                sem.release()
                self.progress.advance(d)
                continue
            if channel.jitter:
                # The jitter adds to the interval: the next token counts from now.
                await asyncio.sleep(random.uniform(0, channel.jitter))
                self.pace.restart()
            self._inflight_ids.add(d.id)
            if channel.min_interval:
                self.recipients.sent(d.to_addr, channel.min_interval)
            task = tg.create_task(self._send(d, channel, sem), name=f"send-{d.id}")
            self.recipients.busy[d.to_addr] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _requeue_unfinished(self) -> None:
        """After run()/drain() crashed (all send tasks have ended): put the
        deliveries claimed but not finished back in the queue. Otherwise they stay 'sending'
        until the next start, since the supervisor restarts the dispatcher without acquire()."""
        with contextlib.suppress(Exception):
            self.flush()
        with contextlib.suppress(Exception):
            self._record_again()
        if self._lock_file is None:
            return  # not the owner: other 'sending' rows may be another dispatcher's
        try:  # the last stop's journaled results first, if the store refused them so far
            self._recover("start" if self._requeue_due == "start" else "crash")
        except Exception as e:
            # e.g. a full store: tried again when the supervisor starts the loop again
            self._requeue_due = self._requeue_due or "crash"
            log.log(logging.INFO if write_problem(e) else logging.ERROR,
                    "dispatch: could not requeue unfinished sends: %s", e)

    async def _idle(self, stop: asyncio.Event, ready: bool = True) -> None:
        timeout = self.cfg.poll_interval
        nxt = self.store.deliveries.next_due()
        if nxt is not None and ready:  # paused: due deliveries wait, poll_interval apart
            timeout = max(0.0, min(timeout, nxt - time.time()))
        self._wake.clear()
        await first_of(self._wake.wait(), stop.wait(), timeout=timeout)

    # -- one send -------------------------------------------------------------------------------
    async def _send(self, d: Delivery, channel: Channel, sem: asyncio.Semaphore) -> None:
        t0 = time.monotonic()
        try:
            msg = self.messages.build(d, channel)
            try:
                result = await channel.send(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a channel bug must not kill the dispatcher
                log.exception("dispatch: channel %s raised on delivery %d", channel.name, d.id)
                err = f"channel error: {type(e).__name__}: {e}"
                # not an answer of the peer: max_attempts of these end the delivery
                result = (SendResult("retry", error=err) if d.attempts < self.cfg.max_attempts
                          else SendResult("failed", error=f"{err} (gave up after {d.attempts}"
                                                          " attempts)"))
            latency = time.monotonic() - t0
            try:
                self._record(d, result, latency)
            except Exception as e:
                # Never out of a send task: the TaskGroup would cancel every other send
                # under way, and those would go out again. Recorded before the next claim.
                log.log(logging.INFO if write_problem(e) else logging.ERROR,
                        "dispatch: could not record the result of delivery %d (%s): %s; "
                        "trying again", d.id, result.status, e)
                if write_problem(e) is not None:  # a full disk: kept in the journal too
                    self.held.hold(d, result)
                self._unrecorded.append((d, result, latency))
        finally:
            self._inflight_ids.discard(d.id)
            self.recipients.busy.pop(d.to_addr, None)
            sem.release()

    def _record_again(self) -> None:
        """Record the results the store refused before; raises while it still refuses."""
        while self._unrecorded:
            d, result, latency = self._unrecorded[0]
            self._record(d, result, latency)
            self._unrecorded.pop(0)
            if result.status != "sent":  # a sent one is committed (and cleared) by flush()
                self.held.recorded((d.id,))

    def _record(self, d: Delivery, r: SendResult, latency: float) -> None:
        dl = self.store.deliveries
        c = self.counters
        if r.status == "sent":
            # A reply to a non-subscriber keeps no message id (it can encode the number):
            # the store drops it, and neither the send journal nor memory needs it.
            stranger = d.subscriber_id is None and d.notice_id is None
            self._sent.append((None if stranger else r.provider_id, d.id))
            if self.held.refusing:  # the store refuses writes: journaled now (fsync)
                self.held.hold_sent(self._sent[-1:])
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(
                    FLUSH_DELAY, self._flush_later)
            c.sent += 1
            self.pace.accepted()
            self.health.note("sent", delivery_id=d.id)
            if d.subscriber_id is not None:
                if not self.channel.receipts:
                    self._reached.append(d.subscriber_id)  # accepted = reached (no receipts)
            elif d.notice_id is None:
                self._scrub_after_flush = True  # a reply to a non-subscriber: its number leaves
            self.progress.advance(d)
            if self.on_sent:
                try:
                    self.on_sent(d, r, latency)
                except Exception:  # e.g. metrics: never a reason to record a send again
                    log.exception("dispatch: on_sent listener failed for delivery %d", d.id)
            return
        # Counted once the store took the result: one it refused (a full disk) is recorded
        # again later (_record_again), and would be counted again.
        if r.status == "paused":
            dl.mark_retry(d.id, time.time() + (r.retry_after or 5.0), r.error or "channel paused",
                          count_attempt=False)
            c.paused += 1
            self.health.note("paused", r.error or "channel paused", delivery_id=d.id)
        elif r.status == "retry" and r.rate_limit is not None:
            self._throttled(d, r)
        elif r.status == "retry":
            delay = r.retry_after
            if delay is None:
                delay = backoff(d.attempts, self.cfg.backoff_base, self.cfg.backoff_max)
            dl.mark_retry(d.id, time.time() + delay, r.error or "transient error")
            c.retried += 1
            # counted for the summary line and /healthz, not a log line per retry
            self.health.note("retry", r.error or "transient error", delivery_id=d.id,
                             retry_at=time.time() + delay, throttled=False)
        else:
            self._finish_failed(d, r.error or "failed")
            self.health.note("failed", r.error or "failed", delivery_id=d.id)
        if r.error:
            code = r.error.split()[0]
            c.errors[code] = c.errors.get(code, 0) + 1
        if r.status != "failed":
            return
        if r.unreachable and d.subscriber_id is not None:
            n = self.store.subscribers.unreachable(d.subscriber_id)
            if self.on_unreachable:
                self.on_unreachable(d.subscriber_id, n)

    def _throttled(self, d: Delivery, r: SendResult) -> None:
        """A rate-limit answer: no attempt used. Global: the shared rate comes down (and
        holds for ``retry_after``) and the delivery is due again at once, to go at that
        rate. Per recipient: that recipient's deliveries wait ``retry_after`` seconds."""
        if r.rate_limit == "recipient":
            wait = r.retry_after or max(self.channel.min_interval, 1.0)
            self.recipients.hold(d.to_addr, wait)
            self.store.deliveries.defer(d.to_addr, time.time() + wait, [d.id],
                                        r.error or "rate limit per recipient")
            self.counters.throttled += 1
            self.health.note("retry", r.error or "rate limit per recipient", delivery_id=d.id,
                             retry_at=time.time() + wait, throttled=True)
            log.debug("dispatch: delivery %d to %s: %s; this recipient waits %.0f s", d.id,
                      mask(d.to_addr), r.error, wait)
            return
        self.store.deliveries.mark_retry(d.id, time.time() + (r.retry_after or 0.0),
                                         r.error or "rate limit", count_attempt=False)
        self.counters.throttled += 1
        self.pace.limited(r.retry_after, r.error)
        self.health.note("retry", r.error or "rate limit", delivery_id=d.id,
                         retry_at=time.time() + (r.retry_after or 0.0), throttled=True)

    def _flush_later(self) -> None:
        """The group commit's timer: a store that cannot take it (full disk) keeps the
        results for the next try, a second later, without a traceback per try."""
        self._flush_handle = None
        try:
            self.flush()
        except Exception as e:
            problem = write_problem(e)
            if problem is None:
                log.exception("dispatch: could not commit %d sent deliveries", len(self._sent))
            else:
                log.info("dispatch: %d sent deliveries wait to be recorded: %s",
                         len(self._sent), problem)
            if self._sent and self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(1.0, self._flush_later)

    def flush(self) -> None:
        """Commit the successful sends recorded since the last flush."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._sent:
            sent, reached = self._sent, self._reached
            self._sent, self._reached = [], []
            try:
                self.store.deliveries.mark_sent_many(sent, reached)
            except BaseException as e:
                # keep them: committed by a later flush, and never put back in the queue;
                # on a full disk in the send journal too, so that a stop loses none of them
                self._sent[:0], self._reached[:0] = sent, reached
                if write_problem(e) is not None:
                    self.held.hold_sent(sent)
                raise
            if self.held.refusing or self.held.holding:
                self.held.committed(i for _, i in sent)
        if self._scrub_after_flush and not self._sent:
            self._scrub_after_flush = False
            self._scrub_due = True

    def _finish_failed(self, d: Delivery, why: str) -> None:
        self.store.deliveries.mark_failed(d.id, why)
        if d.subscriber_id is None and d.notice_id is None:
            self._scrub_due = True  # a reply to a non-subscriber: its number just left
        self.counters.failed += 1
        log.warning("dispatch: delivery %d to %s failed: %s", d.id, mask(d.to_addr), why)
        self.progress.advance(d)

    # -- progress, upkeep --------------------------------------------------------------------------
    def _track(self, batch: list[Delivery]) -> None:
        if self.channel.wants_window:  # the batch's 24-hour windows in one query
            self.messages.windows(batch)
        self.progress.track(batch)

    def _note_paused(self, paused: str | None) -> None:
        """Publish the channel's pause and resume as this loop sees them change."""
        seen = self._paused_seen
        if self.events is None or bool(paused) == bool(seen):
            return
        name = self.channel.name
        if paused:
            self._paused_seen = (paused, time.time())
            self.events.publish(ChannelPaused(channel=name, reason=paused))
        else:
            self._paused_seen = None
            was, since = seen  # type: ignore[misc]
            self.events.publish(ChannelResumed(channel=name, was=was,
                                               paused_for=time.time() - since))

    def _expire(self) -> None:
        n = self.store.deliveries.expire(time.time() - self.cfg.max_age_hours * 3600)
        if n:
            self.counters.stale += n
            self._scrub_due = True
            log.warning("dispatch: %d unsent deliveries older than %.1f h dropped as stale",
                        n, self.cfg.max_age_hours)

    def _maybe_scrub(self, force: bool = False) -> None:
        if self._scrub_due or force:
            self._last_scrub = time.monotonic()
            # busy (a reader holds the WAL): stays due, tried again on the next occasion
            self._scrub_due = not self.store.db.scrub()
