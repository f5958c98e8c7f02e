"""Fan-out benchmark: N subscribers through the real dispatcher and store to a fake channel.

    .venv/bin/python bench/fanout.py [--n 100000] [--rate 1000] [--latency 0.05]

Prints the achieved rate as a share of the configured one, CPU seconds per 1,000 messages
and peak RSS. Targets: >= 97 % of 1,000/s, under 25 % of one core (0.25 CPU s per 1,000
messages at 1,000/s), RSS under 100 MB, and RSS that does not grow with N (run with
--n 10000 and --n 100000 and compare; the dispatcher streams the outbox in batches).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.channels.base import BaseChannel, Outgoing, SendResult  # noqa: E402
from bridge.config import DispatchConfig  # noqa: E402
from bridge.outbox import Dispatcher  # noqa: E402
from bridge.store import Store  # noqa: E402


class FakeChannel(BaseChannel):
    """A channel whose send takes ``latency`` seconds and always succeeds."""

    name = "fake"
    max_rate = None
    min_interval = 0.0
    jitter = 0.0
    wants_window = False
    paused = None

    def __init__(self, latency: float):
        self.latency = latency
        self.sent = 0

    async def send(self, msg: Outgoing) -> SendResult:
        await asyncio.sleep(self.latency)
        self.sent += 1
        return SendResult.ok(f"fake-{msg.delivery_id}")

    async def run(self) -> None:
        await asyncio.Event().wait()

    def describe(self) -> dict:
        return {"sent": self.sent}


def populate(store: Store, n: int) -> int:
    """n subscribers and one notice fanned out to all of them; returns the notice id."""
    with store.tx():
        store.db.conn.executemany(
            "INSERT INTO subscribers (number, channel, consent_at, consent_ref) VALUES (?,?,?,?)",
            ((f"+3161{i:07d}", "fake", time.time(), f"bench-{i}") for i in range(n)))
        notice = store.incidents.add_notice(incident_id=None, raw_mail_id=None, kind="storing",
                                            status="nieuw", template="bench", text="Storing " * 20,
                                            report=None, fallback=False)
        store.deliveries.fan_out(notice, None)
    return notice


async def run(n: int, rate: float, latency: float, concurrency: int, db: Path) -> dict:
    store = Store.open(db)
    t0 = time.perf_counter()
    populate(store, n)
    setup = time.perf_counter() - t0
    channel = FakeChannel(latency)
    d = Dispatcher(DispatchConfig(rate=rate, concurrency=concurrency, poll_interval=0.2,
                                  progress_every=1e9), store, channel)
    d.acquire()
    cpu0 = time.process_time()
    w0 = time.perf_counter()
    await d.drain()
    wall = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    d.release()
    assert channel.sent == n, (channel.sent, n)
    assert store.deliveries.counts() == {"sent": n}
    store.close()
    return {"n": n, "setup_s": setup, "wall_s": wall, "rate": n / wall, "cpu_s": cpu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(run(args.n, args.rate, args.latency, args.concurrency,
                            Path(tmp) / "bench.db"))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_k = r["cpu_s"] / r["n"] * 1000
    print(f"fan-out: {r['n']} deliveries, latency {args.latency * 1000:.0f} ms, "
          f"configured {args.rate:.0f}/s")
    print(f"  set-up (subscribers + fan-out insert): {r['setup_s']:.2f} s")
    print(f"  achieved: {r['rate']:.1f}/s = {r['rate'] / args.rate * 100:.1f} % of configured "
          f"({r['wall_s']:.1f} s)")
    print(f"  CPU: {r['cpu_s']:.2f} s = {per_k:.3f} CPU s per 1,000 messages "
          f"= {r['cpu_s'] / r['wall_s'] * 100:.1f} % of one core")
    print(f"  peak RSS: {rss_mb:.1f} MB")


if __name__ == "__main__":
    main()
