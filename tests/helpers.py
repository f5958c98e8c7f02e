"""Shared test helpers: configs in tmp dirs, free ports, sample mails, mails built in tests,
the command line run in-process, notices queued in a store."""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

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


# -- mails dated now ------------------------------------------------------------------------------
# The bridge sends a mail dated more than review.max_mail_age_hours before it is processed to
# review (issue 11, item 7). Tests and benches that push the fixed-date samples through the
# daemon (which always uses the real clock) move every date and time in the mail by the same
# amount, so that its Date is "now": the facts keep their order and distances.

_MONTHS_EN = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS_NL = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
              "september", "oktober", "november", "december"]
_DAYS_NL = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
_RFC2822 = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|"
                      r"Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2})(?::(\d{2}))?"
                      r"(?: ([+-]\d{4}))?")
_DUTCH_LONG = re.compile(r"(?:(?:%s) )?(\d{1,2}) (%s) (\d{4}) (\d{2}):(\d{2})"
                         % ("|".join(_DAYS_NL), "|".join(_MONTHS_NL)))
_DMY = re.compile(r"\b(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2})\b")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?([+-]\d{2}:\d{2})?")
_ICAL = re.compile(r"\b(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)\b")  # iCalendar DATE-TIME
_AMS = ZoneInfo("Europe/Amsterdam")


def mail_date(raw: bytes) -> datetime:
    """The (first) Date header of a raw mail, aware (no zone: Europe/Amsterdam)."""
    m = re.search(r"^Date: *(.+)$", raw.decode("latin-1"), re.MULTILINE)
    assert m, "the mail has no Date header"
    sent = email.utils.parsedate_to_datetime(m.group(1).strip())
    return sent if sent.tzinfo is not None else sent.replace(tzinfo=_AMS)


def dated_now(raw: bytes, now: datetime | None = None) -> bytes:
    """``raw`` with every date and time in it moved by the same amount (:func:`shift_dates`),
    so that its (first) Date header is ``now`` (default: the clock)."""
    now = now or datetime.now(timezone.utc)
    return shift_dates(raw, timedelta(minutes=round((now - mail_date(raw)).total_seconds() / 60)))


def shift_dates(raw: bytes, delta: timedelta) -> bytes:
    """``raw`` with every date and time in it (headers and body: RFC 5322 dates, "28-11-2026
    09:42", ISO 8601, "zaterdag 28 november 2026 09:45", iCalendar 20261203T000000Z) moved by
    ``delta``. For samples that
    write their dates in ASCII (the quoted-printable ones here do)."""
    text = raw.decode("latin-1")

    def rfc(m: re.Match) -> str:
        old = email.utils.parsedate_to_datetime(m.group(0))
        if old.tzinfo is None:
            new = (old.replace(tzinfo=_AMS) + delta).astimezone(_AMS)
            return new.strftime("%a, %d %b %Y %H:%M:%S")
        return email.utils.format_datetime((old + delta).astimezone(_AMS))

    def naive(d: datetime) -> datetime:
        return (d.replace(tzinfo=_AMS) + delta).astimezone(_AMS)

    def dutch(m: re.Match) -> str:
        new = naive(datetime(int(m[3]), _MONTHS_NL.index(m[2]) + 1, int(m[1]), int(m[4]),
                             int(m[5])))
        return (f"{_DAYS_NL[new.weekday()]} {new.day} {_MONTHS_NL[new.month - 1]} {new.year} "
                f"{new:%H:%M}")

    def dmy(m: re.Match) -> str:
        new = naive(datetime(int(m[3]), int(m[2]), int(m[1]), int(m[4]), int(m[5])))
        return f"{new:%d-%m-%Y %H:%M}"

    def iso(m: re.Match) -> str:
        old = datetime.fromisoformat(m.group(0))
        if old.tzinfo is None:
            return naive(old).replace(tzinfo=None).isoformat(timespec="minutes" if not m[6]
                                                              else "seconds")
        return (old + delta).astimezone(_AMS).isoformat()

    def ical(m: re.Match) -> str:
        old = datetime(*(int(m[i]) for i in range(1, 7)))
        if m[7]:  # UTC
            return f"{old + delta:%Y%m%dT%H%M%S}Z"
        return f"{naive(old):%Y%m%dT%H%M%S}"

    for pattern, fn in ((_RFC2822, rfc), (_DUTCH_LONG, dutch), (_DMY, dmy), (_ISO, iso),
                        (_ICAL, ical)):
        text = pattern.sub(fn, text)
    return text.encode("latin-1")


def sample_now(name: str, now: datetime | None = None) -> bytes:
    """:func:`sample` dated now (see :func:`dated_now`)."""
    return dated_now(sample(name), now)


def samples_now(*names: str, now: datetime | None = None) -> list[bytes]:
    """Samples moved by one amount, so that the first one's Date is ``now`` (default: the
    clock): a later mail of the same incident stays later, a forward keeps its original's
    facts."""
    first = sample(names[0])
    now = now or datetime.now(timezone.utc)
    delta = timedelta(minutes=round((now - mail_date(first)).total_seconds() / 60))
    return [shift_dates(sample(n), delta) for n in names]


def now_of(mail: Path | bytes, minutes: int = 5) -> str:
    """``--now`` for replaying a fixed-date mail as of shortly after it was sent: its Date
    plus ``minutes``, ISO 8601."""
    from bridge.core.mail import parse_mail

    raw = mail if isinstance(mail, bytes) else Path(mail).read_bytes()
    parsed = parse_mail(raw)
    sent = parsed.effective.date or parsed.outer.date or mail_date(raw)
    return (sent + timedelta(minutes=minutes)).isoformat()
