"""Shared pieces of the IMAP tests (test_imap*.py) and benchmarks (bench/imap_*.py): a bridge
config with an ``[imap]`` section for a private Dovecot (tests/dovecot.py), distinct outage
mails, the daemon as a subprocess, and the fixtures ``dc`` and ``subscribed`` (import them
into a test module to use them).
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon import Daemon, bridge, wait_for  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from helpers import dated_now  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "imap"
PW_ENV = "BRIDGE_TEST_IMAP_PASSWORD"
SUBSCRIBER = "+31612345678"


def storing(n: int, *, sender: str | None = None) -> bytes:
    """Sample 01 as a distinct mail: its own Message-ID and ticket (INC0000100nnnnn), dated
    now (the daemon sends a mail older than review.max_mail_age_hours to review)."""
    raw = dated_now((DATA / "01-storing-nieuw.eml").read_bytes())
    raw = raw.replace(b"<inc12345678.1@wholesale.kpn.example>",
                      f"<imap-test-{n}.{time.time_ns()}@wholesale.kpn.example>".encode())
    raw = raw.replace(b"INC000012345678", f"INC{100000000 + n:012d}".encode())
    if sender:
        raw = raw.replace(b"storingsmeldingen@wholesale.kpn.example", sender.encode())
    return raw


def imap_config(tmp: Path, dc: Dovecot, imap_extra: str = "", **imap) -> Path:
    keys = {"host": "127.0.0.1", "port": dc.port, "tls": "none", "user": dc.user,
            "password_env": PW_ENV, "timeout": 3, "backoff_max": 2, "login_backoff": 60,
            "idle_renew": 60, "poll_interval": 0.2}
    keys.update(imap)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    text = textwrap.dedent(f"""\
        [store]
        path = "{tmp / 'bridge.db'}"

        [smtp]
        enabled = false

        [senders]
        kpn = ["kpn.com", "kpn.example"]

        [render]
        templates_dir = "{ROOT / 'templates'}"

        [dispatch]
        rate = 1000
        poll_interval = 0.05
        backoff_base = 0.05
        backoff_max = 0.5

        [channel]
        type = "console"

        [channel.console]
        quiet = true
        outbox_file = "{tmp / 'outbox.jsonl'}"

        [imap]
        """) + lines + "\n" + textwrap.dedent(imap_extra)
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def outbox(tmp: Path) -> list[dict]:
    p = tmp / "outbox.jsonl"
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def status(cfg: Path) -> dict:
    return json.loads(bridge(cfg, "status", "--json").stdout)


class Bridge(Daemon):
    def __init__(self, cfg: Path, dc: Dovecot, faults: str | None = None):
        env = {PW_ENV: dc.password}
        if faults:
            env["BRIDGE_FAULTS"] = faults
        super().__init__(cfg, env=env)
        self._log_start = 0

    def start(self, wait: bool = True) -> "Bridge":
        # The log file is shared by the daemons one test starts one after another: remember
        # where this one's lines begin, so its waits do not match an earlier daemon's lines.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start(wait)
        return self

    def own_log(self) -> str:
        """The lines this process wrote (not those of an earlier daemon in the same file)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def wait_connected(self, n: int = 1, timeout: float = 20) -> None:
        """Wait for this process's n-th 'connected' line (then a moment for IDLE to be under
        way)."""
        wait_for(lambda: self.own_log().count("imap: connected to") >= n or not self.alive(),
                 timeout=timeout, what=f"imap connection #{n}")
        assert self.alive(), self.log()
        time.sleep(0.3)

    def wait_dead(self, timeout: float = 20) -> int:
        assert self.proc
        return self.proc.wait(timeout)


@pytest.fixture
def dc(tmp_path):
    d = Dovecot(tmp_path / "dovecot").start()
    yield d
    d.cleanup()


@pytest.fixture
def subscribed():
    def add(cfg: Path) -> None:
        bridge(cfg, "subscribers", "add", SUBSCRIBER)
    return add


def run_bridge(tmp_path, dc, subscribed, faults=None, **imap) -> tuple[Path, Bridge]:
    cfg = imap_config(tmp_path, dc, **imap)
    subscribed(cfg)
    return cfg, Bridge(cfg, dc, faults).start(wait=False)


