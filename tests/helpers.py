"""Shared test helpers: configs in tmp dirs, free ports, sample mails."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAILS = ROOT / "tests" / "golden" / "mail"
TEMPLATES = ROOT / "templates"


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
