"""The dispatcher against a scripted channel: retries, failures, pauses, pacing, supersede,
unsubscribe mid fan-out, stop and store failures."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time

import pytest

from bridge.channels.base import SendResult
from bridge.config import DispatchConfig, HealthConfig
from bridge.outbox import Dispatcher, DispatcherBusy
from bridge.sendhealth import SendHealth
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


async def test_an_answer_recorded_again_after_a_full_store_is_counted_once(store):
    """A 130429 and a 500 whose results the store refused twice (full) and took on the
    third try: each answer counts once in the counters, the send health and the rate's
    throttled count (they counted once per try: /metrics and the summary line showed three
    rate-limit answers where the channel gave one)."""
    from bridge.store import StoreFull

    nums = [f"+3161111{i:04d}" for i in range(3)]
    for n in nums:
        store.subscribers.add(n, "console", "cli:test")
    fan_out_notice(store, None, "melding")
    ch = Scripted({nums[0]: [SendResult("retry", error="130429 rate", rate_limit="global")],
                   nums[1]: [SendResult("retry", error="131000 went wrong")]})
    real = store.deliveries.mark_retry
    refused = []

    def full_twice(*args, **kw):
        if len(refused) < 4:
            refused.append(1)
            raise StoreFull("database or disk is full", "database or disk is full")
        return real(*args, **kw)

    store.deliveries.mark_retry = full_twice
    health = SendHealth(HealthConfig())
    d = Dispatcher(dataclasses.replace(CFG, min_rate=500), store, ch, health=health)
    d.acquire()
    try:
        for _ in range(5):  # the supervisor starts the loop again after each pause
            with contextlib.suppress(StoreFull):
                await d.drain()
            if store.deliveries.counts() == {"sent": 3}:
                break
    finally:
        d.release()
    assert store.deliveries.counts() == {"sent": 3} and len(refused) == 4
    c = d.counters
    assert (c.throttled, c.retried, c.errors) == (1, 1, {"130429": 1, "131000": 1}), c
    assert health.throttled == 1 and d.pace.throttled == 1
    per = [m.to for m in ch.calls]  # the refused answer again, then sent; nobody twice
    assert [per.count(n) for n in nums] == [2, 2, 1], per


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


# --- adaptive rate: against the fake Graph API that throttles (issue 15) ----------------------

TOKEN_ENV = "TEST_DISPATCH_CLOUD_TOKEN"


@pytest.fixture
async def fake(monkeypatch):
    from fake_graph import FakeGraph

    f = FakeGraph(record=True)
    await f.start()
    monkeypatch.setenv(TOKEN_ENV, f.token)
    yield f
    await f.stop()


def cloud_channel(store, fake, max_rate: float, min_interval: float = 0.0):
    """The real Cloud channel on the fake; its subscribers wrote within 24 h (free text)."""
    from helpers import ROOT

    from bridge.channels.cloud import CloudChannel, CloudSettings
    from bridge.core.models import Organisation
    from bridge.core.render import Renderer
    from bridge.switchboard import Switchboard

    settings = CloudSettings(phone_number_id=fake.phone_number_id, base_url=fake.base_url,
                             token_env=TOKEN_ENV, max_rate=max_rate, min_interval=min_interval,
                             unique_cap=0, timeout=5)
    port = Switchboard(store, Renderer(ROOT / "templates", Organisation()), max_age_hours=1,
                       handle_inbound=lambda msg: None)
    return CloudChannel(settings, port)


def subscribers(store, n: int, incident=None) -> list[str]:
    nums = [f"+3162{i:07d}" for i in range(n)]
    with store.tx():
        store.db.conn.executemany(
            "INSERT INTO subscribers (number, channel, consent_at, consent_ref, last_inbound_at)"
            " VALUES (?,?,?,?,?)", [(x, "cloud", time.time(), "test", time.time()) for x in nums])
    fan_out_notice(store, incident, "Storing in uw regio")
    return nums


class RateLog:
    """Samples ``Dispatcher.rate`` every 50 ms while a dispatcher runs."""

    def __init__(self, d: Dispatcher):
        self.d, self.samples = d, []

    async def __aenter__(self):
        async def sample():
            while True:
                self.samples.append((time.monotonic(), self.d.rate))
                await asyncio.sleep(0.05)
        self.task = asyncio.create_task(sample())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def rates(self) -> list[float]:
        return [r for _, r in self.samples]


async def run_until(d: Dispatcher, cond, timeout: float) -> bool:
    """Run ``d`` (acquired) until ``cond()`` holds or ``timeout`` s passed; then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        return await wait_until(cond, timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_throttling_api_gets_every_notice_once_at_the_rate_it_allows(store, fake):
    """Scaled down from the issue (10/s bucket, 2,000 at 80/s; bench/throttle.py): a 50/s
    bucket, 1,000 recipients at 200/s. All sent, none failed, nobody twice; the rate came
    down to what the API allows and went back up between its refusals."""
    fake.bucket(50)
    subscribers(store, 1000)
    ch = cloud_channel(store, fake, max_rate=200)
    cfg = dataclasses.replace(DISPATCH, rate=200, concurrency=32, max_attempts=3)
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    try:
        async with RateLog(d) as rl:
            ok = await run_until(d, lambda: store.deliveries.pending() == 0, timeout=60)
    finally:
        d.release()
        await ch.close()
    assert ok, store.deliveries.counts()
    assert store.deliveries.counts() == {"sent": 1000}
    assert len(fake.accepted_to) == 1000 and set(fake.accepted_to.values()) == {1}
    assert fake.throttled > 0 and d.counters.throttled == fake.throttled
    assert d.counters.failed == 0 and d.counters.retried == 0
    rates = rl.rates()
    low = rates.index(min(rates))
    assert min(rates) <= 60, rates  # came down to about the bucket's 50/s
    assert max(rates[low:]) > min(rates), rates  # and went up again after
    # attempts were not used up: each delivery counts one
    assert store.db.scalar("SELECT max(attempts) FROM deliveries") == 1


async def test_after_a_storm_of_130429_the_backlog_drains_at_the_shared_rate(store, fake):
    """Every send refused with 130429 for 3 s: the deliveries wait for the shared rate, not
    each on its own backoff (30 s and more here), so the backlog is gone seconds after the
    storm ends, and the rate is back at the configured one."""
    subscribers(store, 300)
    ch = cloud_channel(store, fake, max_rate=100)
    cfg = dataclasses.replace(DISPATCH, rate=100, concurrency=16, backoff_base=30,
                              backoff_max=600)
    fake.storm(3)
    storm_end = time.monotonic() + 3
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    try:
        async with RateLog(d) as rl:
            ok = await run_until(d, lambda: store.deliveries.pending() == 0, timeout=40)
            drained = time.monotonic() - storm_end
            await asyncio.sleep(1.2)  # one clean second more: the last raise
    finally:
        d.release()
        await ch.close()
    assert ok, store.deliveries.counts()
    assert store.deliveries.counts() == {"sent": 300}
    assert set(fake.accepted_to.values()) == {1} and len(fake.accepted_to) == 300
    assert fake.throttled > 0 and d.counters.retried == 0
    rates = rl.rates()
    low = rates.index(min(rates))
    assert min(rates) <= 25, rates  # halved once a second while it lasted
    assert max(rates[low:]) >= 50, rates  # raised again by the sends accepted after it
    # the ramp from the floor takes 1 / rate_increase = 10 s at most; backoff would take 30+
    assert drained < 25, drained
    assert store.db.scalar("SELECT max(attempts) FROM deliveries") == 1


async def test_a_per_recipient_limit_slows_only_that_recipient(store, fake):
    """131056 twice for one recipient: it waits (1 s, then 4 s) while everyone else goes at
    the full rate; the global rate never comes down and its attempts are not used up."""
    nums = subscribers(store, 100)
    slow = nums[0]
    fake.script(slow, 131056, 131056)
    ch = cloud_channel(store, fake, max_rate=200)
    d = Dispatcher(dataclasses.replace(DISPATCH, rate=200, concurrency=16), store, ch)
    d.acquire()
    try:
        async with RateLog(d) as rl:
            ok = await run_until(d, lambda: store.deliveries.pending() == 0, timeout=20)
    finally:
        d.release()
        await ch.close()
    assert ok and store.deliveries.counts() == {"sent": 100}
    assert set(rl.rates()) == {200}
    sends = fake.sends(slow)
    assert [r.answer.split()[0] for r in sends] == ["131056", "131056", "ok"]
    assert sends[2].at - sends[0].at >= 4.9  # 1 s, then 4 s
    others = [r.at for r in fake.accepted() if r.to != slow]
    assert max(others) < sends[1].at + 1  # the others did not wait for it
    assert d.counters.throttled == 2 and d.counters.retried == 0
    assert store.db.scalar("SELECT max(attempts) FROM deliveries") == 1


async def test_the_cloud_channel_types_its_rate_limit_answers(store, fake):
    from bridge.channels.base import Outgoing

    ch = cloud_channel(store, fake, max_rate=100)
    a, b, c, e = "+31611111111", "+31622222222", "+31633333333", "+31644444444"
    fake.script(a, 130429)
    fake.script(b, 131056)
    fake.script(c, ("raw", 429, "text/html", "<html>slow down</html>", {"Retry-After": "7"}))
    fake.script(e, 131000)
    try:
        out = {}
        for to in (a, b, c, e):
            out[to] = await ch.send(Outgoing(delivery_id=1, to=to, text="x", kind="notice",
                                              notice_id=1, window_open=True))
    finally:
        await ch.close()
    assert [(out[x].status, out[x].rate_limit) for x in (a, b, c, e)] == [
        ("retry", "global"), ("retry", "recipient"), ("retry", "global"), ("retry", None)]
    assert out[c].retry_after == 7.0 and out[b].retry_after == 1.0


async def test_a_retry_after_holds_every_send(store):
    """A global rate limit that names a Retry-After: nothing goes out before it passed."""
    nums = [f"+3161111{i:04d}" for i in range(5)]
    ch = Scripted({nums[0]: [SendResult("retry", error="130429 rate", retry_after=1.0,
                                        rate_limit="global")]})
    queue(store, nums)
    counters, _ = await drain(store, ch, dataclasses.replace(CFG, concurrency=1))
    assert counters.sent == 5 and counters.throttled == 1
    first_refusal = ch.times[0]
    assert all(t - first_refusal >= 0.95 for t in ch.times[1:]), ch.times


async def test_rate_limits_never_use_up_attempts_only_max_age_ends_them(store):
    """Refused as over the rate limit more often than max_attempts (3) allows: it still goes
    out, with one attempt counted. One refused for ever stays queued until max_age_hours
    drops it as stale."""
    a, b = "+31611111111", "+31622222222"
    limited = SendResult("retry", error="130429 rate", rate_limit="global")
    ch = Scripted({a: [limited] * 6})
    queue(store, [a])
    cfg = dataclasses.replace(CFG, min_rate=500)  # keep the test fast
    counters, _ = await drain(store, ch, cfg)
    assert counters.sent == 1 and counters.failed == 0 and counters.throttled == 6
    assert store.db.scalar("SELECT attempts FROM deliveries") == 1
    ch = Scripted({b: [limited] * 100_000})
    queue(store, [b])
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    try:
        await run_until(d, lambda: len(ch.calls) >= 20, timeout=10)
        # (the second notice went to a as well)
        assert store.deliveries.counts() == {"sent": 2, "pending": 1}  # never failed
        store.db.execute("UPDATE deliveries SET created_at = created_at - 7200"
                         " WHERE state = 'pending'")
        counters = await d.drain()
    finally:
        d.release()
    assert counters.stale == 1 and counters.failed == 0
    assert store.deliveries.counts() == {"sent": 2, "stale": 1}


# --- a loop that always yields: thousands of notices due for one subscriber (issue 15) -------


def one_subscriber_backlog(store, n: int, to: str = "+31611111111") -> None:
    """``n`` notices of ``n`` incidents, all due now for one subscriber (a mailbox's backlog
    at first start)."""
    store.subscribers.add(to, "console", "cli:test")
    for i in range(n):
        fan_out_notice(store, 1000 + i, f"melding {i}")


class Heartbeat:
    """The event loop's longest stall: a task that wakes every 10 ms and notes the gap,
    as wall time (``wall``) and as this thread's CPU time (``longest``: what the loop spent
    working between two beats, not counting time the OS gave to other processes on a
    busy machine)."""

    def __init__(self):
        self.longest = self.wall = 0.0

    async def __aenter__(self):
        async def beat():
            last, cpu = time.monotonic(), time.thread_time()
            while True:
                await asyncio.sleep(0.01)
                t, c = time.monotonic(), time.thread_time()
                self.wall = max(self.wall, t - last - 0.01)
                self.longest = max(self.longest, c - cpu)
                last, cpu = t, c
        self.task = asyncio.create_task(beat())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_a_backlog_for_one_paced_subscriber_waits_in_the_store(store):
    """2,000 notices due for one subscriber on a channel that paces a recipient as the Cloud
    API does (6 s): they go one per 6 s, the loop never stalls (longest < 100 ms), the
    deliveries are put off in the store in one UPDATE per interval (not re-queued every few
    ms), and a stop is obeyed at once."""
    one_subscriber_backlog(store, 2000)
    ch = Scripted()
    ch.min_interval = 6.0
    defers = []
    real = store.deliveries.defer

    def counting(*a, **kw):
        defers.append(time.monotonic())
        return real(*a, **kw)

    store.deliveries.defer = counting
    d = Dispatcher(dataclasses.replace(DISPATCH, rate=500), store, ch)
    d.acquire()
    stop = asyncio.Event()
    try:
        async with Heartbeat() as hb:
            task = asyncio.create_task(d.run(stop))
            await asyncio.sleep(6.5)
            t = time.monotonic()
            stop.set()
            await asyncio.wait_for(task, 5)
            stopped_in = time.monotonic() - t
    finally:
        d.release()
    assert len(ch.calls) == 2, len(ch.calls)  # at 0 s and 6 s
    assert 5.9 <= ch.times[1] - ch.times[0] <= 6.5
    assert [m.text for m in ch.calls] == ["melding 0", "melding 1"]  # in order
    assert len(defers) <= 3, len(defers)
    assert hb.longest < 0.1 and hb.wall < 0.5, (hb.longest, hb.wall)
    assert stopped_in < 1, stopped_in
    assert store.deliveries.counts() == {"sent": 2, "pending": 1998}
    assert store.db.scalar("SELECT max(attempts) FROM deliveries WHERE state='pending'") == 0


async def test_a_backlog_for_one_unpaced_subscriber_drains_at_the_rate(store):
    """min_interval 0: one send at a time to the subscriber (in order), at the dispatch
    rate, the loop never stalling; every notice once."""
    one_subscriber_backlog(store, 2000)
    ch = Scripted()
    cfg = dataclasses.replace(DISPATCH, rate=400, concurrency=8)
    d = Dispatcher(cfg, store, ch)
    d.acquire()
    try:
        async with Heartbeat() as hb:
            t = time.monotonic()
            ok = await run_until(d, lambda: store.deliveries.pending() == 0, timeout=30)
            took = time.monotonic() - t
    finally:
        d.release()
    assert ok, store.deliveries.counts()
    assert [m.text for m in ch.calls] == [f"melding {i}" for i in range(2000)]
    assert hb.longest < 0.1 and hb.wall < 0.5, (hb.longest, hb.wall)
    rate = 2000 / took
    assert 200 <= rate <= 440, rate  # the configured 400/s (a burst of 40 at the start)


@pytest.mark.parametrize("interval", [6.0, 0.0])
def test_the_daemon_with_a_one_subscriber_backlog_obeys_sigterm(tmp_path, interval):
    """`bridge run` (a real process) with 2,000 notices due for one subscriber on the console
    channel: it sends at the pacing (one per 6 s; or at dispatch.rate 100/s without an
    interval) and a SIGTERM ends it within 5 s; nobody gets a notice twice."""
    from daemon import Daemon
    from helpers import read_outbox, write_config

    from bridge.store import Store

    cfg = write_config(tmp_path, rate=100, channel_extra=f"""
        [channel.console]
        quiet = true
        outbox_file = "{tmp_path / 'outbox.jsonl'}"
        min_interval = {interval}
        """)
    # write_config already wrote a [channel.console] table: keep the last one only
    text = cfg.read_text()
    first = text.index("[channel.console]")
    cfg.write_text(text[:first] + text[text.index("\n\n", first) + 2:])
    store = Store.open(tmp_path / "bridge.db")
    one_subscriber_backlog(store, 2000)
    store.close()
    d = Daemon(cfg).start(wait=False)
    try:
        want = 2 if interval else 300
        assert wait_for_outbox(tmp_path, 1, 30), d.log()
        first_at = time.monotonic()
        assert wait_for_outbox(tmp_path, want, 30), d.log()
        took = time.monotonic() - first_at
        time.sleep(0.5)
        t = time.monotonic()
        code = d.stop(timeout=5)
        stopped_in = time.monotonic() - t
    finally:
        if d.alive():
            d.kill()
    assert code == 0 and stopped_in < 5, (code, stopped_in)
    sent = read_outbox(tmp_path)
    ids = [m["delivery_id"] for m in sent]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    if interval:
        assert 5.5 <= took <= 7.5, took  # the second one 6 s after the first
        assert len(sent) <= 3
    else:
        assert 60 <= (want - 1) / took <= 110, took  # dispatch.rate 100/s
    store = Store.open(tmp_path / "bridge.db")
    try:
        counts = store.deliveries.counts()
    finally:
        store.close()
    assert counts == {"sent": len(sent), "pending": 2000 - len(sent)}, counts


def wait_for_outbox(tmp_path, n: int, timeout: float) -> bool:
    """Wait until the console channel's outbox file has ``n`` complete lines."""
    p = tmp_path / "outbox.jsonl"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.exists() and p.read_bytes().count(b"\n") >= n:
            return True
        time.sleep(0.02)
    return False


async def test_a_long_retry_after_ends_a_drain_instead_of_blocking_it(store):
    """`bridge dispatch` (drain) told to hold for 10 minutes returns, the rest waiting."""
    nums = [f"+3161111{i:04d}" for i in range(3)]
    ch = Scripted({nums[0]: [SendResult("retry", error="130429 rate", retry_after=600,
                                        rate_limit="global")]})
    queue(store, nums)
    t = time.monotonic()
    counters, d = await asyncio.wait_for(drain(store, ch, dataclasses.replace(CFG,
                                                                               concurrency=1)), 10)
    assert time.monotonic() - t < 5
    assert counters.throttled == 1 and counters.sent == 0
    assert store.deliveries.counts() == {"pending": 3}
    assert store.db.scalar("SELECT max(attempts) FROM deliveries") == 0


async def test_a_drain_returns_when_the_channel_refuses_every_send_for_its_rate(store,
                                                                           monkeypatch):
    """`bridge dispatch` (drain) in a storm of 130429 without Retry-After: the refused are
    due again at once, so the drain went on at the lowest rate for as long as the storm
    lasted (a one-shot that did not return). Now it returns once nothing was accepted for
    DRAIN_GIVE_UP seconds, the rest queued with no attempt used; a channel that accepts
    some (merely slow) is drained to the end (test_a_throttling_api_gets_every_notice...)."""
    import bridge.outbox as outbox

    monkeypatch.setattr(outbox, "DRAIN_GIVE_UP", 0.5, raising=False)
    nums = [f"+3161111{i:04d}" for i in range(4)]
    limited = SendResult("retry", error="130429 rate", rate_limit="global")
    ch = Scripted({n: [limited] * 100_000 for n in nums})
    queue(store, nums)
    cfg = dataclasses.replace(CFG, min_rate=20)
    counters, _ = await asyncio.wait_for(drain(store, ch, cfg), 10)
    assert counters.sent == 0 and counters.throttled >= 4
    assert store.deliveries.counts() == {"pending": 4}
    assert store.db.scalar("SELECT max(attempts) FROM deliveries") == 0


# --- the adaptive rate by itself (bridge/pacing.py), on a clock the test moves ---------------


def test_a_steady_throttle_logs_its_rate_changes_once_a_minute_not_each_second(monkeypatch,
                                                                              caplog):
    """An API slower than the configured rate: the rate saws between ~10 and ~18/s, down
    about once a second. That was an INFO line a second (180 in a 2,000 fan-out at 10/s);
    the summary WARNING counts the answers. Now: the first decrease, one a minute, and
    each that names a Retry-After."""
    import bridge.pacing as pacing

    now = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: now[0])
    caplog.set_level(logging.INFO, logger="bridge.outbox")
    r = pacing.AdaptiveRate(80, floor=1, decrease=0.5, increase=0.1)
    for _ in range(120):  # two minutes: over the limit, then a clean second, ...
        r.limited(why="130429")
        now[0] += 1.0
        r.accepted()
        now[0] += 0.01
    r.limited(retry_after=30, why="130429")
    told = [x.getMessage() for x in caplog.records if x.levelno >= logging.INFO
            and "over its rate limit" in x.getMessage()]
    assert 2 <= len(told) <= 4, told
    assert "all sends held for 30 s" in told[-1]


