"""The dispatcher against a scripted channel: retries, failures, pauses, pacing, supersede,
unsubscribe mid fan-out, stop and store failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from bridge.channels.base import SendResult
from bridge.config import DispatchConfig
from bridge.outbox import Dispatcher, DispatcherBusy
from bridge.store import StoreError
from helpers import DISPATCH, Scripted, fan_out_notice, wait_until

CFG = DISPATCH


def queue(store, numbers, incident=None, text="melding"):
    for n in numbers:
        store.subscribers.add(n, "console", "cli:test")
    return fan_out_notice(store, incident, text)


def states(store):
    return store.deliveries.counts()


async def drain(store, channel, cfg=CFG, **kw):
    d = Dispatcher(cfg, store, channel, **kw)
    d.acquire()
    try:
        return await d.drain(), d
    finally:
        d.release()


# --- retries and failures ---------------------------------------------------------------------


async def test_transient_errors_retry_with_backoff_then_succeed(store):
    a = "+31611111111"
    ch = Scripted({a: [SendResult("retry", error="130429 rate"), SendResult("retry", error="1 x")]})
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert [m.attempt for m in ch.calls] == [1, 2, 3]
    assert counters.sent == 1 and counters.retried == 2
    assert counters.errors == {"130429": 1, "1": 1}
    assert states(store) == {"sent": 1}


async def test_transient_answers_do_not_use_up_attempts_only_max_age_ends_them(store):
    """Five passing refusals with max_attempts 3: the delivery is still tried (with backoff)
    and goes out; a delivery older than max_age_hours is dropped as stale instead."""
    a = "+31611111111"
    ch = Scripted({a: [SendResult("retry", error="131000 oops")] * 5})
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert len(ch.calls) == 6 and counters.failed == 0 and counters.retried == 5
    assert states(store) == {"sent": 1}


async def test_a_channel_that_raises_gives_up_after_max_attempts(store):
    """A send that raises inside the channel is a bug, not an answer: max_attempts (3 here)
    of those end the delivery."""
    a = "+31611111111"

    class Raising(Scripted):
        async def send(self, msg):
            self.calls.append(msg)
            raise RuntimeError("boom")

    ch = Raising()
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert len(ch.calls) == 3 and counters.failed == 1
    err = store.db.scalar("SELECT error FROM deliveries")
    assert err == "channel error: RuntimeError: boom (gave up after 3 attempts)", err


async def test_permanent_failure_counts_unreachable(store):
    a = "+31611111111"
    seen = []
    ch = Scripted({a: [SendResult("failed", error="131026 undeliverable", unreachable=True)]})
    queue(store, [a])
    await drain(store, ch, on_unreachable=lambda sid, n: seen.append(n))
    assert seen == [1] and states(store) == {"failed": 1}


# --- a paused channel -------------------------------------------------------------------------


async def test_paused_channel_keeps_deliveries_without_using_attempts(store):
    a = "+31611111111"
    ch = Scripted({a: [SendResult("paused", error="190 token expired", retry_after=0.05)]})
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert counters.paused == 1 and counters.sent == 1
    assert [m.attempt for m in ch.calls] == [1, 1]


async def test_paused_channel_is_not_called(store):
    ch = Scripted()
    ch.paused = "broker unreachable"
    queue(store, ["+31611111111"])
    counters, _ = await drain(store, ch)
    assert ch.calls == [] and states(store) == {"pending": 1}


# --- stale deliveries -------------------------------------------------------------------------


async def test_stale_deliveries_are_dropped(store):
    queue(store, ["+31611111111", "+31622222222"])
    store.db.execute("UPDATE deliveries SET created_at = created_at - 7200")
    ch = Scripted()
    counters, _ = await drain(store, ch)
    assert ch.calls == [] and counters.stale == 2
    assert store.db.scalar("SELECT count(*) FROM deliveries WHERE to_addr IS NOT NULL") == 0


# --- pacing: the rate and the interval per recipient ------------------------------------------


async def test_rate_limit_is_kept(store):
    numbers = [f"+3161{i:07d}" for i in range(60)]
    queue(store, numbers)
    ch = Scripted()
    cfg = DispatchConfig(rate=200, concurrency=50, poll_interval=0.02)
    t = time.monotonic()
    await drain(store, ch, cfg)
    took = time.monotonic() - t
    # 60 messages at 200/s with a burst of 20: at least (60 - 20) / 200 = 0.2 s
    assert took >= 0.19, took
    assert len(ch.calls) == 60


async def test_at_high_rates_sends_go_out_in_small_groups_at_the_configured_rate(store):
    """The limiter waits at least 10 ms: at 1,000/s about ten sends leave together (they
    share the event loop's turns) instead of one every millisecond."""
    queue(store, [f"+3161{i:07d}" for i in range(300)])
    ch = Scripted()
    cfg = DispatchConfig(rate=1000, concurrency=200, poll_interval=0.02)
    t = time.monotonic()
    await drain(store, ch, cfg)
    took = time.monotonic() - t
    gaps = [b - a for a, b in zip(ch.times, ch.times[1:])]
    together = sum(g < 0.0005 for g in gaps)
    assert together >= len(gaps) * 0.6, (together, len(gaps))
    assert took >= (300 - 50) / 1000 * 0.95  # the rate holds (a burst of 50 at the start)


async def test_the_24_hour_window_is_read_once_per_claimed_batch(store, monkeypatch):
    wrote, silent = "+31611111111", "+31622222222"
    queue(store, [wrote, silent])
    store.subscribers.touch(wrote, time.time() - 3600)
    ch = Scripted()
    ch.wants_window = True

    def per_send(subscriber_id):
        raise AssertionError("looked up per send")

    monkeypatch.setattr(store.subscribers, "last_inbound_at", per_send)
    await drain(store, ch)
    assert {m.to: m.window_open for m in ch.calls} == {wrote: True, silent: False}


async def test_per_recipient_interval(store):
    a = "+31611111111"
    ch = Scripted()
    ch.min_interval = 0.3
    queue(store, [a], incident=None, text="een")
    queue(store, [a], incident=None, text="twee")
    await drain(store, ch)
    (t1, t2), (m1, m2) = ch.times, ch.calls
    assert (m1.text, m2.text) == ("een", "twee")
    assert t2 - t1 >= 0.29


# --- supersede: a newer notice of the same incident replaces an older one not yet sent --------


async def test_newer_notice_supersedes_unsent_older_one(store):
    numbers = ["+31611111111", "+31622222222"]
    queue(store, numbers, incident=5, text="oud")
    queue(store, numbers, incident=5, text="nieuw")
    ch = Scripted()
    await drain(store, ch)
    assert [m.text for m in ch.calls] == ["nieuw", "nieuw"]
    assert states(store) == {"sent": 2, "superseded": 2}


async def test_newer_notice_supersedes_deliveries_claimed_but_not_started(store):
    """A slow channel: a claimed batch waits behind the concurrency limit. A newer notice of
    the same incident queued meanwhile must supersede the older one for everyone whose send
    has not started; only the sends under way may still carry it."""
    cfg = dataclasses.replace(DISPATCH, rate=100, concurrency=2)
    nums = [f"+3161111{i:04d}" for i in range(20)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    old = fan_out_notice(store, 1, "oud")
    ch = Scripted(latency=0.3)
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: len(ch.calls) >= 2)
        new = fan_out_notice(store, 1, "nieuw")
        assert await wait_until(lambda: store.deliveries.pending() == 0, timeout=15)
    finally:
        stop.set()
        await task
        d.release()
    got_old = {m.to for m in ch.calls if m.notice_id == old}
    got_new = [m.to for m in ch.calls if m.notice_id == new]
    assert len(got_old) <= 2, f"{len(got_old)} subscribers got the superseded notice"
    assert sorted(got_new) == nums


async def test_older_notice_retried_after_newer_was_queued_is_superseded(store):
    """The older notice is under way (so the fan-out of the newer one cannot supersede it) and
    then fails transiently: it must not go back to the queue and out after the newer one."""
    a = "+31611111111"
    store.subscribers.add(a, "console", "cli:test")
    fan_out_notice(store, 1, "oud")
    ch = Scripted({a: [SendResult("retry", error="130429 rate", retry_after=0.8)]}, latency=0.1)
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: ch.calls)
        fan_out_notice(store, 1, "nieuw")  # while the older one is under way
        d.wake()
        await wait_until(lambda: store.deliveries.pending() == 0)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
        d.release()
    texts = [m.text for m in ch.calls]
    assert "oud" not in texts[texts.index("nieuw"):], texts


