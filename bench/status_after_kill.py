"""How long `bridge status` says "running" after the daemon is killed with SIGKILL.

    .venv/bin/python bench/status_after_kill.py [--runs 3]

Starts `bridge run` (console channel, a store in a temporary folder), waits until `bridge
status --json` says it runs, kills it with SIGKILL, then runs `bridge status --json` until
it says "not running" and prints the seconds from the kill to that answer (each status
call is a new Python process, ~0.3-0.5 s of it start-up). The heartbeat alone (the way
before the run lock) would say "running" until it is 30 s old: up to 35 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def status(cfg: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "bridge", "status", "--json", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads(out)


def one(tmp: Path) -> float:
    cfg = tmp / "config.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [store]
        path = "{tmp / 'bridge.db'}"
        [smtp]
        enabled = false
        [senders]
        kpn = ["kpn.com"]
        [render]
        templates_dir = "{ROOT / 'templates'}"
        [channel]
        type = "console"
        [channel.console]
        quiet = true
        """))
    status(cfg)  # makes the store
    log = open(tmp / "daemon.log", "ab")
    p = subprocess.Popen([sys.executable, "-m", "bridge", "run", "--config", str(cfg)],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        t = time.monotonic()
        while not ((status(cfg).get("daemon") or {}).get("running")):
            if time.monotonic() - t > 30:
                raise SystemExit("the daemon did not start: " + (tmp / "daemon.log").read_text())
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = time.monotonic()
        log.close()
    while status(cfg)["daemon"]["running"]:
        time.sleep(0.05)
    return time.monotonic() - killed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    took = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            took.append(one(Path(d)))
    print("seconds from SIGKILL to `bridge status` saying not running: "
          + ", ".join(f"{t:.2f}" for t in took))


if __name__ == "__main__":
    main()