def test_the_adaptive_rate_halves_once_a_second_and_climbs_back_by_a_tenth(monkeypatch):
    import bridge.pacing as pacing

    now = [1000.0]
    monkeypatch.setattr(pacing.time, "monotonic", lambda: now[0])
    r = pacing.AdaptiveRate(80, floor=1, decrease=0.5, increase=0.1)
    r.limited()
    r.limited()  # the same second: answers to sends already under way
    assert r.rate == 40 and r.throttled == 2
    for _ in range(8):
        now[0] += 1.0
        r.limited()
    assert r.rate == 1  # never below the floor
    now[0] += 0.5
    r.accepted()
    assert r.rate == 1  # not a clean second yet
    rates = []
    for _ in range(12):
        now[0] += 1.0
        r.accepted()
        rates.append(r.rate)
    assert rates[:3] == [9, 17, 25] and rates[-1] == 80  # +8/s, up to the configured 80
    # a decrease never goes below what was accepted in the last 2 s
    for _ in range(60):
        now[0] += 0.05
        r.accepted()  # 20/s accepted
    r.limited(retry_after=3)
    assert r.rate == 40 and 2.9 < r.held() <= 3
    steep = pacing.AdaptiveRate(80, floor=1, decrease=0.1)
    for _ in range(40):
        now[0] += 0.05
        steep.accepted()  # 20/s accepted over the last 2 s
    steep.limited()
    assert steep.rate == 20  # not 80 x 0.1 = 8: what the channel just accepted


