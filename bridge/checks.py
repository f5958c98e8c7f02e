"""`bridge check`: config (already validated on load), secrets, templates and channel settings."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bridge.config import Config, channel_module
from bridge.core.models import OutageReport
from bridge.core.render import Renderer
from bridge.port import SampleNotice
from bridge.switchboard import NoticeStrings


def sample_reports() -> list[OutageReport]:
    """One realistic report for every (kind, status), to render each template against."""
    start = datetime(2026, 11, 28, 8, 42, tzinfo=timezone.utc)
    out = []
    for kind, statuses in (("storing", ("nieuw", "update", "opgelost", "geannuleerd")),
                           ("onderhoud", ("aangekondigd", "update", "opgelost", "geannuleerd"))):
        for i, status in enumerate(statuses):
            end_unknown = kind == "storing" and status == "update"
            out.append(OutageReport(
                ticket="INC000012345678" if kind == "storing" else "CT00012345678",
                kind=kind, status=status,  # type: ignore[arg-type]
                subject=f"Storingsmelding KPN: Internet en VoIP - Amersfoort - {status}",
                services=("internet", "voip"), places=("Amersfoort", "Leusden", "Hoogland"),
                postcodes=("3811", "3812"), start=start,
                end=None if end_unknown else start + timedelta(hours=5 + i),
                end_expected=status not in ("opgelost",), end_unknown=end_unknown,
                downtime_minutes=240 if kind == "onderhoud" else None,
                description="Door graafwerkzaamheden is een *glasvezelkabel* beschadigd.",
                sent_at=start + timedelta(minutes=3 + i)))
    # the fallback template, with as little as a report can have
    out.append(OutageReport(ticket="X1", kind="storing", status="update", subject="Storing"))
    return out


@dataclass(frozen=True)
class SecretRef:
    """One secret the config refers to: an environment variable or a file."""

    key: str  # the config key, e.g. "channel.cloud.token_env"
    env: str | None = None  # the variable's name
    file: Path | None = None  # or the file holding it


def secret_refs(cfg: Config) -> list[SecretRef]:
    """Every secret the parts in use need: the SMTP AUTH credentials and TLS key, the
    channel's token or password (of the channel in use only), the IMAP password, the
    webhook's verify token and app secret, mail back's password, and secret files (a token
    file, TLS private keys), as each settings dataclass declares them (see
    :func:`declared_secrets`)."""
    refs: list[SecretRef] = []
    if cfg.smtp.enabled:
        refs += declared_secrets("smtp", cfg.smtp)
    refs += declared_secrets(f"channel.{cfg.channel.type}", cfg.channel.settings)
    for name, settings in cfg.parts().items():
        if name == "web" and not (cfg.web and cfg.web.webhook and cfg.channel.type == "cloud"):
            continue  # no webhook (only the Cloud API has one): /healthz and /metrics need none
        refs += declared_secrets(name, settings)
    return refs


def declared_secrets(prefix: str, settings: object) -> list[SecretRef]:
    """The secrets a settings dataclass declares (bridge.config): each field named ``*_env``
    that is set (an environment variable), and each field with ``SECRET_FILE`` metadata that
    is set (a file; one that replaces an ``*_env`` field leaves that field out)."""
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return []
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    files = [f for f in dataclasses.fields(settings)
             if f.metadata.get("secret") == "file" and values[f.name]]
    replaced = {f.metadata.get("instead_of") for f in files}
    refs = [SecretRef(f"{prefix}.{name}", env=value) for name, value in values.items()
            if name.endswith("_env") and value and name not in replaced]
    return refs + [SecretRef(f"{prefix}.{f.name}", file=values[f.name]) for f in files]


def secret_problems(cfg: Config) -> list[str]:
    """An unset environment variable or an unreadable (or empty) file for each secret, as
    ``config:line: key: what``."""
    problems = []
    for ref in secret_refs(cfg):
        where = f"{cfg.path}:{_key_line(cfg.path, ref.key)}: {ref.key}"
        if ref.env is not None:
            if not os.environ.get(ref.env):
                problems.append(f"{where}: environment variable {ref.env} is not set")
        elif ref.file is not None:
            try:
                if not ref.file.read_bytes().strip():
                    problems.append(f"{where}: file {ref.file} is empty")
            except OSError as e:
                problems.append(f"{where}: cannot read {ref.file}: {e.strerror or e}")
    return problems


def _key_line(path: Path, dotted: str) -> int:
    """The line of ``dotted`` ("channel.cloud.token_env") in the TOML file, 0 when the key
    is not written there (its default applies)."""
    table, _, key = dotted.rpartition(".")
    current = ""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    for i, line in enumerate(lines, 1):
        m = re.match(r"\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$", line)
        if m:
            current = m.group(1).replace(" ", "")
        elif current == table and re.match(rf"\s*{re.escape(key)}\s*=", line):
            return i
    return 0


class ChannelChecks(NoticeStrings):
    """Implements :class:`bridge.port.CheckPort` for a channel module's ``check``: the
    notice templates and sample notices, rendered with the configured renderer."""

    def __init__(self, cfg: Config, renderer: Renderer):
        super().__init__(renderer)
        self._cfg = cfg

    @property
    def dispatch_max_age_hours(self) -> float:
        return self._cfg.dispatch.max_age_hours

    def notice_templates(self) -> frozenset[str]:
        folder = self._cfg.render.templates_dir / "notices"
        return frozenset(p.stem for p in folder.glob("*.j2")) if folder.is_dir() else frozenset()

    def sample_notices(self) -> list[SampleNotice]:
        return [SampleNotice(r, self._renderer.render_notice(r).text) for r in sample_reports()]


def check_all(cfg: Config) -> list[str]:
    """Templates and channel settings (the secrets: :func:`secret_problems`)."""
    from bridge.analysis import make_renderer

    problems: list[str] = []
    if not cfg.render.templates_dir.is_dir():
        return [f"{cfg.render.templates_dir}:0: templates folder not found"]
    renderer = make_renderer(cfg)
    problems += renderer.check(sample_reports())
    if cfg.mail_out is not None or (cfg.render.templates_dir / "mail").is_dir():
        from bridge.mailout.texts import MailTexts

        problems += MailTexts(renderer).check()  # receipts and alerts (templates/mail/)
    mod = channel_module(cfg.channel.type)
    problems += mod.check(cfg.channel.settings, ChannelChecks(cfg, renderer))
    return problems
