"""The console channel: the embedded default for demos and tests.

Prints each message readably on stdout (numbers masked unless ``show_numbers``), and
when ``outbox_file`` is set appends one JSON line per message:
``{"to": "+31612345678", "text": "...", "notice_id": 1, "delivery_id": 7, "sent_at": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bridge.channels.base import ChannelContext, Outgoing, SendResult
from bridge.config import Section
from bridge.core.phone import mask


@dataclass(frozen=True)
class ConsoleSettings:
    outbox_file: Path | None = None
    show_numbers: bool = False
    quiet: bool = False  # no printing (only the outbox file), e.g. for benchmarks


def parse_config(sec: Section, base: Path) -> ConsoleSettings:
    s = ConsoleSettings(
        outbox_file=sec.path("outbox_file", None, base),
        show_numbers=sec.bool("show_numbers", False),
        quiet=sec.bool("quiet", False),
    )
    sec.done()
    return s


class ConsoleChannel:
    name = "console"
    max_rate = None
    min_interval = 0.0
    jitter = 0.0
    wants_window = False
    paused = None

    def __init__(self, settings: ConsoleSettings, ctx: ChannelContext):
        self.settings = settings
        self.ctx = ctx
        self.sent = 0
        self._file = None
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

    async def run(self) -> None:
        # Nothing to keep up; inbound messages come via `bridge inbound`.
        await asyncio.Event().wait()

    def describe(self) -> dict:
        return {"type": "console", "state": "ready", "sent": self.sent}

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def create(settings: ConsoleSettings, ctx: ChannelContext) -> ConsoleChannel:
    return ConsoleChannel(settings, ctx)