# --- fan-out progress after a restart, and one summary line instead of a line per retry -----


async def test_progress_after_a_restart_counts_what_is_left_at_the_real_rate(store, caplog,
                                                                            monkeypatch):
    import bridge.progress

    monkeypatch.setattr(bridge.progress, "MEASURE_AFTER", 0.5)
    numbers = [f"+3161{i:07d}" for i in range(300)]
    nid = queue(store, numbers)
    # before the "restart": 200 of the 300 were sent by the last run
    store.db.execute("UPDATE deliveries SET state='sent', to_addr=NULL, finished_at=1"
                     " WHERE id IN (SELECT id FROM deliveries ORDER BY id LIMIT 200)")
    store.db.conn.commit()
    cfg = dataclasses.replace(CFG, rate=50, progress_every=0.2)
    caplog.set_level(logging.INFO, logger="bridge.outbox")
    counters, _ = await drain(store, Scripted(), cfg)
    assert counters.sent == 100 and states(store) == {"sent": 300}
    lines = [r.getMessage() for r in caplog.records if f"notice {nid}:" in r.getMessage()]
    assert lines[0] == f"dispatch: notice {nid}: fan-out to 300 recipients resumed, 100 left," \
                       " 50/s, ETA 2 s", lines
    progress = [re.search(r": (\d+)/300 done, (\d+) left, (\d+)/s", x) for x in lines[1:-1]]
    assert progress and all(progress), lines
    for m in progress:
        done, left, rate = map(int, m.groups())
        assert done + left == 300 and done >= 200  # done and left from the store
        # the rate of this run only (before the fix: all 300 done over this run's time,
        # several hundred per second)
        assert rate <= 2 * 50, lines
    assert any("(allowed)" not in x for x in lines[1:-1])  # measured once there was enough
    assert lines[-1].startswith(f"dispatch: notice {nid}: fan-out finished, 300/300, 100 in ")


