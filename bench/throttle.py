"""The dispatcher against a Graph API that throttles, and with a backlog for one subscriber.

    .venv/bin/python bench/throttle.py [--n 2000] [--rate 80] [--bucket 10] [--storm 180]
                                       [--backlog 2000] [--stall-seconds 14]
                                       [--parts throttle,storm,stall]

Issue 15's figures (the defaults; smaller numbers make a quick run):

1. throttle: the fake Graph API (tests/fake_graph.py) accepts ``--bucket`` messages/s
   (a token bucket) and answers 130429 (HTTP 429) above it; the real Dispatcher, Store and
   CloudChannel send one notice to ``--n`` subscribers at ``--rate`` (dispatch.rate and the
   channel's max_rate; Meta's default 80/s). Prints sent / failed / duplicates (messages
   the fake accepted more than once for a recipient), the seconds it took (ideal:
   n / bucket) and the adaptive rate's range. Before issue 15: 1,932 sent, 68 failed.
2. storm: no bucket, but every send is answered 130429 for ``--storm`` seconds from the
   start of a fan-out to ``--n``; prints the seconds from the storm's end until the last
   delivery went out (target < 40 s; n / rate = 25 s at best; before issue 15: 191 s).
3. stall: ``--backlog`` notices due for one subscriber on the console channel, with the
   Cloud API's min_interval (6 s) and with 0; a heartbeat task measures the event loop's
   longest stall (target < 100 ms; wall time, and this thread's CPU time between two beats)
   over ``--stall-seconds`` (6 s) or until drained (0), and the drain rate.

The fake API runs in this process (it answers 10-80 requests/s: a negligible share of the
CPU). Numbers are masked nowhere: they are made up (+3162...).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_graph import FakeGraph  # noqa: E402

from bridge.channels.cloud import CloudChannel, CloudSettings  # noqa: E402
from bridge.channels.console import ConsoleChannel, ConsoleSettings  # noqa: E402
from bridge.config import DispatchConfig  # noqa: E402
from bridge.core.models import Organisation  # noqa: E402
from bridge.core.render import Renderer  # noqa: E402
from bridge.outbox import Dispatcher  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.switchboard import Switchboard  # noqa: E402

TOKEN_ENV = "BRIDGE_BENCH_CLOUD_TOKEN"


def populate(store: Store, n: int) -> None:
    """``n`` subscribers who wrote within 24 h (free text) and one notice to all of them."""
    with store.tx():
        store.db.conn.executemany(
            "INSERT INTO subscribers (number, channel, consent_at, consent_ref, last_inbound_at)"
            " VALUES (?,?,?,?,?)",
            ((f"+3162{i:07d}", "cloud", time.time(), "bench", time.time()) for i in range(n)))
        nid = store.incidents.add_notice(incident_id=None, raw_mail_id=None, kind="storing",
                                         status="nieuw", template="bench",
                                         text="Storing in uw regio", report=None,
                                         fallback=False)
        store.deliveries.fan_out(nid, None)


async def cloud_run(db: Path, n: int, rate: float, bucket: float | None,
                    storm: float) -> dict:
    fake = FakeGraph(record=False)
    fake.bucket(bucket)
    await fake.start()
    os.environ[TOKEN_ENV] = fake.token
    store = Store.open(db)
    populate(store, n)
    settings = CloudSettings(phone_number_id=fake.phone_number_id, base_url=fake.base_url,
                             token_env=TOKEN_ENV, max_rate=rate, unique_cap=0)
    port = Switchboard(store, Renderer(ROOT / "templates", Organisation()), max_age_hours=12,
                       handle_inbound=lambda msg: None)
    channel = CloudChannel(settings, port)
    d = Dispatcher(DispatchConfig(rate=rate, progress_every=1e9), store, channel)
    d.acquire()
    rates: list[float] = []

    async def sample() -> None:
        while True:
            rates.append(d.rate)
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample())
    if storm:
        fake.storm(storm)
    storm_end = time.monotonic() + storm
    t0 = time.monotonic()
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    while store.deliveries.pending():
        await asyncio.sleep(0.1)
    wall = time.monotonic() - t0
    drained_after_storm = time.monotonic() - storm_end
    stop.set()
    await task
    sampler.cancel()
    d.release()
    await channel.close()
    counts = store.deliveries.counts()
    store.close()
    await fake.stop()
    dup = sum(c - 1 for c in fake.accepted_to.values() if c > 1)
    return {"n": n, "sent": counts.get("sent", 0), "failed": counts.get("failed", 0),
            "duplicates": dup, "recipients": len(fake.accepted_to), "seconds": wall,
            "after_storm": drained_after_storm, "throttled": fake.throttled,
            "min_rate": min(rates), "end_rate": d.rate,
            "rates": rates}


async def stall_run(db: Path, backlog: int, interval: float, rate: float,
                    seconds: float) -> dict:
    store = Store.open(db)
    to = "+31611111111"
    store.subscribers.add(to, "console", "bench")
    for i in range(backlog):
        with store.tx():
            nid = store.incidents.add_notice(incident_id=None, raw_mail_id=None,
                                             kind="storing", status="nieuw", template="t",
                                             text=f"melding {i}", report=None, fallback=False)
            store.deliveries.fan_out(nid, 100_000 + i)
    channel = ConsoleChannel(ConsoleSettings(quiet=True, min_interval=interval))
    d = Dispatcher(DispatchConfig(rate=rate, progress_every=1e9), store, channel)
    d.acquire()
    longest = longest_cpu = 0.0

    async def beat() -> None:
        nonlocal longest, longest_cpu
        last, cpu = time.monotonic(), time.thread_time()
        while True:
            await asyncio.sleep(0.01)
            t, c = time.monotonic(), time.thread_time()
            longest = max(longest, t - last - 0.01)
            longest_cpu = max(longest_cpu, c - cpu)
            last, cpu = t, c

    hb = asyncio.create_task(beat())
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(d.run(stop))
    while time.monotonic() - t0 < seconds and store.deliveries.pending():
        await asyncio.sleep(0.1)
    wall = time.monotonic() - t0
    t1 = time.monotonic()
    stop.set()
    await task
    stopped = time.monotonic() - t1
    hb.cancel()
    d.release()
    sent = channel.sent
    store.close()
    return {"backlog": backlog, "interval": interval, "sent": sent, "seconds": wall,
            "longest_stall_ms": longest * 1000, "longest_cpu_ms": longest_cpu * 1000,
            "stop_s": stopped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rate", type=float, default=80.0)
    p.add_argument("--bucket", type=float, default=10.0)
    p.add_argument("--storm", type=float, default=180.0)
    p.add_argument("--backlog", type=int, default=2000)
    p.add_argument("--stall-seconds", type=float, default=14.0)
    p.add_argument("--parts", default="throttle,storm,stall")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "throttle" in parts:
            r = asyncio.run(cloud_run(Path(tmp) / "a.db", args.n, args.rate, args.bucket, 0))
            print(f"throttle: {r['n']:,} recipients at {args.rate:g}/s, API bucket "
                  f"{args.bucket:g}/s: sent {r['sent']:,}, failed {r['failed']}, duplicates "
                  f"{r['duplicates']} ({r['recipients']:,} recipients reached), "
                  f"{r['seconds']:.1f} s (ideal {args.n / args.bucket:.0f} s); 130429 answers "
                  f"{r['throttled']:,}; rate {args.rate:g} -> min {r['min_rate']:.1f}/s, "
                  f"mean {sum(r['rates']) / len(r['rates']):.1f}/s")
        if "storm" in parts:
            r = asyncio.run(cloud_run(Path(tmp) / "b.db", args.n, args.rate, None, args.storm))
            print(f"storm: {r['n']:,} recipients at {args.rate:g}/s, 130429 for every send "
                  f"for {args.storm:g} s: sent {r['sent']:,}, failed {r['failed']}, "
                  f"duplicates {r['duplicates']}; drained {r['after_storm']:.1f} s after the "
                  f"storm ended (n / rate = {args.n / args.rate:.0f} s); rate min "
                  f"{r['min_rate']:.1f}/s, at the end {r['end_rate']:.1f}/s; 130429 answers "
                  f"{r['throttled']:,}")
        if "stall" in parts:
            for interval, seconds in ((6.0, args.stall_seconds), (0.0, 600.0)):
                r = asyncio.run(stall_run(Path(tmp) / f"c{interval:g}.db", args.backlog,
                                          interval, args.rate, seconds))
                print(f"stall: {r['backlog']:,} notices due for one subscriber, console "
                      f"min_interval {interval:g} s, rate {args.rate:g}/s: sent {r['sent']:,} "
                      f"in {r['seconds']:.1f} s ({r['sent'] / r['seconds']:.1f}/s); longest "
                      f"loop stall {r['longest_stall_ms']:.1f} ms (CPU between two beats "
                      f"{r['longest_cpu_ms']:.1f} ms); stop took "
                      f"{r['stop_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
