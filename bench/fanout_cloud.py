"""Fan-out through the Cloud API channel against the fake Graph API, and a sequential sender.

    .venv/bin/python bench/fanout_cloud.py [--n 100000] [--rate 1000] [--latency 0.05] [--seq-n 200]

1. The real dispatcher, store and CloudChannel (one shared aiohttp client session) send one notice to N subscribers (outside their
   24-hour window, so each goes as a template; its parameter is rendered in the sandbox
   once for the notice) at ``dispatch.rate`` with the channel's ``max_rate`` raised to the
   same value. Prints the achieved rate, CPU seconds per 1,000 messages (this
   process only) and peak RSS.
2. On the same fake API, a sequential sender the way Apprise's WhatsApp plugin sends: one
   request after the other (synchronous HTTP), sleeping 0.2 s between them, for ``--seq-n``
   messages. Prints its rate and the ratio of the two.

The fake API (tests/fake_graph.py) runs in its own process, so its CPU is not counted;
every request it answers still passes its shape checks. Like ``bridge run``, the bench
tunes Python's garbage collector once its parts are built (bridge/runtime.py);
``--no-gc-tuning`` leaves it as it is, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402

from fanout import populate  # noqa: E402  (bench/fanout.py: subscribers + one notice)

from bridge.channels.cloud import CloudChannel, CloudSettings, TemplateMap  # noqa: E402
from bridge.config import DispatchConfig  # noqa: E402
from bridge.core.models import Organisation  # noqa: E402
from bridge.core.render import Renderer  # noqa: E402
from bridge.outbox import Dispatcher  # noqa: E402
from bridge.runtime import tune_gc  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.switchboard import Switchboard  # noqa: E402

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "bench-token"
TOKEN_ENV = "BRIDGE_BENCH_CLOUD_TOKEN"


def start_fake(latency: float) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_graph.py"), "--port", "0",
                          "--latency", str(latency), "--token", TOKEN, "--quiet"],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()  # "listening on <port>"
    if not line.startswith("listening on"):
        p.kill()
        raise SystemExit(f"fake Graph API did not start: {line!r}")
    return p, f"http://127.0.0.1:{int(line.split()[-1])}"


async def channel_run(n: int, rate: float, concurrency: int, base_url: str, db: Path,
                      gc_tuning: bool = True) -> dict:
    store = Store.open(db)
    t0 = time.perf_counter()
    populate(store, n)
    setup = time.perf_counter() - t0
    os.environ[TOKEN_ENV] = TOKEN
    settings = CloudSettings(
        phone_number_id=PHONE_NUMBER_ID, base_url=base_url, token_env=TOKEN_ENV,
        max_rate=rate, min_interval=6.0, unique_cap=0, max_connections=concurrency,
        templates={"fallback": TemplateMap("fallback", "storing_melding", "nl",
                                           ("tekst|kort(1000)",))})
    renderer = Renderer(ROOT / "templates", Organisation())

    def no_inbound(msg):  # pragma: no cover - nothing comes in during the bench
        return None

    dispatch = DispatchConfig(rate=rate, concurrency=concurrency, poll_interval=0.2,
                              progress_every=1e9)
    port = Switchboard(store, renderer, max_age_hours=dispatch.max_age_hours,
                       handle_inbound=no_inbound)
    channel = CloudChannel(settings, port)
    d = Dispatcher(dispatch, store, channel)
    d.acquire()
    if gc_tuning:
        tune_gc()  # as `bridge run` does once its parts are built
    cpu0 = time.process_time()
    w0 = time.perf_counter()
    await d.drain()
    wall = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    d.release()
    await channel.close()
    counts = store.deliveries.counts()
    store.close()
    assert counts == {"sent": n}, counts
    assert channel.sent_template == n and channel.requests == n, (channel.sent_template,
                                                                  channel.requests)
    return {"n": n, "setup_s": setup, "wall_s": wall, "rate": n / wall, "cpu_s": cpu}


def sequential_run(n: int, base_url: str, throttle: float = 0.2) -> dict:
    """One synchronous request after the other, ``throttle`` s of sleep in between."""
    url = f"{base_url}/v23.0/{PHONE_NUMBER_ID}/messages"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    ok = 0
    with httpx.Client(timeout=10) as client:
        t0 = time.perf_counter()
        for i in range(n):
            if i:
                time.sleep(throttle)
            r = client.post(url, headers=headers, json={
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": f"+3161{i:07d}", "type": "template",
                "template": {"name": "storing_melding", "language": {"code": "nl"},
                             "components": [{"type": "body", "parameters": [
                                 {"type": "text", "text": "Storing internet in Amersfoort."}]}]}})
            ok += r.status_code == 200
        wall = time.perf_counter() - t0
    assert ok == n, (ok, n)
    return {"n": n, "wall_s": wall, "rate": n / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--seq-n", type=int, default=200)
    p.add_argument("--no-gc-tuning", action="store_true",
                   help="leave Python's garbage collector as it is (the daemon tunes it)")
    args = p.parse_args()
    fake, base_url = start_fake(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            r = asyncio.run(channel_run(args.n, args.rate, args.concurrency, base_url,
                                        Path(tmp) / "bench.db", not args.no_gc_tuning))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        s = sequential_run(args.seq_n, base_url)
    finally:
        fake.terminate()
        fake.wait(10)
    per_k = r["cpu_s"] / r["n"] * 1000
    print(f"cloud channel fan-out: {r['n']} template messages, fake API latency "
          f"{args.latency * 1000:.0f} ms, configured {args.rate:.0f}/s, concurrency "
          f"{args.concurrency}{', gc as it is' if args.no_gc_tuning else ''}")
    print(f"  set-up (subscribers + fan-out insert): {r['setup_s']:.2f} s")
    print(f"  achieved: {r['rate']:.1f}/s = {r['rate'] / args.rate * 100:.1f} % of configured "
          f"({r['wall_s']:.1f} s)")
    print(f"  CPU: {r['cpu_s']:.2f} s = {per_k:.3f} CPU s per 1,000 messages "
          f"= {r['cpu_s'] / r['wall_s'] * 100:.1f} % of one core")
    print(f"  peak RSS: {rss_mb:.1f} MB")
    print(f"sequential sender (Apprise-style, 0.2 s throttle): {s['n']} messages in "
          f"{s['wall_s']:.1f} s = {s['rate']:.2f}/s")
    print(f"ratio: {r['rate'] / s['rate']:.0f}x")


if __name__ == "__main__":
    main()