def test_progress_after_a_storm_gives_the_rate_of_now_not_the_average(store, caplog,
                                                                     monkeypatch):
    """200 recipients; 30 s of a 130429 storm in which nothing was finished, then 10/s. The
    progress line after ten seconds at 10/s said "2/s, ETA 44 s" (the run's average, storm
    included) for 99 left that take 10 s: it gives the rate since the previous line."""
    import bridge.progress as progress

    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    nid = queue(store, [f"+3161{i:07d}" for i in range(200)])
    batch = store.deliveries.claim(200)
    p = progress.FanOutProgress(store, 10.0, lambda: 80.0, lambda: None)
    caplog.set_level(logging.INFO, logger="bridge.outbox")
    p.track(batch)
    now[0] += 30  # the storm
    for d in batch[:120]:
        now[0] += 0.1  # 10/s
        store.db.execute("UPDATE deliveries SET state = 'sent' WHERE id = ?", (d.id,))
        p.advance(d)
    lines = [r.getMessage() for r in caplog.records if f"notice {nid}: " in r.getMessage()
             and " done, " in r.getMessage()]
    assert len(lines) == 2, lines  # one per progress_every
    done, left, rate, eta = re.search(r": (\d+)/200 done, (\d+) left, (\d+)/s, ETA (\d+) s",
                                      lines[1]).groups()
    assert int(done) + int(left) == 200 and int(rate) == 10, lines
    assert abs(int(eta) - int(left) / 10) <= 1, lines


