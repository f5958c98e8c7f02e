"""The ``[imap]`` config table -> :class:`ImapSettings` (each default written once: here)."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from bridge.config import Section
from bridge.intake.imap.commands import mailbox_problem


@dataclass(frozen=True)
class ImapSettings:
    """The IMAP intake's settings; see docs/configuration.md ``[imap]`` for each key."""

    host: str
    user: str
    password_env: str
    port: int = 993  # 143 with tls = "none" (see parse_config)
    tls: str = "imaps"  # imaps | none
    tls_ca_file: Path | None = None  # extra CA to trust (a private server's certificate)
    auth_mechanism: str = "auto"  # auto | plain | login
    folder: str = "INBOX"
    processed_folder: str = "Processed"  # "" = flag \Seen and leave the mail where it is
    rejected_folder: str = "Rejected"  # "" = flag \Seen and leave the mail where it is
    lock_folder: str = "storingsbridge-lock"  # "" = no lock (one daemon per mailbox unchecked)
    mode: str = "idle"  # idle | poll
    poll_interval: float = 30.0
    idle_renew: float = 300.0  # re-issue IDLE after this many seconds (RFC 2177: < 29 min)
    timeout: float = 30.0  # seconds of silence after which a connection counts as dead
    backoff_max: float = 60.0  # cap of the reconnect backoff (1, 2, 4, ... s)
    login_backoff: float = 300.0  # wait after a refused login
    pause_retry: float = 300.0  # while paused (over quota, bad folder, ...): look again after


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ImapSettings)
             if f.default is not dataclasses.MISSING}


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _folder(sec: Section, k: str, *, empty_ok: bool) -> str:
    v = sec.str(k, _DEFAULTS[k])
    if v == "" and empty_ok:
        return v
    problem = mailbox_problem(v)
    if problem:
        raise sec.fail(k, f"{problem}, got {v!r}")
    return v


def parse_config(sec: Section, base: Path) -> ImapSettings:
    """Validate the ``[imap]`` table. Raises :class:`bridge.config.ConfigError` naming the key."""
    d = _DEFAULTS
    tls = sec.str("tls", d["tls"])
    if isinstance(tls, str) and tls.lower() == "starttls":
        raise sec.fail("tls", "STARTTLS is not supported: aioimaplib has no STARTTLS. Use \"imaps\""
                              " (implicit TLS, usually port 993), or \"none\" to a loopback host"
                              " (e.g. through a local stunnel)")
    if tls not in ("imaps", "none"):
        raise sec.fail("tls", f"must be one of imaps, none, got {tls!r}")
    host = sec.str("host", required=True)
    if not host or any(c.isspace() for c in host):
        raise sec.fail("host", f"must be a host name or address, got {host!r}")
    if tls == "none" and not _is_loopback(host):
        raise sec.fail("tls", f"plain IMAP (\"none\") is only allowed to a loopback host"
                              f" (127.0.0.1, ::1, localhost), not {host!r}: the password and the"
                              f" mails would cross the network unencrypted; use \"imaps\"")
    user = sec.str("user", required=True)
    if not user:
        raise sec.fail("user", "must not be empty")
    if any(c in user for c in "\r\n\0"):
        raise sec.fail("user", "must not contain CR, LF or NUL")
    password_env = sec.env("password_env")
    if not password_env:
        raise sec.fail("password_env", "is required (the environment variable holding the password)")
    s = ImapSettings(
        host=host,
        port=sec.int("port", d["port"] if tls == "imaps" else 143, min=1, max=65535),
        tls=tls,
        tls_ca_file=sec.path("tls_ca_file", None, base),
        user=user,
        password_env=password_env,
        auth_mechanism=sec.str("auth_mechanism", d["auth_mechanism"],
                               choices=("auto", "plain", "login")),
        folder=_folder(sec, "folder", empty_ok=False),
        processed_folder=_folder(sec, "processed_folder", empty_ok=True),
        rejected_folder=_folder(sec, "rejected_folder", empty_ok=True),
        lock_folder=_folder(sec, "lock_folder", empty_ok=True),
        mode=sec.str("mode", d["mode"], choices=("idle", "poll")),
        poll_interval=sec.float("poll_interval", d["poll_interval"], min=0.05, max=3600),
        idle_renew=sec.float("idle_renew", d["idle_renew"], min=1, max=25 * 60),
        timeout=sec.float("timeout", d["timeout"], min=0.5, max=600),
        backoff_max=sec.float("backoff_max", d["backoff_max"], min=1, max=3600),
        login_backoff=sec.float("login_backoff", d["login_backoff"], min=1, max=86400),
        pause_retry=sec.float("pause_retry", d["pause_retry"], min=1, max=86400),
    )
    if s.tls_ca_file and s.tls != "imaps":
        raise sec.fail("tls_ca_file", "only used with tls = \"imaps\"")
    for k in ("processed_folder", "rejected_folder", "lock_folder"):
        v = getattr(s, k)
        if v and same_folder(v, s.folder):
            raise sec.fail(k, f"must differ from folder ({s.folder!r}); leave it empty to flag"
                              f" mails \\Seen instead of moving them" if k != "lock_folder" else
                              f"must differ from folder ({s.folder!r})")
    sec.done()
    return s


def same_folder(a: str, b: str) -> bool:
    """Do two names mean one folder? INBOX is case-insensitive (RFC 3501 §5.1), others not."""
    if "INBOX" in (a.upper(), b.upper()):
        return a.upper() == b.upper()
    return a == b
