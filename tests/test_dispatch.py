"""The dispatcher against a scripted channel: retries, failures, pauses, pacing, stop."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.channels.base import SendResult
from bridge.config import DispatchConfig
from bridge.outbox import Dispatcher, DispatcherBusy
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


async def test_transient_errors_retry_with_backoff_then_succeed(store):
    a = "+31611111111"
    ch = Scripted({a: [SendResult("retry", error="130429 rate"), SendResult("retry", error="1 x")]})
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert [m.attempt for m in ch.calls] == [1, 2, 3]
    assert counters.sent == 1 and counters.retried == 2
    assert counters.errors == {"130429": 1, "1": 1}
    assert states(store) == {"sent": 1}


async def test_gives_up_after_max_attempts(store):
    a = "+31611111111"
    ch = Scripted({a: [SendResult("retry", error="131000 oops")] * 5})
    queue(store, [a])
    counters, _ = await drain(store, ch)
    assert len(ch.calls) == 3 and counters.failed == 1
    err = store.db.scalar("SELECT error FROM deliveries")
    assert err.startswith("gave up after 3 attempts")


async def test_permanent_failure_counts_unreachable(store):
    a = "+31611111111"
    seen = []
    ch = Scripted({a: [SendResult("failed", error="131026 undeliverable", unreachable=True)]})
    queue(store, [a])
    await drain(store, ch, on_unreachable=lambda sid, n: seen.append(n))
    assert seen == [1] and states(store) == {"failed": 1}


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


async def test_stale_deliveries_are_dropped(store):
    queue(store, ["+31611111111", "+31622222222"])
    store.db.execute("UPDATE deliveries SET created_at = created_at - 7200")
    ch = Scripted()
    counters, _ = await drain(store, ch)
    assert ch.calls == [] and counters.stale == 2
    assert store.db.scalar("SELECT count(*) FROM deliveries WHERE to_addr IS NOT NULL") == 0


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


async def test_newer_notice_supersedes_unsent_older_one(store):
    numbers = ["+31611111111", "+31622222222"]
    queue(store, numbers, incident=5, text="oud")
    queue(store, numbers, incident=5, text="nieuw")
    ch = Scripted()
    await drain(store, ch)
    assert [m.text for m in ch.calls] == ["nieuw", "nieuw"]
    assert states(store) == {"sent": 2, "superseded": 2}


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


async def test_one_dispatcher_per_database(store):
    a = Dispatcher(CFG, store, Scripted())
    a.acquire()
    with pytest.raises(DispatcherBusy):
        Dispatcher(CFG, store, Scripted()).acquire()
    a.release()


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