# --- unsubscribe while the subscriber's delivery is claimed -----------------------------------


async def test_no_notice_goes_out_after_unsubscribe_from_a_claimed_batch(store):
    """remove() cancels the subscriber's 'sending' deliveries, but a claimed delivery not yet
    started (waiting for a concurrency slot or the rate limit) was sent anyway."""
    import dataclasses

    a, b = "+31611111111", "+31622222222"
    for n in (a, b):
        store.subscribers.add(n, "console", "cli:test")
    fan_out_notice(store, 1, "melding")
    ch = Scripted(latency=0.2)
    d = Dispatcher(dataclasses.replace(CFG, concurrency=1), store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        assert await wait_until(lambda: ch.calls)  # a under way, b claimed and waiting
        assert store.subscribers.remove(b)  # STOP from b
        await wait_until(lambda: store.deliveries.pending() == 0)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await task
        d.release()
    assert [m.to for m in ch.calls] == [a]
    assert store.deliveries.counts() == {"sent": 1, "cancelled": 1}


# --- stop and store failures: the sends under way finish, nobody gets a notice twice ----------


async def test_stop_finishes_sends_under_way(store):
    numbers = [f"+3161{i:07d}" for i in range(20)]
    queue(store, numbers)
    ch = Scripted(latency=0.3)
    cfg = DispatchConfig(rate=1000, concurrency=5, poll_interval=0.02)
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    assert await wait_until(lambda: ch.calls)  # sends under way (each takes 0.3 s)
    stop.set()
    await asyncio.wait_for(task, 5)
    d.release()
    started = len(ch.calls)
    assert 1 <= started <= 5
    assert states(store) == {"sent": started, "pending": 20 - started}


async def test_a_store_error_recording_a_result_neither_crashes_nor_repeats_sends(store):
    """One failing store write in one send task (e.g. "database is locked") must not cancel
    the other sends under way (they would go out again after the supervisor's restart): the
    result is recorded again before the next claim, and nobody gets the notice twice."""
    nums = [f"+3161111{i:04d}" for i in range(8)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    fan_out_notice(store, None, "melding")
    ch = Scripted({nums[0]: [SendResult("retry", error="1 transient")]}, latency=0.2)
    real = store.deliveries.mark_retry
    calls = []

    def failing_once(*args, **kw):
        if not calls:
            calls.append(1)
            raise StoreError("cannot start a transaction: database is locked")
        return real(*args, **kw)

    store.deliveries.mark_retry = failing_once
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        ok = await wait_until(lambda: store.deliveries.counts() == {"sent": 8}, timeout=5)
    finally:
        stop.set()
        await task  # no crash
        d.release()
    assert ok, store.deliveries.counts()
    assert calls, "the store error happened"
    per = [m.to for m in ch.calls]
    assert per.count(nums[0]) == 2  # the transient failure, then the retry
    assert all(per.count(n) == 1 for n in nums[1:]), per


async def test_a_crashing_dispatch_loop_lets_the_sends_under_way_finish(store):
    """The loop itself fails (the store refuses a claim): the sends under way finish and are
    recorded, the rest goes back to the queue, and the restart sends each notice once."""
    nums = [f"+3161111{i:04d}" for i in range(4)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    fan_out_notice(store, None, "melding")
    ch = Scripted(latency=0.3)
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    real_claim = store.deliveries.claim
    claims = []

    def claim_then_fail(limit):
        claims.append(1)
        if len(claims) == 2:
            raise StoreError("disk I/O error")
        return real_claim(limit)

    store.deliveries.claim = claim_then_fail
    try:
        with pytest.raises(StoreError):
            await d.run(asyncio.Event())
        assert store.deliveries.counts() == {"sent": 4}  # finished and recorded, not cut off
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))  # what the supervisor does
        await asyncio.sleep(0.2)
        stop.set()
        await task
    finally:
        d.release()
    assert sorted(m.to for m in ch.calls) == nums


# --- one dispatcher per database --------------------------------------------------------------


async def test_one_dispatcher_per_database(store):
    a = Dispatcher(CFG, store, Scripted())
    a.acquire()
    with pytest.raises(DispatcherBusy):
        Dispatcher(CFG, store, Scripted()).acquire()
    a.release()


# --- pacing: jitter ---------------------------------------------------------------------------


async def test_jitter_adds_to_the_interval_between_sends(store):
    """A linked phone: max_rate 5/s plus up to 0.2 s jitter means gaps of 0.2 to 0.4 s
    (0.3 s on average), never shorter than the rate allows."""
    ch = Scripted()
    ch.max_rate, ch.jitter = 5.0, 0.2
    queue(store, [f"+3161111{i:04d}" for i in range(12)])
    await drain(store, ch)
    gaps = [b - a for a, b in zip(ch.times, ch.times[1:])]
    assert len(gaps) == 11
    assert min(gaps) >= 0.19, gaps
    assert 0.24 <= sum(gaps) / len(gaps) <= 0.36, gaps
