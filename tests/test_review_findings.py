"""Regression tests for bugs found in a review of the imperative shell."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.channels.base import Outgoing, SendResult
from bridge.config import DispatchConfig
from bridge.outbox import Dispatcher
from bridge.store import Store, StoreError

CFG = DispatchConfig(rate=1000, concurrency=8, max_attempts=3, backoff_base=0.01,
                     backoff_max=0.05, poll_interval=0.02, max_age_hours=1)


class Scripted:
    """A channel answering from a per-recipient script (then OK), with a latency."""

    name = "console"
    max_rate = None
    min_interval = 0.0
    jitter = 0.0
    wants_window = False

    def __init__(self, script=None, latency=0.0):
        self.script = script or {}
        self.latency = latency
        self.calls: list[Outgoing] = []
        self.paused = None

    async def send(self, msg: Outgoing) -> SendResult:
        self.calls.append(msg)
        await asyncio.sleep(self.latency)
        answers = self.script.get(msg.to, [])
        return answers.pop(0) if answers else SendResult.ok(f"id-{msg.delivery_id}")

    async def run(self):
        await asyncio.Event().wait()

    def describe(self):
        return {}


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "b.db")
    yield s
    s.close()


def notice(store, incident, text):
    with store.tx():
        nid = store.incidents.add_notice(incident_id=incident, raw_mail_id=None, kind="storing",
                                         status="nieuw", template="t", text=text, report=None,
                                         fallback=False)
        store.deliveries.fan_out(nid, incident)
    return nid


async def wait_until(cond, timeout=3.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return False


# -- outbox: a dispatcher restarted by the supervisor after a crash ----------------------------
async def test_dispatcher_restart_after_crash_sends_what_the_crash_left_in_sending(store):
    """The supervisor restarts a crashed dispatcher in the same process (no new acquire()):
    deliveries claimed by the crashed run must not stay in 'sending' for ever."""
    a = "+31611111111"
    store.subscribers.add(a, "console", "cli:test")
    notice(store, None, "melding")
    ch = Scripted({a: [SendResult("retry", error="1 transient")]})
    d = Dispatcher(CFG, store, ch)
    d.acquire()
    real = store.deliveries.mark_retry
    calls = []

    def failing_once(*args, **kw):
        if not calls:
            calls.append(1)
            raise StoreError("commit failed: disk I/O error")
        return real(*args, **kw)

    store.deliveries.mark_retry = failing_once
    try:
        with pytest.raises(BaseException):
            await d.run(asyncio.Event())
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        ok = await wait_until(lambda: store.deliveries.counts() == {"sent": 1})
        stop.set()
        await task
    finally:
        d.release()
    assert ok, store.deliveries.counts()
