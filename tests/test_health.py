"""Sending health (bridge.sendhealth): the sliding window of send results -> ok or degraded
with a reason, urgent (503) after degraded_after_s, retrying and throttled counts, the
summary line, the events for the operator alert, and the state operators see (overall).

A clock of our own: no sleeping, no timed assertions."""

from __future__ import annotations

import logging

import pytest

from bridge.config import HealthConfig
from bridge.events import EventBus, SendingDegraded, SendingRecovered
from bridge.sendhealth import SendHealth, overall, reason_key

CFG = HealthConfig(window_s=60, degraded_share=0.5, degraded_after_s=120, min_results=5)


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def health(cfg=CFG):
    clock, bus, seen = Clock(), EventBus(), []
    bus.subscribe(SendingDegraded, seen.append)
    bus.subscribe(SendingRecovered, seen.append)
    return SendHealth(cfg, bus, clock=clock), clock, seen


# --- the verdict ------------------------------------------------------------------------------


def test_all_accepted_is_ok_and_said_once_after_start():
    h, clock, seen = health()
    for i in range(10):
        h.note("sent", delivery_id=i)
    j = h.judge()
    assert (j.state, j.reason, j.urgent, j.sent, j.not_accepted) == ("ok", None, False, 10, 0)
    assert seen == [SendingRecovered(at=clock.t)]  # the first full window: an all-clear


def test_a_storm_is_degraded_with_its_reasons_then_urgent_then_ok_again():
    h, clock, seen = health()
    for i in range(8):
        h.note("retry", "130429 (#130429) Rate limit hit", delivery_id=i, retry_at=clock.t + 30,
               throttled=True)
    h.note("retry", "HTTP 500", delivery_id=8, retry_at=clock.t + 30)
    h.note("sent", delivery_id=9)
    j = h.judge()
    assert j.state == "degraded" and not j.urgent
    assert j.reason == ("90 % of 10 sends not accepted in the last 60 s: 130429 x8, HTTP 500 x1")
    assert j.retrying == 9 and j.throttled == 8
    assert [type(e) for e in seen] == [SendingDegraded]
    start = clock.t
    clock.t += 119
    h.note("retry", "HTTP 500", delivery_id=10, retry_at=clock.t + 30)
    assert h.judge().urgent is False  # not yet degraded_after_s
    clock.t = start + 121
    for i in range(5):
        h.note("retry", "HTTP 500", delivery_id=20 + i, retry_at=clock.t + 30)
    j = h.judge()
    assert j.state == "degraded" and j.urgent and j.since == start
    clock.t += 61  # the storm is over: the failures leave the window ...
    for i in range(30):
        h.note("sent", delivery_id=100 + i)
    j = h.judge()
    assert (j.state, j.urgent) == ("ok", False)
    assert [type(e) for e in seen] == [SendingDegraded, SendingRecovered]
    assert seen[1].was.startswith("100 % of") and seen[1].degraded_for == pytest.approx(182)


def test_while_nothing_is_sent_degraded_holds_as_long_as_retries_wait():
    h, clock, _ = health()
    for i in range(6):
        h.note("retry", "131000 Something went wrong", delivery_id=i, retry_at=clock.t + 100)
    assert h.judge().state == "degraded"
    clock.t += 90  # the window is empty, the retries are not due yet
    j = h.judge()
    assert j.state == "degraded" and j.retrying == 6 and "6 deliveries wait" in j.reason
    clock.t += 20  # due now (and claimed): not waiting any more
    assert h.judge().state == "ok"


def test_few_results_decide_nothing_and_paused_results_are_the_channels_pause():
    h, clock, _ = health()
    for i in range(4):
        h.note("failed", "131026 undeliverable", delivery_id=i)
    assert h.judge().state == "ok"  # 4 < min_results
    for i in range(20):
        h.note("paused", "190 token expired", delivery_id=10 + i)
    assert h.judge().state == "ok"  # a pause is judged apart (overall)


# --- the summary line -------------------------------------------------------------------------


def test_one_summary_per_window_quiet_when_all_is_well(caplog):
    caplog.set_level(logging.DEBUG, logger="bridge.outbox")
    h, clock, _ = health()
    for i in range(100):
        h.note("sent", delivery_id=i)
    clock.t += 61
    h.tick()
    assert not [r for r in caplog.records if "last" in r.getMessage()]
    for i in range(412):
        h.note("sent")
    for i in range(80):
        h.note("retry", "130429 Rate limit hit", delivery_id=i, retry_at=clock.t + 5)
    for i in range(8):
        h.note("retry", "HTTP 500", delivery_id=100 + i, retry_at=clock.t + 5)
    h.note("failed", "gave up after 8 attempts: 131000 Something went wrong")
    clock.t += 60
    h.tick()
    h.tick()  # once per window
    lines = [r for r in caplog.records if "dispatch: last" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "dispatch: last 60 s: 412 sent, 88 retrying (130429 x80, HTTP 500 x8),"
        " 1 failed (gave up x1)"]
    assert lines[0].levelno == logging.WARNING


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "key"), [
    ("130429 (#130429) Rate limit hit", "130429"),
    ("131056 (#131056) Pair rate limit", "131056"),
    ("80007 rate", "80007"),
    ("HTTP 429", "HTTP 429"),
    ("HTTP 500", "HTTP 500"),
    ("131000 Something went wrong", "131000"),
    ("network timeout after 5 s", "network timeout"),
    ("channel error: RuntimeError: boom", "channel error"),
    ("mqtt: no PUBACK from +31612345678", "mqtt no"),
    (None, "error"),
])
def test_reason_key(error, key):
    assert reason_key(error) == key


def test_overall_puts_what_pauses_sending_first():
    h, clock, _ = health()
    for i in range(10):
        h.note("retry", "HTTP 500", delivery_id=i, retry_at=clock.t + 5)
    j = h.judge()
    assert overall(j).state == "degraded"
    v = overall(j, operator_paused="paused by anna: onderhoud")
    assert (v.state, v.reason, v.urgent) == ("paused", "paused by anna: onderhoud", False)
    v = overall(j, channel_paused="190 token expired", operator_paused="paused by anna")
    assert (v.state, v.reason, v.urgent) == ("paused", "channel: 190 token expired", True)
    v = overall(j, store_problem="database or disk is full", channel_paused="x")
    assert (v.state, v.reason, v.urgent) == ("paused", "store: database or disk is full", True)
    assert overall(None, store_ok=False).reason == "store: not reachable"
    assert overall(None) .state == "ok"
