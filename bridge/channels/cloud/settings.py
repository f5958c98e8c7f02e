"""``[channel.cloud]``: the Cloud API channel's settings (defaults written once, on the
dataclass fields) and their parsing. See docs/configuration.md and docs/cloud-api.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bridge.config import Section, secret_file

# WhatsApp template names: lower-case letters, digits and _ (WhatsApp Manager's rule).
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_API_VERSION = re.compile(r"^v\d+\.\d+$")


@dataclass(frozen=True)
class TemplateMap:
    """``[channel.cloud.templates.<notice>]``: one notice template's approved WhatsApp template."""

    key: str  # short notice template name, e.g. "storing_nieuw" or "fallback"
    name: str  # the approved WhatsApp template's name
    language: str = "nl"
    parameters: tuple[str, ...] = ()  # Jinja expressions, one per {{n}} in the body


@dataclass(frozen=True)
class CloudSettings:
    phone_number_id: str = ""
    token_env: str = "BRIDGE_CLOUD_TOKEN"
    token_file: Path | None = field(default=None, metadata=secret_file(instead_of="token_env"))
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    timeout: float = 10.0  # seconds per Graph API request
    max_connections: int = 100
    max_rate: float = 80.0  # messages per second (Meta's default throughput)
    min_interval: float = 6.0  # seconds between two messages to one recipient
    unique_cap: int = 250  # template recipients per rolling 24 h; 0 = no cap
    probe_interval: float = 300.0  # seconds between probes while paused
    broken_template_hold: float = 3600.0  # seconds a rejected template is not used
    webhook_retry_attempts: int = 3  # later transient failures queued again, at most
    language: str = "nl"  # the templates' default language
    fallback_template: str = "fallback"
    templates: dict[str, TemplateMap] = field(default_factory=dict)

    @property
    def messages_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}/{self.phone_number_id}/messages"

    @property
    def probe_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}/{self.phone_number_id}"


# Replies that go to people who have not written to us (outside a 24-hour service window),
# so only as an approved template: the reply template's name (replies/<name>.j2), also its
# key in [channel.cloud.templates]. Today: the welcome of `bridge subscribers import
# --welcome`. Other replies answer a message and always go as text.
REPLY_TEMPLATES = frozenset({"welcome"})


def reply_name(template: str | None) -> str | None:
    """"replies/welcome.j2" -> "welcome"; None for anything else."""
    t = (template or "").strip()
    if t.startswith("replies/") and t.endswith(".j2"):
        return t[len("replies/"):-3] or None
    return None


def short_name(template: str | None) -> str:
    """"notices/storing_nieuw.j2" -> "storing_nieuw"."""
    t = (template or "").strip()
    if t.startswith("notices/"):
        t = t[len("notices/"):]
    if t.endswith(".j2"):
        t = t[:-3]
    return t


def parse_config(sec: Section, base: Path) -> CloudSettings:
    """The ``[channel.cloud]`` table; raises ConfigError naming the key."""
    d = CloudSettings
    language = sec.str("language", d.language)
    templates = _templates(sec.table("templates"), language)
    s = CloudSettings(
        phone_number_id=sec.str("phone_number_id", d.phone_number_id),
        token_env=sec.env("token_env", d.token_env) or d.token_env,
        token_file=sec.path("token_file", None, base),
        base_url=sec.str("base_url", d.base_url),
        api_version=sec.str("api_version", d.api_version),
        timeout=sec.float("timeout", d.timeout, min=0.1, max=300),
        max_connections=sec.int("max_connections", d.max_connections, min=1, max=10000),
        max_rate=sec.float("max_rate", d.max_rate, min=0.01, max=10000),
        min_interval=sec.float("min_interval", d.min_interval, min=0, max=3600),
        unique_cap=sec.int("unique_cap", d.unique_cap, min=0, max=100_000_000),
        probe_interval=sec.float("probe_interval", d.probe_interval, min=0.05, max=86400),
        broken_template_hold=sec.float("broken_template_hold", d.broken_template_hold,
                                       min=0, max=7 * 86400),
        webhook_retry_attempts=sec.int("webhook_retry_attempts", d.webhook_retry_attempts,
                                       min=0, max=100),
        language=language,
        fallback_template=short_name(sec.str("fallback_template", d.fallback_template)),
        templates=templates,
    )
    if not s.phone_number_id.isdigit():
        raise sec.fail("phone_number_id", "required: the numeric phone number id from the Meta"
                                          f" app (WhatsApp > API set-up), got {s.phone_number_id!r}")
    if not s.base_url.startswith(("http://", "https://")):
        raise sec.fail("base_url", f"must start with https:// (or http:// for tests), got {s.base_url!r}")
    if not _API_VERSION.match(s.api_version):
        raise sec.fail("api_version", f"must look like v23.0, got {s.api_version!r}")
    sec.done()
    return s


def _templates(tsec: Section, language: str) -> dict[str, TemplateMap]:
    """``[channel.cloud.templates.<notice>]`` tables, by short notice template name."""
    templates: dict[str, TemplateMap] = {}
    for key in list(tsec.data):
        t = tsec.table(key)
        short = short_name(key)
        name = t.str("name", required=True)
        if not _TEMPLATE_NAME.match(name):
            raise t.fail("name", f"WhatsApp template names are lower-case letters, digits and _,"
                                 f" got {name!r}")
        params = t.strs("parameters")
        for i, p in enumerate(params):
            if not p.strip():
                raise t.fail("parameters", f"parameter {i + 1} is empty")
        if short in templates:
            raise tsec.fail(key, f"maps notice template {short!r} a second time")
        templates[short] = TemplateMap(key=short, name=name,
                                       language=t.str("language", language), parameters=params)
        t.done()
    tsec.done()
    return templates
