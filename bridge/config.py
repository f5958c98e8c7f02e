"""config.toml -> frozen dataclasses, with validation and env-var secrets.

Every error names the key and says what is wrong: ``ConfigError("smtp.port: must be an
integer from 1 to 65535, got 'abc'")``. Secrets are never in the file: a key ending in
``_env`` names the environment variable that holds the secret, and :func:`secret` reads it
when the part that needs it starts.

Channel and intake modules parse their own sub-tables with :class:`Section`, so adding a
channel touches one new module only.

Each default is written once: on the dataclass field (``SmtpConfig.port = 8025``); the
parser reads it from there (``sm.int("port", SmtpConfig.port)``).
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, TypeVar, cast

from bridge.core.automatic import DEFAULT_RULES as DEFAULT_AUTOMATIC
from bridge.core.automatic import AutomaticRules
from bridge.core.confidence import ReviewRules
from bridge.core.models import Organisation
from bridge.core.senders import SenderRules

if TYPE_CHECKING:
    from bridge.channels.base import ChannelModule
    from bridge.core.inbound import Keywords
    from bridge.core.report import ReportRules
    from bridge.intake.imap import ImapSettings
    from bridge.mailout.settings import MailOutSettings
    from bridge.web import WebSettings

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted key."""


class Section:
    """Typed, validated access to one TOML table; unknown keys are errors.

    Use the getters, then call :meth:`done` to reject keys nobody asked for (typos).
    """

    def __init__(self, data: Any, name: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: must be a table, got {type(data).__name__}")
        self.data = data
        self.name = name
        self._seen: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.name}.{k}" if self.name else k

    def _get(self, k: str, default: Any) -> Any:
        self._seen.add(k)
        return self.data.get(k, default)

    def fail(self, k: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.key(k)}: {msg}")

    def str(self, k: str, default: str | None = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None) -> str:
        v = self._get(k, default)
        if v is None and required:
            raise self.fail(k, "is required")
        if v is not None and not isinstance(v, str):
            raise self.fail(k, f"must be a string, got {v!r}")
        if choices and v not in choices:
            raise self.fail(k, f"must be one of {', '.join(choices)}, got {v!r}")
        return v  # type: ignore[return-value]

    def opt_str(self, k: str) -> str | None:
        v = self._get(k, None)
        if v is not None and not isinstance(v, str):
            raise self.fail(k, f"must be a string, got {v!r}")
        return v or None

    def int(self, k: str, default: int, *, min: int | None = None, max: int | None = None) -> int:
        v = self._get(k, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(k, f"must be an integer, got {v!r}")
        if (min is not None and v < min) or (max is not None and v > max):
            raise self.fail(k, f"must be from {min} to {max}, got {v}")
        return v

    def float(self, k: str, default: float, *, min: float | None = None,
              max: float | None = None) -> float:
        v = self._get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(k, f"must be a number, got {v!r}")
        if (min is not None and v < min) or (max is not None and v > max):
            raise self.fail(k, f"must be from {min} to {max}, got {v}")
        return float(v)

    def bool(self, k: str, default: bool) -> bool:
        v = self._get(k, default)
        if not isinstance(v, bool):
            raise self.fail(k, f"must be true or false, got {v!r}")
        return v

    def strs(self, k: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = self._get(k, list(default))
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.fail(k, f"must be a list of strings, got {v!r}")
        return tuple(v)

    def path(self, k: str, default: str | None, base: Path) -> Path | None:
        v = self.str(k, default)
        if v is None or v == "":
            return None
        p = Path(os.path.expanduser(v))
        return p if p.is_absolute() else (base / p)

    def env(self, k: str, default: str | None = None) -> str | None:
        """The *name* of an environment variable holding a secret (keys end in ``_env``)."""
        v = self.opt_str(k) if default is None else self.str(k, default)
        if v is not None and (not v or not v.replace("_", "a").isalnum()):
            raise self.fail(k, f"must name an environment variable, got {v!r}")
        return v

    def table(self, k: str) -> "Section":
        self._seen.add(k)
        return Section(self.data.get(k), self.key(k))

    def raw(self, k: str) -> Any:
        self._seen.add(k)
        return self.data.get(k)

    def done(self) -> None:
        extra = sorted(set(self.data) - self._seen)
        if extra:
            raise self.fail(extra[0], "unknown key (a typo?)")


# Secrets in settings dataclasses, as `bridge check` finds them (bridge.checks.secret_refs):
# a field whose name ends in ``_env`` names an environment variable holding a secret; a
# field declared with ``metadata=SECRET_FILE`` (or ``secret_file(instead_of=...)``) names a
# file holding one (a token, a TLS private key).
SECRET_FILE: dict[str, object] = {"secret": "file"}


def secret_file(instead_of: str) -> dict[str, object]:
    """Field metadata of a secret file that, when set, replaces the ``*_env`` field
    ``instead_of`` (e.g. ``token_file`` instead of ``token_env``)."""
    return {**SECRET_FILE, "instead_of": instead_of}


def secret(env_name: str | None, what: str) -> str:
    """Read a secret from the environment; a clear error when it is not set."""
    if not env_name:
        raise ConfigError(f"{what}: no environment variable configured")
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} is not set")
    return value


class SettingsTable(Protocol):
    """A parsed config table of a channel or an optional part: a frozen dataclass."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


@dataclass(frozen=True)
class StoreConfig:
    path: Path
    retention_days: int = 30


@dataclass(frozen=True)
class SmtpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8025
    max_size: int = 10 * 1024 * 1024
    recipients: tuple[str, ...] = ()
    check_envelope_sender: bool = True
    auth_username_env: str | None = None
    auth_password_env: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = dataclasses.field(default=None, metadata=SECRET_FILE)
    require_starttls: bool = False


@dataclass(frozen=True)
class RenderConfig:
    templates_dir: Path
    max_length: int = 700
    time_limit: float = 0.5
    # templates saved in the operator console, laid over templates_dir (None: no layer)
    edited_dir: Path | None = None


@dataclass(frozen=True)
class DispatchConfig:
    rate: float = 20.0  # messages per second, all channels together
    concurrency: int = 64
    # attempts whose send raised inside the channel (a bug, not an answer) before the
    # delivery fails; answers the channel calls passing (retry) never end a delivery
    max_attempts: int = 8
    backoff_base: float = 2.0  # seconds before the first retry; doubles each time
    backoff_max: float = 600.0
    max_age_hours: float = 12.0  # an unsent notice older than this is dropped as stale
    poll_interval: float = 1.0  # how often to look for work queued by other processes
    progress_every: float = 10.0  # seconds between progress lines of a large fan-out
    # the adaptive rate (bridge.pacing): the lowest it goes (messages/s), the factor applied
    # on a rate-limit answer, and the share of the configured rate added per clean second
    min_rate: float = 1.0
    rate_decrease: float = 0.5
    rate_increase: float = 0.1


@dataclass(frozen=True)
class HealthConfig:
    """How the sending health is judged ([health]; see bridge/sendhealth.py)."""

    window_s: float = 60.0  # seconds of send results judged; also the summary line's interval
    degraded_share: float = 0.5  # sending is degraded when at least this share is not accepted
    degraded_after_s: float = 120.0  # ... and when it stays so this long, /healthz answers 503
    min_results: int = 5  # fewer results than this in the window decide nothing


@dataclass(frozen=True)
class InboundConfig:
    support_reply_window_hours: float = 24.0
    unreachable_after: int = 3
    dedupe_days: int = 14
    # [inbound.keywords] is parsed by core.inbound into Config.keywords


@dataclass(frozen=True)
class MailConfig:
    """How mails are read ([mail]): the charsets detection chooses among when a body's
    declared charset does not fit its bytes."""

    charsets: tuple[str, ...] = ("utf-8", "windows-1252", "iso-8859-15", "utf-16")


@dataclass(frozen=True)
class ChannelConfig:
    settings: SettingsTable  # the channel module's own frozen dataclass
    type: str = "console"


@dataclass(frozen=True)
class Config:
    path: Path
    base_dir: Path
    organisation: Organisation
    store: StoreConfig
    smtp: SmtpConfig
    senders: SenderRules
    render: RenderConfig
    dispatch: DispatchConfig
    inbound: InboundConfig
    channel: ChannelConfig
    parser: ReportRules
    keywords: Keywords
    log_level: str = "INFO"
    # optional parts, None when their table is absent (see OPTIONAL_PARTS)
    imap: ImapSettings | None = None
    web: WebSettings | None = None
    mail_out: MailOutSettings | None = None
    automatic: AutomaticRules = DEFAULT_AUTOMATIC  # [automatic]
    mail: MailConfig = MailConfig()
    review: ReviewRules = ReviewRules()  # [review]: when in doubt
    health: HealthConfig = HealthConfig()  # [health]: when sending counts as degraded

    def parts(self) -> dict[str, SettingsTable]:
        """The optional parts configured, by name (in OPTIONAL_PARTS order)."""
        found: dict[str, SettingsTable | None] = {"imap": self.imap, "web": self.web,
                                                    "mail_out": self.mail_out}
        return {name: found[name] for name in OPTIONAL_PARTS if found[name] is not None}


# Optional top-level parts parsed by their own modules: name -> "module:function".
# Each function takes (Section, base_dir) and returns a frozen dataclass, kept in the
# Config field of the same name; the module's build(settings, app) makes the part.
OPTIONAL_PARTS: dict[str, str] = {
    "imap": "bridge.intake.imap:parse_config",
    "web": "bridge.web:parse_config",
    "mail_out": "bridge.mailout:parse_config",
}
# Checks of an optional part against the rest of the config, once all of it is read:
# name -> "module:function" taking (settings, Config) and raising ConfigError.
OPTIONAL_CHECKS: dict[str, str] = {
    "mail_out": "bridge.mailout:validate",
}


def _load_callable(spec: str) -> Callable:
    import importlib

    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def channel_module(kind: str) -> ChannelModule:
    """The module implementing channel ``kind`` (bridge/channels/<kind>.py or the package
    bridge/channels/<kind>/), with ``parse_config``, ``create`` and ``check``
    (:class:`bridge.channels.base.ChannelModule`)."""
    import importlib

    if not kind.isidentifier() or kind == "base":
        raise ConfigError(f"channel.type: unknown channel {kind!r}")
    try:
        return cast("ChannelModule", importlib.import_module(f"bridge.channels.{kind}"))
    except ModuleNotFoundError as e:
        if e.name == f"bridge.channels.{kind}":
            raise ConfigError(f"channel.type: unknown channel {kind!r}") from None
        raise


def parse(data: dict, path: Path) -> Config:
    from bridge.core import inbound as core_inbound
    from bridge.core import report as core_report

    d_org = Organisation()  # the organisation's defaults (a core dataclass)
    base = path.parent.resolve()
    top = Section(data, "")

    org = top.table("organisation")
    organisation = Organisation(
        name=org.str("name", d_org.name),
        support_email=org.str("support_email", d_org.support_email),
        whatsapp_number=org.str("whatsapp_number", d_org.whatsapp_number),
        timezone=org.str("timezone", d_org.timezone),
    )
    if not organisation.name.strip():
        raise org.fail("name", "must not be empty")
    if "@" not in organisation.support_email:
        raise org.fail("support_email", "must be a mail address")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(organisation.timezone)
    except Exception:
        raise org.fail("timezone", f"unknown time zone {organisation.timezone!r}") from None
    org.done()

    st = top.table("store")
    store = StoreConfig(
        path=st.path("path", "var/bridge.db", base),  # type: ignore[arg-type]
        retention_days=st.int("retention_days", StoreConfig.retention_days, min=1, max=3650),
    )
    if store.path is None:
        raise st.fail("path", "must not be empty")
    st.done()

    sm = top.table("smtp")
    smtp = SmtpConfig(
        enabled=sm.bool("enabled", SmtpConfig.enabled),
        host=sm.str("host", SmtpConfig.host),
        port=sm.int("port", SmtpConfig.port, min=0, max=65535),
        max_size=sm.int("max_size", SmtpConfig.max_size, min=1024, max=1 << 30),
        recipients=tuple(r.lower() for r in sm.strs("recipients", SmtpConfig.recipients)),
        check_envelope_sender=sm.bool("check_envelope_sender", SmtpConfig.check_envelope_sender),
        auth_username_env=sm.env("auth_username_env"),
        auth_password_env=sm.env("auth_password_env"),
        tls_cert=sm.path("tls_cert", None, base),
        tls_key=sm.path("tls_key", None, base),
        require_starttls=sm.bool("require_starttls", SmtpConfig.require_starttls),
    )
    if bool(smtp.auth_username_env) != bool(smtp.auth_password_env):
        raise sm.fail("auth_password_env", "set both auth_username_env and auth_password_env, or neither")
    if bool(smtp.tls_cert) != bool(smtp.tls_key):
        raise sm.fail("tls_key", "set both tls_cert and tls_key, or neither")
    if smtp.require_starttls and not smtp.tls_cert:
        raise sm.fail("require_starttls", "needs tls_cert and tls_key")
    sm.done()

    se = top.table("senders")
    authserv = se.raw("authserv_id")
    if authserv is None:
        authserv = []
    if isinstance(authserv, str):
        authserv = [authserv]
    if (not isinstance(authserv, list)
            or not all(isinstance(x, str) and x.strip() and not any(c in x for c in " ;()\"")
                       for x in authserv)):
        raise se.fail("authserv_id", "must be the authserv-id your mail server writes in"
                                     " Authentication-Results (a host name) or a list of"
                                     f" them, got {authserv!r}")
    senders = SenderRules(
        kpn=tuple(x.lower() for x in se.strs("kpn", SenderRules.kpn)),
        forwarders=tuple(x.lower() for x in se.strs("forwarders")),
        source=se.str("source", SenderRules.source),
        require_dmarc_pass=se.bool("require_dmarc_pass", SenderRules.require_dmarc_pass),
        authserv_id=tuple(x.strip().lower() for x in authserv),
    )
    if senders.require_dmarc_pass and not senders.authserv_id:
        raise se.fail("authserv_id", "must be set when require_dmarc_pass = true: the authserv-id"
                                     " your mail server writes in Authentication-Results")
    for k, entries in (("kpn", senders.kpn), ("forwarders", senders.forwarders)):
        for e in entries:
            if not e.strip("@") or " " in e:
                raise se.fail(k, f"not an address or domain: {e!r}")
    if not senders.kpn:
        raise se.fail("kpn", "must list at least one KPN address or domain")
    se.done()

    re_ = top.table("render")
    render = RenderConfig(
        templates_dir=re_.path("templates_dir", "templates", base),  # type: ignore[arg-type]
        max_length=re_.int("max_length", RenderConfig.max_length, min=80, max=4096),
        time_limit=re_.float("time_limit", RenderConfig.time_limit, min=0.01, max=10),
        edited_dir=re_.path("edited_dir", "var/templates", base),
    )
    if render.templates_dir is None:
        raise re_.fail("templates_dir", "must not be empty")
    re_.done()

    di = top.table("dispatch")
    dispatch = DispatchConfig(
        rate=di.float("rate", DispatchConfig.rate, min=0.01, max=10000),
        concurrency=di.int("concurrency", DispatchConfig.concurrency, min=1, max=10000),
        max_attempts=di.int("max_attempts", DispatchConfig.max_attempts, min=1, max=100),
        backoff_base=di.float("backoff_base", DispatchConfig.backoff_base, min=0.0, max=3600),
        backoff_max=di.float("backoff_max", DispatchConfig.backoff_max, min=0.0, max=86400),
        max_age_hours=di.float("max_age_hours", DispatchConfig.max_age_hours, min=0.01,
                               max=24 * 30),
        poll_interval=di.float("poll_interval", DispatchConfig.poll_interval, min=0.01, max=60),
        progress_every=di.float("progress_every", DispatchConfig.progress_every, min=0.1,
                                max=3600),
        min_rate=di.float("min_rate", DispatchConfig.min_rate, min=0.01, max=10000),
        rate_decrease=di.float("rate_decrease", DispatchConfig.rate_decrease, min=0.05,
                               max=0.95),
        rate_increase=di.float("rate_increase", DispatchConfig.rate_increase, min=0.01,
                               max=1.0),
    )
    di.done()

    he = top.table("health")
    health = HealthConfig(
        window_s=he.float("window_s", HealthConfig.window_s, min=1, max=3600),
        degraded_share=he.float("degraded_share", HealthConfig.degraded_share, min=0.01, max=1),
        degraded_after_s=he.float("degraded_after_s", HealthConfig.degraded_after_s, min=0,
                                  max=86400),
        min_results=he.int("min_results", HealthConfig.min_results, min=1, max=100000),
    )
    he.done()

    ib = top.table("inbound")
    kw_raw = ib.raw("keywords") or {}
    inbound = InboundConfig(
        support_reply_window_hours=ib.float("support_reply_window_hours",
                                            InboundConfig.support_reply_window_hours,
                                            min=0, max=24 * 365),
        unreachable_after=ib.int("unreachable_after", InboundConfig.unreachable_after,
                                 min=1, max=1000),
        dedupe_days=ib.int("dedupe_days", InboundConfig.dedupe_days, min=1, max=365),
    )
    if not isinstance(kw_raw, dict):
        raise ib.fail("keywords", "must be a table")
    ib.done()
    try:
        keywords = core_inbound.keywords_from_config(dict(kw_raw))
    except ValueError as e:
        raise ConfigError(str(e)) from None

    parser_raw = top.raw("parser") or {}
    if isinstance(parser_raw, dict) and "timezone" not in parser_raw:
        # Times written without a zone in mails are in the organisation's zone unless
        # [parser] says otherwise.
        parser_raw = {**parser_raw, "timezone": organisation.timezone}
    try:
        parser = core_report.rules_from_config(parser_raw)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    from bridge.core import automatic as core_automatic

    try:
        automatic = core_automatic.rules_from_config(top.raw("automatic"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ma = top.table("mail")
    mail = MailConfig(charsets=ma.strs("charsets", MailConfig.charsets))
    for cs in mail.charsets:
        try:
            codecs.lookup(cs)
        except LookupError:
            raise ma.fail("charsets", f"unknown charset {cs!r}") from None
    if not mail.charsets:
        raise ma.fail("charsets", "must list at least one charset")
    ma.done()

    ch = top.table("channel")
    ctype = ch.str("type", ChannelConfig.type)
    mod = channel_module(ctype)
    settings = mod.parse_config(ch.table(ctype), base)
    for other in list(ch.data):
        if other not in ("type", ctype) and isinstance(ch.data[other], dict):
            # Settings of channels not in use are kept (to switch easily) but still checked.
            try:
                other_mod = channel_module(other)
            except ConfigError:
                raise ch.fail(other, f"unknown channel {other!r}") from None
            other_mod.parse_config(ch.table(other), base)
    ch.done()
    channel = ChannelConfig(type=ctype, settings=settings)

    parts: dict[str, SettingsTable] = {}
    for name, spec in OPTIONAL_PARTS.items():
        if name in data:
            parts[name] = _load_callable(spec)(top.table(name), base)

    rv = top.table("review")
    review = ReviewRules(
        max_mail_age_hours=rv.float("max_mail_age_hours", ReviewRules.max_mail_age_hours,
                                    min=0.1, max=24 * 365),
        timezone=organisation.timezone,
        approval_mode=rv.bool("approval_mode", ReviewRules.approval_mode),
    )
    rv.done()

    lg = top.table("logging")
    level = lg.str("level", Config.log_level, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    lg.done()
    top.done()

    cfg = Config(
        path=path,
        base_dir=base,
        organisation=organisation,
        store=store,
        smtp=smtp,
        senders=senders,
        render=render,
        dispatch=dispatch,
        inbound=inbound,
        channel=channel,
        parser=parser,
        keywords=keywords,
        log_level=level,
        imap=parts.get("imap"),
        web=parts.get("web"),
        mail_out=parts.get("mail_out"),
        automatic=automatic,
        mail=mail,
        review=review,
        health=health,
    )
    for name, spec in OPTIONAL_CHECKS.items():
        if name in parts:
            _load_callable(spec)(parts[name], cfg)
    return cfg


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse(data, p)
