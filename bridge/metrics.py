"""Prometheus metrics of the running daemon (served by bridge.web at ``GET /metrics``).

A custom registry (never the process-global default one), so tests and several App
objects in one process do not collide. Most values are read from the application when
scraped (dispatcher and pipeline counters); the store counts come from a snapshot taken at
most every STORE_SNAPSHOT_MAX_AGE seconds in a worker thread over its own read-only
connection (counting a large delivery history takes seconds: never on the event loop); the
send latency histogram is fed by ``app.send_listeners``.

Metrics:

- ``bridge_mails_total{outcome}`` mails processed since start, by outcome
- ``bridge_notices_total`` notices ever made (store)
- ``bridge_deliveries{channel,state}`` deliveries in the store by channel and state
- ``bridge_queue_depth`` deliveries waiting or being sent
- ``bridge_send_latency_seconds`` histogram of successful sends (channel call to answer)
- ``bridge_sends_total{result}`` dispatcher results since start (sent, retried, failed, paused, stale)
- ``bridge_channel_errors_total{code,source}`` channel errors by code (source: send, webhook)
- ``bridge_channel_paused`` 1 while the channel is paused
- ``bridge_inbound_total{effect}`` inbound messages since start, by effect
- ``bridge_webhook_requests_total{result}`` webhook POSTs by result (ok, forbidden, bad, error)
- ``bridge_unique_recipients`` template recipients in the last 24 h (Cloud API cap)
- ``bridge_subscribers`` subscribers
- ``bridge_unmatched_optouts_total`` wishes to stop from an id that matched no subscriber
  (store; the WARNING lines of bridge.inbound say when)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("bridge.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STORE_SNAPSHOT_MAX_AGE = 10.0  # seconds


def store_snapshot(path: Path) -> dict:
    """The store's counts for metrics, over a read-only connection of its own (a worker
    thread may call this while the daemon writes: WAL readers do not block writers)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0] or 0  # noqa: E731
        return {
            "notices": one("SELECT count(*) FROM notices"),
            "by_channel": {(r[0], r[1]): r[2] for r in conn.execute(
                "SELECT channel, state, count(*) FROM deliveries GROUP BY channel, state")},
            "depth": one("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'sending')"),
            "subscribers": one("SELECT count(*) FROM subscribers"),
            "unmatched_optouts": _unmatched(conn),
        }
    finally:
        conn.close()


def _unmatched(conn: sqlite3.Connection) -> int:
    """Opt-outs from ids that matched no subscriber (bridge.store.subscribers)."""
    import json

    row = conn.execute("SELECT value FROM state WHERE key='inbound:unmatched_optouts'").fetchone()
    return int(json.loads(row[0]).get("count", 0)) if row else 0


class Metrics:
    def __init__(self, app: Any):
        self.app = app
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("bridge_send_latency_seconds",
                                 "Time from handing a message to the channel to its answer"
                                 " (successful sends)", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.webhook: dict[str, int] = {}
        self.snapshot: dict | None = None  # store counts, see store_snapshot
        self._snapshot_at = 0.0
        self.registry.register(_AppCollector(self))
        app.send_listeners.append(self._on_sent)

    def _on_sent(self, delivery: Any, result: Any, latency: float) -> None:
        self.latency.observe(latency)

    def webhook_result(self, result: str) -> None:
        self.webhook[result] = self.webhook.get(result, 0) + 1

    async def refresh(self) -> None:
        """Take a new store snapshot in a worker thread when the last one is too old."""
        if time.monotonic() - self._snapshot_at < STORE_SNAPSHOT_MAX_AGE:
            return
        try:
            self.snapshot = await asyncio.to_thread(store_snapshot, self.app.store.db.path)
        except Exception as e:  # noqa: BLE001 - a scrape must not crash on a busy store
            log.warning("metrics: store not readable: %s", e)
            self.snapshot = None
        self._snapshot_at = time.monotonic()

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class _AppCollector:
    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self):  # values are read at scrape time; no fixed description
        return []

    def collect(self):
        app = self.m.app
        c = CounterMetricFamily("bridge_mails", "Mails processed since start, by outcome",
                                labels=["outcome"])
        for outcome, n in sorted(getattr(app.pipeline, "outcomes", {}).items()):
            c.add_metric([outcome], n)
        yield c

        snap = self.m.snapshot or {}
        notices, by_channel = snap.get("notices"), snap.get("by_channel", {})
        depth, subscribers = snap.get("depth"), snap.get("subscribers")
        if notices is not None:
            yield CounterMetricFamily("bridge_notices", "Notices made (store)", value=notices)
        g = GaugeMetricFamily("bridge_deliveries", "Deliveries in the store by channel and state",
                              labels=["channel", "state"])
        for (channel, state), n in sorted(by_channel.items()):
            g.add_metric([channel, state], n)
        yield g
        if depth is not None:
            yield GaugeMetricFamily("bridge_queue_depth", "Deliveries waiting or being sent",
                                    value=depth)
        if subscribers is not None:
            yield GaugeMetricFamily("bridge_subscribers", "Subscribers", value=subscribers)
        if snap.get("unmatched_optouts") is not None:
            yield CounterMetricFamily("bridge_unmatched_optouts", "Wishes to stop from an id"
                                      " that matched no subscriber (the person got a reply)",
                                      value=snap["unmatched_optouts"])

        d = getattr(app, "_dispatcher", None)
        sends = CounterMetricFamily("bridge_sends", "Dispatcher results since start",
                                    labels=["result"])
        errors = CounterMetricFamily("bridge_channel_errors", "Channel errors by code",
                                     labels=["code", "source"])
        if d is not None:
            k = d.counters
            for name in ("sent", "retried", "failed", "paused", "stale"):
                sends.add_metric([name], getattr(k, name, 0))
            for code, n in sorted(k.errors.items()):
                errors.add_metric([code, "send"], n)
        channel = getattr(app, "_channel", None)
        for code, n in sorted(getattr(channel, "webhook_errors", {}).items()):
            errors.add_metric([code, "webhook"], n)
        yield sends
        yield errors

        if channel is not None:
            yield GaugeMetricFamily("bridge_channel_paused", "1 while the channel is paused",
                                    value=1 if channel.paused else 0)
            uniq = getattr(channel, "unique_recipients", None)
            if uniq is not None:
                yield GaugeMetricFamily("bridge_unique_recipients",
                                        "Template recipients in the last 24 h", value=uniq())

        inb = CounterMetricFamily("bridge_inbound", "Inbound messages since start, by effect",
                                  labels=["effect"])
        for effect, n in sorted(getattr(app.inbound, "counts", {}).items()):
            inb.add_metric([effect], n)
        yield inb

        wh = CounterMetricFamily("bridge_webhook_requests", "Webhook POSTs by result",
                                 labels=["result"])
        for result, n in sorted(self.m.webhook.items()):
            wh.add_metric([result], n)
        yield wh
