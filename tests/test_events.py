"""bridge.events: the bus, and the events the pipeline, the dispatcher and the supervisor
publish (mail back subscribes; the console and health will)."""

from __future__ import annotations

import asyncio
import logging

from helpers import Scripted, sample, sample_now, wait_until

from bridge.channels.base import SendResult
from bridge.events import (ChannelPaused, ChannelResumed, DaemonStopping, EventBus,
                           FanOutEnded, MailProcessed, ReviewDecided)
from bridge.store import RawMail


def test_subscribers_run_in_order_and_one_that_fails_is_only_logged(caplog):
    bus, seen = EventBus(), []
    bus.subscribe(ChannelPaused, lambda e: seen.append(("a", e.reason)))
    bus.subscribe(ChannelPaused, lambda e: 1 / 0)
    bus.subscribe(ChannelPaused, lambda e: seen.append(("b", e.reason)))
    bus.subscribe(ChannelResumed, lambda e: seen.append(("resumed", e.was)))
    with caplog.at_level(logging.ERROR, "bridge.events"):
        bus.publish(ChannelPaused(channel="cloud", reason="190"))
    assert seen == [("a", "190"), ("b", "190")]
    assert "a subscriber of ChannelPaused failed" in caplog.text
    bus.publish(DaemonStopping(reason="SIGTERM"))  # nobody listens: nothing happens


def record(app) -> list:
    seen: list = []
    for kind in (MailProcessed, ReviewDecided, FanOutEnded, ChannelPaused, ChannelResumed):
        app.events.subscribe(kind, seen.append)
    return seen


def test_the_pipeline_publishes_outcomes_and_review_decisions(app):
    seen = record(app)
    app.store.subscribers.add("+31611111111", "console", "cli:test")
    queued = app.store.mails.add(RawMail(sample_now("01"), "smtp"))
    app.pipeline.process(queued)
    app.pipeline.process(queued)  # decided before: not published again
    review = app.store.mails.add(RawMail(
        b"From: <storingsmeldingen@wholesale.kpn.example>\r\nSubject: Melding\r\n"
        b"Message-ID: <r@x>\r\n\r\nEr is iets in Amersfoort.\r\n", "smtp"))
    app.pipeline.process(review)
    app.review.approve(1)
    assert [(type(e).__name__, getattr(e, "outcome", getattr(e, "decision", None)))
            for e in seen] == [("MailProcessed", "queued"), ("MailProcessed", "review"),
                               ("ReviewDecided", "approved")]
    first, _, decided = seen
    assert (first.mail_id, first.notice_id, first.recipients, first.ticket) == \
        (queued, 1, 1, "INC000012345678")
    assert (decided.review_id, decided.mail_id, decided.notice_id, decided.recipients) == \
        (1, review, 2, 1)


async def test_the_dispatcher_publishes_fan_out_ends_and_pause_changes(app):
    seen = record(app)
    numbers = ["+31611111111", "+31622222222", "+31633333333"]
    for n in numbers:
        app.store.subscribers.add(n, "console", "cli:test")
    ch = app._channel = Scripted(script={numbers[0]: [SendResult("failed", error="131026 gone"
                                                                 " for +31611111111")]})
    with app.store.tx():
        nid = app.store.incidents.add_notice(incident_id=None, raw_mail_id=None, kind="storing",
                                             status="nieuw", template="t", text="x",
                                             report=None, fallback=False)
        app.store.deliveries.fan_out(nid, None)
    stop = asyncio.Event()
    task = asyncio.create_task(app.dispatcher.run(stop))
    try:
        assert await wait_until(lambda: any(isinstance(e, FanOutEnded) for e in seen))
        ch.paused = "mqtt: broker gone"
        assert await wait_until(lambda: any(isinstance(e, ChannelPaused) for e in seen))
        ch.paused = None
        assert await wait_until(lambda: any(isinstance(e, ChannelResumed) for e in seen))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    ended, paused, resumed = seen
    assert (ended.notice_id, ended.recipients, ended.failed) == (nid, 3, 1)
    assert ended.failures == (("131026 gone for +316****1111", 1),)  # masked
    assert paused.reason == "mqtt: broker gone" and paused.channel == "console"
    assert resumed.was == "mqtt: broker gone" and resumed.paused_for > 0
