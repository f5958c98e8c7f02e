"""The console channel: the embedded default for demos and tests.

Prints each message readably on stdout (numbers masked unless ``show_numbers``), and
when ``outbox_file`` is set appends one JSON line per message:
``{"to": "+31612345678", "text": "...", "notice_id": 1, "delivery_id": 7, "sent_at": "..."}``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from bridge.channels.base import BaseChannel, Outgoing, SendResult
from bridge.config import Section, SettingsTable
from bridge.core.phone import mask
from bridge.port import ChannelPort, CheckPort


@dataclass(frozen=True)
class ConsoleSettings:
    outbox_file: Path | None = None
    show_numbers: bool = False
    quiet: bool = False  # no printing (only the outbox file), e.g. for benchmarks
    # seconds between two messages to one recipient, to try the dispatcher's pacing as a
    # real channel paces (the Cloud API's is 6 s)
    min_interval: float = 0.0


def parse_config(sec: Section, base: Path) -> ConsoleSettings:
    s = ConsoleSettings(
        outbox_file=sec.path("outbox_file", None, base),
        show_numbers=sec.bool("show_numbers", ConsoleSettings.show_numbers),
        quiet=sec.bool("quiet", ConsoleSettings.quiet),
        min_interval=sec.float("min_interval", ConsoleSettings.min_interval, min=0, max=3600),
    )
    sec.done()
    return s


class ConsoleChannel(BaseChannel):
    """Inbound messages come via ``bridge inbound``; nothing to keep up (``run`` idles)."""

    name = "console"

    def __init__(self, settings: ConsoleSettings):
        self.settings = settings
        self.min_interval = settings.min_interval
        self.sent = 0
        self._file: TextIO | None = None
        if settings.outbox_file:
            settings.outbox_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(settings.outbox_file, "a", encoding="utf-8")

    async def send(self, msg: Outgoing) -> SendResult:
        sent_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if not self.settings.quiet:
            who = msg.to if self.settings.show_numbers else mask(msg.to)
            what = f"melding {msg.notice_id}" if msg.notice_id else "antwoord"
            out = sys.stdout
            out.write(f"── WhatsApp aan {who} ({what}, levering {msg.delivery_id}) ──\n{msg.text}\n\n")
            out.flush()
        if self._file:
            line = json.dumps({"to": msg.to, "text": msg.text, "notice_id": msg.notice_id,
                               "delivery_id": msg.delivery_id, "sent_at": sent_at},
                              ensure_ascii=False)
            self._file.write(line + "\n")
            self._file.flush()
        self.sent += 1
        return SendResult.ok(f"console-{msg.delivery_id}")

    def describe(self) -> dict[str, object]:
        return {"type": "console", "state": "ready", "sent": self.sent}

    async def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def create(settings: SettingsTable, port: ChannelPort) -> ConsoleChannel:
    if not isinstance(settings, ConsoleSettings):
        raise TypeError(f"console channel: expected ConsoleSettings, got {type(settings).__name__}")
    return ConsoleChannel(settings)


def check(settings: SettingsTable, port: CheckPort) -> list[str]:
    """Nothing to check beyond the config."""
    return []
