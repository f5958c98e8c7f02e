"""Shared test helpers: configs in tmp dirs, free ports, sample mails, mails built in tests,
the command line run in-process, notices queued in a store."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from datetime import datetime, timezone
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


def utc(*a: int) -> datetime:
    """``datetime(*a)`` in UTC."""
    return datetime(*a, tzinfo=timezone.utc)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the command line in this process (``bridge.cli.main``) with ``argv`` exactly as
    given; return (exit code, stdout, stderr) as captured by pytest's ``capsys``."""
    from bridge.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def no_ticket_mail(tmp_path: Path) -> Path:
    """Sample 01 without its ticket number and status line (a KPN mail the bridge cannot
    read with confidence: it goes to review), written to tmp_path/vague.eml."""
    data = sample("01").replace(b"INC000012345678", b"").replace(b"Status:             Nieuw\n", b"")
    f = tmp_path / "vague.eml"
    f.write_bytes(data)
    return f


# -- mails built in tests ----------------------------------------------------------------------

# A KPN report body with ticket, status and description.
KPN_BODY = (
    "Beste partner,\r\n\r\n"
    "Ticketnummer:       INC000012345678\r\n"
    "Status:             Nieuw\r\n"
    "Omschrijving:       Kabelbreuk.\r\n\r\n"
    "Met vriendelijke groet,\r\nKPN\r\n"
)


def mail(body: str | bytes, *, subject: str = "Test", headers: str = "",
         ctype: str = 'text/plain; charset="utf-8"', from_: str = "KPN <kpn@example.nl>",
         date: str = "Sat, 28 Nov 2026 09:45:00 +0100") -> bytes:
    """A raw mail to noc@example.nl with ``body`` (str: UTF-8; bytes: as is); ``headers``
    (CRLF-terminated lines) go after Content-Type."""
    head = (f"From: {from_}\r\nTo: noc@example.nl\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: <m1@example.nl>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\n{headers}\r\n")
    data = body.encode("utf-8") if isinstance(body, str) else body
    return head.encode("ascii") + data


def raw_mail(body: str, *, ctype: str = 'text/plain; charset="utf-8"', subject: str = "Test",
             from_: str = "KPN <storingen@kpn.example>", headers: str = "") -> bytes:
    """A raw UTF-8 mail from KPN to noc@cbgconnect.example, sent Sat 28 Nov 2026 16:58 +0100.
    ``headers`` (CRLF-terminated lines) go first, as a receiving server prepends
    Authentication-Results (and as a second From header would stand before the first)."""
    head = (f"{headers}From: {from_}\r\nTo: noc@cbgconnect.example\r\nSubject: {subject}\r\n"
            "Date: Sat, 28 Nov 2026 16:58:00 +0100\r\nMessage-ID: <m1@example.nl>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n\r\n")
    return (head + body).encode("utf-8")


def alternative(plain: str, html: str, **kw) -> bytes:
    """A multipart/alternative ``raw_mail`` with a text/plain and a text/html part."""
    body = ("--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + plain + "\r\n"
            "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--alt--\r\n")
    return raw_mail(body, ctype='multipart/alternative; boundary="alt"', **kw)


# The authserv-id of the ISP's own receiving mail server in the Authentication-Results tests.
OUR_MX = "mx.cbgconnect.nl"


# -- the store ---------------------------------------------------------------------------------

def fan_out_notice(store, incident: int | None, text: str) -> int:
    """Add a notice of ``incident`` (None: no incident) with ``text`` and fan it out to every
    subscriber, in one transaction; return the notice id."""
    with store.tx():
        nid = store.incidents.add_notice(incident_id=incident, raw_mail_id=None, kind="storing",
                                         status="nieuw", template="t", text=text, report=None,
                                         fallback=False)
        store.deliveries.fan_out(nid, incident)
    return nid
