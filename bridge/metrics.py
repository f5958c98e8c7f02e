"""Prometheus metrics of the running daemon (served by bridge.web at ``GET /metrics``).

A custom registry (never the process-global default one), so tests and several App
objects in one process do not collide. Values are read from the application through
:class:`bridge.port.StatusPort` when scraped (dispatcher and pipeline counters); the store
counts come from a snapshot (:meth:`bridge.port.StatusPort.store_counts`) taken at most
every STORE_SNAPSHOT_MAX_AGE seconds in a worker thread (counting a large delivery history
takes seconds: never on the event loop); the send latency histogram is fed by the port's
``send_listeners``; the channel adds its own families (:meth:`Channel.metrics`).

Metrics:

- ``bridge_mails_total{outcome}`` mails processed since start, by outcome
- ``bridge_notices_total`` notices ever made (store)
- ``bridge_deliveries{channel,state}`` deliveries in the store by channel and state
- ``bridge_queue_depth`` deliveries waiting or being sent
- ``bridge_send_latency_seconds`` histogram of successful sends (channel call to answer)
- ``bridge_sends_total{result}`` dispatcher results since start (sent, retried, failed, paused, stale)
- ``bridge_channel_errors_total{code,source}`` channel errors by code (source: send; the
  Cloud API adds webhook)
- ``bridge_channel_paused`` 1 while the channel is paused
- ``bridge_send_rate`` the dispatcher's current allowed rate, messages per second
- ``bridge_sends_retrying`` deliveries waiting for a retry now
- ``bridge_sends_throttled_total`` rate-limit answers (130429, 131056, 80007, HTTP 429)
  since start
- ``bridge_sending_state`` 0 ok, 1 degraded, 2 paused (bridge.sendhealth);
  ``bridge_sending_urgent`` 1 while /healthz answers 503
- ``bridge_inbound_total{effect}`` inbound messages since start, by effect
- and the channel's own; the Cloud API's: ``bridge_webhook_requests_total{result}``
  webhook POSTs by result (ok, forbidden, bad, error), ``bridge_unique_recipients``
  template recipients in the last 24 h (the cap)
- ``bridge_subscribers`` subscribers
- ``bridge_unmatched_optouts_total`` wishes to stop from an id that matched no subscriber
  (store; the WARNING lines of bridge.inbound say when)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric as Family

from bridge.channels.base import Metric, SendResult
from bridge.port import StatusPort
from bridge.sendhealth import STATE_VALUE
from bridge.store import Delivery, StoreCounts

log = logging.getLogger("bridge.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STORE_SNAPSHOT_MAX_AGE = 10.0  # seconds


class Metrics:
    def __init__(self, source: StatusPort):
        self.source = source
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("bridge_send_latency_seconds",
                                 "Time from handing a message to the channel to its answer"
                                 " (successful sends)", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.snapshot: StoreCounts | None = None  # store counts, see refresh()
        self._snapshot_at = 0.0
        self.registry.register(_Collector(self))
        source.send_listeners.append(self._on_sent)

    def _on_sent(self, delivery: Delivery, result: SendResult, latency: float) -> None:
        self.latency.observe(latency)

    async def refresh(self) -> None:
        """Take a new store snapshot in a worker thread when the last one is too old."""
        if time.monotonic() - self._snapshot_at < STORE_SNAPSHOT_MAX_AGE:
            return
        try:
            self.snapshot = await asyncio.to_thread(self.source.store_counts)
        except Exception as e:  # noqa: BLE001 - a scrape must not crash on a busy store
            log.warning("metrics: store not readable: %s", e)
            self.snapshot = None
        self._snapshot_at = time.monotonic()

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self) -> list[Family]:  # values are read at scrape time; no fixed description
        return []

    def collect(self) -> Iterator[Family]:
        source = self.m.source
        c = CounterMetricFamily("bridge_mails", "Mails processed since start, by outcome",
                                labels=["outcome"])
        for outcome, n in sorted(source.mail_outcomes().items()):
            c.add_metric([outcome], n)
        yield c

        snap = self.m.snapshot
        if snap is not None:
            yield CounterMetricFamily("bridge_notices", "Notices made (store)", value=snap.notices)
        g = GaugeMetricFamily("bridge_deliveries", "Deliveries in the store by channel and state",
                              labels=["channel", "state"])
        for (channel, state), n in sorted(snap.deliveries.items() if snap else ()):
            g.add_metric([channel, state], n)
        yield g
        if snap is not None:
            yield GaugeMetricFamily("bridge_queue_depth", "Deliveries waiting or being sent",
                                    value=snap.queue_depth)
            yield GaugeMetricFamily("bridge_subscribers", "Subscribers", value=snap.subscribers)
            yield CounterMetricFamily("bridge_unmatched_optouts", "Wishes to stop from an id"
                                      " that matched no subscriber (the person got a reply)",
                                      value=snap.unmatched_optouts)

        sends = CounterMetricFamily("bridge_sends", "Dispatcher results since start",
                                    labels=["result"])
        errors = CounterMetricFamily("bridge_channel_errors", "Channel errors by code",
                                     labels=["code", "source"])
        k = source.send_totals()
        if k is not None:
            for name, n in (("sent", k.sent), ("retried", k.retried), ("failed", k.failed),
                            ("paused", k.paused), ("stale", k.stale)):
                sends.add_metric([name], n)
            for code, n in sorted(k.errors.items()):
                errors.add_metric([code, "send"], n)
        channel = source.channel
        own: dict[str, Family] = {"bridge_channel_errors": errors}
        extra: list[Family] = []
        for metric in channel.metrics():
            family = own.get(metric.name)
            if family is None:
                family = _family(metric)
                own[metric.name] = family
                extra.append(family)
            for labels, value in metric.samples.items():
                family.add_metric(list(labels), value)
        yield sends
        yield errors
        yield GaugeMetricFamily("bridge_channel_paused", "1 while the channel is paused",
                                value=1 if channel.paused else 0)
        sending = source.sending()
        if sending.rate is not None:
            yield GaugeMetricFamily("bridge_send_rate", "The dispatcher's current allowed rate"
                                    " (messages per second)", value=sending.rate)
        yield GaugeMetricFamily("bridge_sends_retrying", "Deliveries waiting for a retry now",
                                value=sending.retrying)
        yield CounterMetricFamily("bridge_sends_throttled", "Rate-limit answers since start"
                                  " (130429, 131056, 80007, HTTP 429)", value=sending.throttled)
        yield GaugeMetricFamily("bridge_sending_state", "Sending: 0 ok, 1 degraded, 2 paused",
                                value=STATE_VALUE[sending.state])
        yield GaugeMetricFamily("bridge_sending_urgent", "1 while /healthz answers 503",
                                value=1 if sending.urgent else 0)
        yield from extra

        inb = CounterMetricFamily("bridge_inbound", "Inbound messages since start, by effect",
                                  labels=["effect"])
        for effect, n in sorted(source.inbound_effects().items()):
            inb.add_metric([effect], n)
        yield inb


def _family(metric: Metric) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty Prometheus family for a channel's metric (samples added by the caller)."""
    if metric.kind == "counter":
        return CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    return GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))
