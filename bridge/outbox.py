"""The dispatcher: sends due deliveries from the persistent outbox.

- a global rate limit (token bucket; the lower of ``dispatch.rate`` and the channel's own
  cap), bounded concurrency, and a per-recipient minimum interval when the channel asks;
- retries with exponential backoff and jitter for what the channel calls transient, up to
  ``max_attempts``; a paused channel keeps its deliveries waiting without using attempts;
- unsent deliveries older than ``max_age_hours`` are dropped as stale;
- one channel sends everything (the configured one; a delivery's ``channel`` column records
  where the subscriber came from, for information);
- at most one dispatcher per database (a lock file); at start it puts the sends that were
  under way at a crash back in the queue: those, and only those, may go out twice. A send
  is under way from the call to the channel until its result is committed; successful
  results share one commit per FLUSH_DELAY (10 ms), so under way means at most
  ``concurrency`` sends plus 10 ms worth of answers.

All sends run in one TaskGroup owned by :meth:`Dispatcher.run`; nothing is fire-and-forget.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bridge.channels.base import Channel, Outgoing, SendResult
from bridge.config import DispatchConfig
from bridge.core.phone import mask, mask_text
from bridge.events import ChannelPaused, ChannelResumed, EventBus, FanOutEnded
from bridge.logs import eta
from bridge.store import Delivery, Store, write_problem

log = logging.getLogger("bridge.outbox")

BATCH = 256
FLUSH_DELAY = 0.01  # seconds a successful send's result may wait to share a commit
RECHECK = 0.1  # seconds after which claimed deliveries are checked for cancellation again
SCRUB_EVERY = 5.0  # seconds: while busy, erased numbers leave the WAL at least this often
PACE_QUANTUM = 0.01  # seconds: the shortest wait of the rate limiter (sends in groups)


class DispatcherBusy(RuntimeError):
    """Another dispatcher (the daemon, or `bridge dispatch`) owns this database."""


class RateLimiter:
    """Token bucket: ``rate`` per second, bursts of at most ``burst``.

    When it must wait, it waits at least PACE_QUANTUM: at high rates the sends go out in
    small groups (about ``rate * PACE_QUANTUM``, 10 at 1,000/s) that share the event loop's
    turns, instead of one timer and one loop turn per send. The average rate is the same;
    below 1 / PACE_QUANTUM (100/s) nothing changes.
    """

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, min(rate / 10, 50.0))
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def restart(self) -> None:
        """Spend what was saved up: the next token comes a full interval from now."""
        self.tokens = min(self.tokens, 0.0)
        self.stamp = time.monotonic()

    async def acquire(self) -> None:
        while True:
            t = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
            self.stamp = t
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep(max((1 - self.tokens) / self.rate, PACE_QUANTUM))


@dataclass
class Counters:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    stale: int = 0
    paused: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class _Progress:
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    last_log: float = field(default_factory=time.monotonic)


class Dispatcher:
    def __init__(self, cfg: DispatchConfig, store: Store, channel: Channel, *,
                 on_unreachable: Callable[[int, int], None] | None = None,
                 on_sent: Callable[[Delivery, SendResult, float], None] | None = None,
                 events: EventBus | None = None):
        self.cfg = cfg
        self.store = store
        self.channel = channel
        self.on_unreachable = on_unreachable
        self.on_sent = on_sent
        self.rate = min(cfg.rate, channel.max_rate or cfg.rate)
        self.limiter = RateLimiter(self.rate)
        # Claim about half a second of work at a time, so a newer notice can still
        # supersede what is queued behind it on a slow channel.
        self._claim_size = max(1, min(BATCH, int(self.rate / 2)))
        self.counters = Counters()
        self._wake = asyncio.Event()
        self._inflight_ids: set[int] = set()
        self._inflight_to: set[str] = set()
        # An OrderedDict: its front stays cheap to read while old entries are dropped
        # from it (a dict's iteration would first skip every slot deleted since its
        # last resize: thousands at 1,000 sends a second).
        self._last_to: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._progress: dict[int, _Progress] = {}
        self._notice_cache: dict[int, dict] = {}
        # subscriber id -> last inbound message, read for each claimed batch at once
        self._inbound_at: dict[int, float | None] = {}
        self._lock_file = None
        self._scrub_due = False  # a number left the store: checkpoint the WAL soon
        self._scrub_after_flush = False  # ... once the pending group commit is done
        self._last_scrub = time.monotonic()
        self._tasks: set[asyncio.Task] = set()  # the sends under way
        # Results the store could not record yet (e.g. "database is locked"): recorded
        # again before the next claim, so a store hiccup neither loses nor repeats a send.
        self._unrecorded: list[tuple[Delivery, SendResult, float]] = []
        # Successful sends are committed in small groups (group commit): one transaction
        # at most FLUSH_DELAY after the channel answered.
        self._sent: list[tuple[str | None, int]] = []
        self._reached: list[int] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        # bridge.events: fan-out ends, and the channel's pause state as this loop sees it
        self.events = events
        self._paused_seen: tuple[str, float] | None = None  # (reason, since)
        self._requeue_due = False  # a crashed run's claims are not back in the queue yet

    # -- ownership ----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the per-database dispatcher lock, then requeue sends cut off by a crash."""
        path = Path(str(self.store.db.path) + ".dispatch.lock")
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DispatcherBusy(
                "another dispatcher (the running daemon?) owns this database") from None
        self._lock_file = f
        n = self.store.deliveries.reset_inflight()
        if n:
            log.warning("dispatch: %d sends were under way at the last stop; sending them again", n)

    def release(self) -> None:
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
        if self._requeue_due:  # the last run's crash could not put its claims back
            # raises while the store still refuses (the supervisor waits and starts us again)
            n = self.store.deliveries.reset_inflight(exclude={i for _, i in self._sent})
            self._requeue_due = False
            if n:
                log.warning("dispatch: %d claimed deliveries put back in the queue", n)
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
        last_expire = 0.0
        while not stop.is_set():
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
            batch = self.store.deliveries.claim(self._claim_size) if ready else []
            if not batch:
                self._maybe_scrub()
                if not self._tasks:
                    # Nothing claimed, nothing under way: any fan-out still tracked ended
                    # (superseded, cancelled, stale) or waits for retries (tracked anew).
                    self._progress.clear()
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
            checked, gone = time.monotonic(), set()
            for i, d in enumerate(batch):
                if stop.is_set() and not drain:
                    # Stopping: hand back what we claimed but did not start.
                    self.store.deliveries.mark_retry(d.id, time.time(), "stopped",
                                                     count_attempt=False)
                    continue
                channel = self.channel
                if channel.paused:
                    self.store.deliveries.mark_retry(d.id, time.time() + 1, channel.paused,
                                                     count_attempt=False)
                    continue
                wait = self._recipient_wait(channel, d.to_addr)
                if wait > 0:
                    self.store.deliveries.mark_retry(d.id, time.time() + wait,
                                                     "pacing per recipient", count_attempt=False)
                    continue
                await sem.acquire()
                await self.limiter.acquire()
                if stop.is_set() and not drain:
                    sem.release()
                    self.store.deliveries.mark_retry(d.id, time.time(), "stopped",
                                                     count_attempt=False)
                    continue
                if time.monotonic() - checked > RECHECK:
                    # Cancelled while waiting (its subscriber left), or superseded by a newer
                    # notice of its incident queued since the claim? One query per RECHECK.
                    checked = time.monotonic()
                    gone = self.store.deliveries.recheck([x.id for x in batch[i:]])
                if d.id in gone:
                    sem.release()
                    self._advance(d)
                    continue
                if channel.jitter:
                    # The jitter adds to the interval: the next token counts from now.
                    await asyncio.sleep(random.uniform(0, channel.jitter))
                    self.limiter.restart()
                self._inflight_ids.add(d.id)
                self._inflight_to.add(d.to_addr)
                if channel.min_interval:
                    self._note_recipient(d.to_addr, channel.min_interval)
                task = tg.create_task(self._send(d, channel, sem), name=f"send-{d.id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if self._scrub_due and time.monotonic() - self._last_scrub > SCRUB_EVERY:
                self._maybe_scrub()  # busy for long: do not keep erased numbers waiting

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
        keep = {i for _, i in self._sent}  # sent, result not yet committed
        try:
            n = self.store.deliveries.reset_inflight(exclude=keep)
            self._requeue_due = False
        except Exception as e:
            # e.g. a full store: tried again when the supervisor starts the loop again
            self._requeue_due = True
            log.log(logging.INFO if write_problem(e) else logging.ERROR,
                    "dispatch: could not requeue unfinished sends: %s", e)
            return
        if n:
            log.warning("dispatch: %d claimed deliveries put back in the queue", n)

    async def _idle(self, stop: asyncio.Event, ready: bool = True) -> None:
        timeout = self.cfg.poll_interval
        nxt = self.store.deliveries.next_due()
        if nxt is not None and ready:  # paused: due deliveries wait, poll_interval apart
            timeout = max(0.0, min(timeout, nxt - time.time()))
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waiters, return_exceptions=True)

    # -- one send -------------------------------------------------------------------------------
    async def _send(self, d: Delivery, channel: Channel, sem: asyncio.Semaphore) -> None:
        t0 = time.monotonic()
        try:
            msg = self._outgoing(d, channel)
            try:
                result = await channel.send(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a channel bug must not kill the dispatcher
                log.exception("dispatch: channel %s raised on delivery %d", channel.name, d.id)
                result = SendResult("retry", error=f"channel error: {type(e).__name__}: {e}")
            latency = time.monotonic() - t0
            try:
                self._record(d, result, latency)
            except Exception as e:
                # Never out of a send task: the TaskGroup would cancel every other send
                # under way, and those would go out again. Recorded before the next claim.
                log.error("dispatch: could not record the result of delivery %d (%s): %s; "
                          "trying again", d.id, result.status, e)
                self._unrecorded.append((d, result, latency))
        finally:
            self._inflight_ids.discard(d.id)
            self._inflight_to.discard(d.to_addr)
            sem.release()

    def _record_again(self) -> None:
        """Record the results the store refused before; raises while it still refuses."""
        while self._unrecorded:
            d, result, latency = self._unrecorded[0]
            self._record(d, result, latency)
            self._unrecorded.pop(0)

    def _outgoing(self, d: Delivery, channel: Channel) -> Outgoing:
        if d.notice_id is None:
            return Outgoing(delivery_id=d.id, to=d.to_addr, text=d.reply or "", kind="reply",
                            template=f"replies/{d.reply_name}.j2" if d.reply_name else None,
                            window_open=True, attempt=d.attempts)
        notice = self._notice(d.notice_id)
        window = None
        if channel.wants_window and d.subscriber_id is not None:
            sid = d.subscriber_id
            last = (self._inbound_at[sid] if sid in self._inbound_at
                    else self.store.subscribers.last_inbound_at(sid))
            window = bool(last and time.time() - last < 86400)
        return Outgoing(delivery_id=d.id, to=d.to_addr, text=notice["text"], kind="notice",
                        notice_id=d.notice_id, template=notice["template"],
                        report=notice["report"], window_open=window, attempt=d.attempts)

    def _notice(self, notice_id: int) -> dict:
        n = self._notice_cache.get(notice_id)
        if n is None:
            row = self.store.incidents.notice(notice_id) or {"text": "", "template": "", "report": None}
            n = {"text": row["text"], "template": row["template"],
                 "report": json.loads(row["report"]) if row.get("report") else None}
            if len(self._notice_cache) > 64:
                self._notice_cache.clear()
            self._notice_cache[notice_id] = n
        return n

    def _record(self, d: Delivery, r: SendResult, latency: float) -> None:
        dl = self.store.deliveries
        c = self.counters
        if r.status == "sent":
            self._sent.append((r.provider_id, d.id))
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            c.sent += 1
            if d.subscriber_id is not None:
                if not self.channel.receipts:
                    self._reached.append(d.subscriber_id)  # accepted = reached (no receipts)
            elif d.notice_id is None:
                self._scrub_after_flush = True  # a reply to a non-subscriber: its number leaves
            self._advance(d)
            if self.on_sent:
                try:
                    self.on_sent(d, r, latency)
                except Exception:  # e.g. metrics: never a reason to record a send again
                    log.exception("dispatch: on_sent listener failed for delivery %d", d.id)
            return
        if r.error:
            code = r.error.split()[0]
            c.errors[code] = c.errors.get(code, 0) + 1
        if r.status == "paused":
            c.paused += 1
            dl.mark_retry(d.id, time.time() + (r.retry_after or 5.0), r.error or "channel paused",
                          count_attempt=False)
            return
        if r.status == "retry" and d.attempts < self.cfg.max_attempts:
            c.retried += 1
            delay = r.retry_after
            if delay is None:
                delay = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** (d.attempts - 1))
                delay *= random.uniform(0.5, 1.5)
            dl.mark_retry(d.id, time.time() + delay, r.error or "transient error")
            log.info("dispatch: delivery %d to %s: %s; retry %d/%d in %.1f s", d.id,
                     mask(d.to_addr), r.error, d.attempts, self.cfg.max_attempts, delay)
            return
        why = r.error or "failed"
        if r.status == "retry":
            why = f"gave up after {d.attempts} attempts: {why}"
        self._finish_failed(d, why)
        if r.unreachable and d.subscriber_id is not None:
            n = self.store.subscribers.unreachable(d.subscriber_id)
            if self.on_unreachable:
                self.on_unreachable(d.subscriber_id, n)

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
            except BaseException:
                # keep them: committed by a later flush, and never put back in the queue
                self._sent[:0], self._reached[:0] = sent, reached
                raise
        if self._scrub_after_flush and not self._sent:
            self._scrub_after_flush = False
            self._scrub_due = True

    def _finish_failed(self, d: Delivery, why: str) -> None:
        self.store.deliveries.mark_failed(d.id, why)
        if d.subscriber_id is None and d.notice_id is None:
            self._scrub_due = True  # a reply to a non-subscriber: its number just left
        self.counters.failed += 1
        log.warning("dispatch: delivery %d to %s failed: %s", d.id, mask(d.to_addr), why)
        self._advance(d)

    # -- pacing, progress, upkeep ---------------------------------------------------------------
    def _recipient_wait(self, channel: Channel, to: str) -> float:
        if to in self._inflight_to:
            return max(channel.min_interval, 0.05)
        last = self._last_to.get(to)
        if last is None:
            return 0.0
        return channel.min_interval - (time.monotonic() - last)

    def _note_recipient(self, to: str, interval: float) -> None:
        """Remember when ``to`` was last sent to, for as long as the interval matters.

        The dict is kept in time order (re-inserted keys move to the end), so entries whose
        interval has passed are dropped from the front: memory stays bounded by the number
        of recipients sent to within one interval, not by the size of the fan-out.
        """
        now = time.monotonic()
        self._last_to.pop(to, None)
        self._last_to[to] = now
        for _ in range(64):  # the oldest first; at most 64 per call
            k = next(iter(self._last_to))
            if now - self._last_to[k] < interval:
                break
            del self._last_to[k]

    def _track(self, batch: list[Delivery]) -> None:
        if self.channel.wants_window:
            # The 24-hour window of the batch's subscribers in one query, not one per send
            # (judged as of the claim: at most the batch's half second of sending earlier).
            self._inbound_at = self.store.subscribers.last_inbound_many(
                d.subscriber_id for d in batch
                if d.subscriber_id is not None and d.notice_id is not None)
        for d in batch:
            if d.notice_id is not None and d.notice_id not in self._progress:
                total, unfinished = self.store.deliveries.notice_open(d.notice_id)
                done = total - unfinished
                self._progress[d.notice_id] = _Progress(total=total, done=done)
                if total >= 100:
                    log.info("dispatch: notice %d: fan-out to %d recipients, %.0f/s, ETA %s",
                             d.notice_id, total, self.rate, eta((total - done) / self.rate))

    def _advance(self, d: Delivery) -> None:
        if d.notice_id is None:
            return
        p = self._progress.get(d.notice_id)
        if p is None:
            return
        p.done += 1
        t = time.monotonic()
        if p.done >= p.total:
            if p.total >= 100:
                log.info("dispatch: notice %d: fan-out finished, %d/%d in %.1f s", d.notice_id,
                         p.done, p.total, t - p.started)
            del self._progress[d.notice_id]
            self._fan_out_ended(d.notice_id, p.total, t - p.started)
        elif p.total >= 100 and t - p.last_log >= self.cfg.progress_every:
            p.last_log = t
            rate = p.done / max(t - p.started, 1e-6)
            log.info("dispatch: notice %d: %d/%d done, %.0f/s, ETA %s", d.notice_id, p.done,
                     p.total, rate, eta((p.total - p.done) / max(rate, 1e-6)))

    def _fan_out_ended(self, notice_id: int, total: int, seconds: float) -> None:
        if self.events is None:
            return
        failures = tuple((mask_text(r), n) for r, n in self.store.deliveries.failures(notice_id))
        self.events.publish(FanOutEnded(notice_id=notice_id, recipients=total,
                                        failed=sum(n for _, n in failures), failures=failures,
                                        seconds=seconds))

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
