"""``[mail_out]``: the relay, who the mail is from, who gets alerts, and the limits.

Every default is written once, in :class:`MailOutSettings`. Without the table mail back is
off. See docs/mailout.md for an example and docs/configuration.md for every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.config import ConfigError, Section

if TYPE_CHECKING:
    from bridge.config import Config

TLS_MODES = ("none", "starttls", "implicit")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "implicit": 465}


@dataclass(frozen=True)
class MailOutSettings:
    """The parsed ``[mail_out]`` table (times in the units their names say)."""

    host: str
    from_addr: str  # the key is ``from``
    port: int = 0  # 0: the usual port of ``tls`` (25, 587 or 465)
    tls: str = "starttls"  # none | starttls | implicit (RFC 8314 "implicit TLS", port 465)
    tls_ca_file: Path | None = None  # extra CA to trust (a relay with a private certificate)
    username: str | None = None
    password_env: str | None = None
    from_name: str = ""  # "": the organisation's name
    null_sender: bool = False  # MAIL FROM:<> (RFC 3834 section 3.3); many AUTH relays refuse it
    operators: tuple[str, ...] = ()  # alert addresses; none: no alerts
    receipts: bool = True  # receipts to listed forwarders
    receipts_copy_to: str | None = None  # gets a receipt for every mail, whoever sent it
    receipts_per_hour: int = 20  # per recipient; more in an hour are not sent (logged)
    review_wait_minutes: float = 30.0  # alert when a review item waits longer than this
    fanout_failure_share: float = 0.1  # alert when more than this share of a fan-out fails
    alert_window_minutes: float = 30.0  # at most two mails per condition in this window
    degraded_alert_minutes: float = 10.0  # alert when sending stays degraded this long
    console_url: str = ""  # link in review receipts and alerts; "{review}" = the item's id
    queue_lifetime_hours: float = 120.0  # a relay down longer than this: the mail is dropped
    timeout: float = 30.0  # seconds for each step of the SMTP conversation
    stop_wait: float = 10.0  # seconds to send what is queued when the daemon stops

    @property
    def relay_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.tls]

    def describe_relay(self) -> str:
        """``relay.example.nl:587 (starttls, AUTH as bridge)`` for log and CLI lines."""
        auth = f", AUTH as {self.username}" if self.username else ""
        return f"{self.host}:{self.relay_port} ({self.tls}{auth})"


_D = MailOutSettings  # the defaults, by class attribute


def _address(sec: Section, k: str, value: str) -> str:
    value = value.strip()
    local, _, domain = value.rpartition("@")
    if not local or "." not in domain or any(c in value for c in " <>,;\"\r\n"):
        raise sec.fail(k, f"must be a mail address (name@domain), got {value!r}")
    return value.lower()


def parse_config(sec: Section, base: Path) -> MailOutSettings:
    """Read and check ``[mail_out]``; raises :class:`ConfigError` naming the key."""
    tls = sec.str("tls", _D.tls, choices=TLS_MODES)
    host = sec.str("host", required=True).strip()
    if not host:
        raise sec.fail("host", "must not be empty")
    from_addr = _address(sec, "from", sec.str("from", required=True))
    copy_to = sec.opt_str("receipts_copy_to")
    s = MailOutSettings(
        host=host,
        from_addr=from_addr,
        port=sec.int("port", _D.port, min=0, max=65535),
        tls=tls,
        tls_ca_file=sec.path("tls_ca_file", None, base),
        username=sec.opt_str("username"),
        password_env=sec.env("password_env"),
        from_name=sec.str("from_name", _D.from_name),
        null_sender=sec.bool("null_sender", _D.null_sender),
        operators=tuple(_address(sec, "operators", a) for a in sec.strs("operators")),
        receipts=sec.bool("receipts", _D.receipts),
        receipts_copy_to=_address(sec, "receipts_copy_to", copy_to) if copy_to else None,
        receipts_per_hour=sec.int("receipts_per_hour", _D.receipts_per_hour, min=1, max=10000),
        review_wait_minutes=sec.float("review_wait_minutes", _D.review_wait_minutes,
                                      min=0.01, max=7 * 24 * 60),
        fanout_failure_share=sec.float("fanout_failure_share", _D.fanout_failure_share,
                                       min=0.0, max=1.0),
        alert_window_minutes=sec.float("alert_window_minutes", _D.alert_window_minutes,
                                       min=0.01, max=24 * 60),
        degraded_alert_minutes=sec.float("degraded_alert_minutes", _D.degraded_alert_minutes,
                                         min=0.0, max=7 * 24 * 60),
        console_url=sec.str("console_url", _D.console_url).strip(),
        queue_lifetime_hours=sec.float("queue_lifetime_hours", _D.queue_lifetime_hours,
                                       min=0.01, max=24 * 30),
        timeout=sec.float("timeout", _D.timeout, min=1.0, max=600.0),
        stop_wait=sec.float("stop_wait", _D.stop_wait, min=0.0, max=120.0),
    )
    if bool(s.username) != bool(s.password_env):
        raise sec.fail("password_env", "set both username and password_env, or neither")
    if any(c in s.from_name for c in "\r\n"):
        raise sec.fail("from_name", "must be one line")
    if s.console_url and not s.console_url.startswith(("http://", "https://")):
        raise sec.fail("console_url", f"must start with http:// or https://, got {s.console_url!r}")
    sec.done()
    return s


def validate(s: MailOutSettings, cfg: Config) -> None:
    """Checks against the rest of the config (``cfg``: :class:`bridge.config.Config`):
    our From, the operators and the copy address are not an intake address (no mail to
    ourselves: [smtp] recipients, the [imap] user when it is an address). Raises
    :class:`ConfigError`."""
    intake = set(cfg.smtp.recipients) if cfg.smtp.enabled else set()
    imap = cfg.imap
    if imap is not None and "@" in imap.user:
        intake.add(imap.user.lower())
    copy = (s.receipts_copy_to,) if s.receipts_copy_to else ()
    for key, addresses in (("from", (s.from_addr,)), ("operators", s.operators),
                           ("receipts_copy_to", copy)):
        for a in addresses:
            if a in intake:
                raise ConfigError(f"mail_out.{key}: {a} is an address the bridge takes mail at"
                                  " (smtp.recipients or imap.user): mail to or from it would"
                                  " come back in; use another address")