def summaries(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dispatch: last " in r.getMessage()]


async def test_retries_are_summed_up_in_one_warning_per_interval_not_a_line_each(store, caplog):
    numbers = [f"+3161{i:07d}" for i in range(40)]
    script = {n: [SendResult("retry", error="130429 (#130429) Rate limit hit",
                             rate_limit="global")] for n in numbers[:30]}
    script.update({n: [SendResult("retry", error="HTTP 500")] for n in numbers[30:35]})
    queue(store, numbers)
    health = SendHealth(HealthConfig(window_s=30))
    caplog.set_level(logging.DEBUG, logger="bridge.outbox")
    counters, d = await drain(store, Scripted(script), health=health)
    assert counters.sent == 40 and counters.retried == 5 and counters.throttled == 30
    assert not [r for r in caplog.records if "retry" in r.getMessage()
                and r.levelno < logging.WARNING]  # no line per retry
    assert summaries(caplog) == []  # the interval is not over yet
    health.tick(time.time() + 31)
    [line] = summaries(caplog)
    assert re.fullmatch(r"dispatch: last \d+ s: 40 sent, 35 retrying \(130429 x30,"
                        r" HTTP 500 x5\), 0 failed", line), line
    assert [r.levelname for r in caplog.records if "dispatch: last " in r.getMessage()] == \
        ["WARNING"]
    assert health.throttled == 30 and health.retrying() == 0


async def test_no_summary_line_when_every_send_is_accepted(store, caplog):
    queue(store, [f"+3161{i:07d}" for i in range(20)])
    health = SendHealth(HealthConfig(window_s=30))
    caplog.set_level(logging.DEBUG, logger="bridge.outbox")
    counters, _ = await drain(store, Scripted(), health=health)
    health.tick(time.time() + 31)
    assert counters.sent == 20 and summaries(caplog) == [] and health.state == "ok"
