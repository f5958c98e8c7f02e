"""Shared test helpers: configs in tmp dirs, free ports, sample mails."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from pathlib import Path

from bridge.channels.base import BaseChannel, Outgoing, SendResult
from bridge.config import DispatchConfig

ROOT = Path(__file__).resolve().parent.parent
MAILS = ROOT / "tests" / "golden" / "mail"
TEMPLATES = ROOT / "templates"


# A dispatch config for tests: fast retries, fast polling.
DISPATCH = DispatchConfig(rate=1000, concurrency=8, max_attempts=3, backoff_base=0.01,
                          backoff_max=0.05, poll_interval=0.02, max_age_hours=1)


class Scripted(BaseChannel):
    """A channel answering from a per-recipient script of SendResults (then OK), after a
    latency; it records each message in ``calls`` and its monotonic send time in ``times``."""

    name = "console"
    max_rate = None
    min_interval = 0.0
    jitter = 0.0
    wants_window = False

    def __init__(self, script=None, latency=0.0):
        self.script = script or {}
        self.latency = latency
        self.calls: list[Outgoing] = []
        self.times: list[float] = []
        self.paused = None

    async def send(self, msg: Outgoing) -> SendResult:
        self.calls.append(msg)
        self.times.append(time.monotonic())
        await asyncio.sleep(self.latency)
        answers = self.script.get(msg.to, [])
        return answers.pop(0) if answers else SendResult.ok(f"id-{msg.delivery_id}")

    async def run(self):
        await asyncio.Event().wait()

    def describe(self):
        return {}


async def wait_until(cond, timeout: float = 3.0) -> bool:
    """Poll ``cond()`` until it is true (True) or the timeout passes (False)."""
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(name: str) -> bytes:
    """A sample mail by file-name prefix, e.g. sample("01")."""
    for p in sorted(MAILS.glob(f"{name}*.eml")):
        return p.read_bytes()
    raise FileNotFoundError(name)


def write_config(tmp_path: Path, extra: str = "", *, smtp_port: int | None = None,
                 smtp: bool = False, outbox: bool = True, rate: float = 1000.0,
                 channel: str = "console", channel_extra: str = "") -> Path:
    """A config in tmp_path: store in tmp, console channel writing JSON lines, fast polling."""
    outbox_line = f'outbox_file = "{tmp_path / "outbox.jsonl"}"' if outbox else ""
    text = textwrap.dedent(f"""\
        [store]
        path = "{tmp_path / "bridge.db"}"

        [smtp]
        enabled = {"true" if smtp else "false"}
        port = {smtp_port or 0}

        [senders]
        kpn = ["kpn.com", "kpn.example"]
        forwarders = ["support@cbgconnect.example"]

        [render]
        templates_dir = "{TEMPLATES}"

        [dispatch]
        rate = {rate}
        poll_interval = 0.05
        backoff_base = 0.05
        backoff_max = 0.5

        [channel]
        type = "{channel}"

        [channel.console]
        quiet = true
        {outbox_line}
        """)
    if channel_extra:
        text += "\n" + textwrap.dedent(channel_extra)
    if extra:
        text += "\n" + textwrap.dedent(extra)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def read_outbox(tmp_path: Path) -> list[dict]:
    import json

    p = tmp_path / "outbox.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
