"""The WhatsApp Business Cloud API channel (Meta's Graph API).

Sending: ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with a bearer token
from the environment, over one shared ``httpx.AsyncClient`` (HTTP/1.1, keep-alive) whose
transport is aiohttp's client (``httpx_aiohttp.AiohttpTransport``).

- Inside the recipient's 24-hour service window (``Outgoing.window_open``; replies are
  always in the window) a message goes as free text; otherwise a notice goes as an
  approved template: ``[channel.cloud.templates.<notice>]`` maps a notice template
  (``storing_nieuw`` = ``notices/storing_nieuw.j2``) to a WhatsApp template name, language
  and body parameters. Each parameter is a Jinja expression rendered in the notices'
  sandbox with the notice context (``r``, ``waar``, ``diensten``, ...) plus ``tekst`` (the
  notice text on one line), then made single-line and cut to 1,024 characters.
  Unmapped notices use the ``fallback`` entry (configurable with ``fallback_template``).
- Errors are classified by ``error.code`` (never the HTTP status), see :func:`classify`.
  The same classifier handles ``failed`` statuses that arrive later by webhook
  (:meth:`CloudChannel.on_status`).
- Pacing: ``max_rate`` (80/s), ``min_interval`` (6 s per recipient; both applied by the
  dispatcher) and a cap on unique template recipients per rolling 24 h (``unique_cap``,
  250 for new accounts, 0 = none). Recipients are remembered only as keyed hashes.
  Recipients beyond the cap wait (up to 24 h on a first fan-out) while the dispatcher
  drops deliveries older than ``dispatch.max_age_hours`` as stale: :func:`cap_stale_conflict`
  (``bridge check``, start-up), the deferral WARNING and :meth:`CloudChannel.check_cap_stale`
  say so plainly.
- Token and policy errors pause the channel (one CRITICAL log line); ``run()`` probes the
  phone-number endpoint every ``probe_interval`` seconds, and at once when the token
  changes, and resumes when the probe succeeds.

See docs/cloud-api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from bridge import __version__
from bridge.channels.base import ChannelContext, Outgoing, SendResult
from bridge.config import Section
from bridge.core.models import OutageReport
from bridge.core.phone import mask

log = logging.getLogger("bridge.channels.cloud")

# -- error classes (by error.code) ------------------------------------------------------------
TRANSIENT = frozenset({130429, 131000, 131016, 131057, 1, 2, 4, 80007})
PAIR_RATE = 131056
UNDELIVERABLE = 131026
REENGAGE = 131047
TEMPLATE = frozenset({132000, 132001, 132012, 132018})
PAUSE = frozenset({190, 0, 3, 10, 368, 131031})

PARAM_MAX = 1024
DEFAULT_MAX_AGE_HOURS = 12.0  # dispatch.max_age_hours' default (bridge/config.py)
CAP_WINDOW = 86400.0
CAP_STATE_KEY = "cloud:unique-recipients"
CAP_STALE_CHECK = 60.0  # seconds between looks at cap-deferred notices for stale drops
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")


def cap_stale_conflict(unique_cap: int, max_age_hours: float | None) -> str | None:
    """Why ``unique_cap`` and ``dispatch.max_age_hours`` do not go together, or None.

    Recipients beyond the cap wait until the cap's rolling 24-hour window frees slots: on a
    first fan-out beyond the cap that is 24 h after its first sends. The dispatcher drops
    deliveries older than ``dispatch.max_age_hours`` as stale, so with less than 24 h the
    deferred recipients of such a fan-out never get the notice.
    """
    if unique_cap <= 0 or max_age_hours is None or max_age_hours * 3600 >= CAP_WINDOW:
        return None
    return (f"channel.cloud.unique_cap = {unique_cap} with dispatch.max_age_hours = "
            f"{max_age_hours:g}: a fan-out to more than {unique_cap} template recipients "
            f"(subscribers outside their 24-hour window) defers the rest until the cap's "
            f"rolling 24-hour window frees slots, up to 24 h after the first sends, but "
            f"deliveries older than {max_age_hours:g} h are dropped as stale before that: the "
            f"deferred recipients of a first fan-out beyond the cap never get that notice. Set "
            f"dispatch.max_age_hours = 24 (or more) if a late notice is still wanted, or raise "
            f"unique_cap when Meta raises the number's messaging limit")


def classify(code: int | None) -> str:
    """The class of a Graph API / webhook error code.

    transient, pair_rate, unreachable, reengage, template, pause; anything else (including
    no code) is "permanent" for that message.
    """
    if code in TRANSIENT:
        return "transient"
    if code == PAIR_RATE:
        return "pair_rate"
    if code == UNDELIVERABLE:
        return "unreachable"
    if code == REENGAGE:
        return "reengage"
    if code in TEMPLATE:
        return "template"
    if code in PAUSE:
        return "pause"
    return "permanent"


def single_line(value: str) -> str:
    """A template parameter as Meta accepts it: no newlines or tabs, no runs of more than
    four spaces (all whitespace runs become one space), not empty, at most 1,024 chars."""
    s = re.sub(r"\s+", " ", value or "").strip()
    if not s:
        return "-"
    if len(s) > PARAM_MAX:
        s = s[: PARAM_MAX - 1].rstrip() + "…"
    return s


def short_name(template: str | None) -> str:
    """"notices/storing_nieuw.j2" -> "storing_nieuw"."""
    t = (template or "").strip()
    if t.startswith("notices/"):
        t = t[len("notices/"):]
    if t.endswith(".j2"):
        t = t[:-3]
    return t


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateMap:
    key: str  # short notice template name, e.g. "storing_nieuw" or "fallback"
    name: str  # the approved WhatsApp template's name
    language: str = "nl"
    parameters: tuple[str, ...] = ()  # Jinja expressions, one per {{n}} in the body


@dataclass(frozen=True)
class CloudSettings:
    phone_number_id: str = ""
    token_env: str = "BRIDGE_CLOUD_TOKEN"
    token_file: Path | None = None
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    timeout: float = 10.0
    max_connections: int = 100
    max_rate: float = 80.0
    min_interval: float = 6.0
    unique_cap: int = 250
    probe_interval: float = 300.0
    broken_template_hold: float = 3600.0
    webhook_retry_attempts: int = 3
    language: str = "nl"
    fallback_template: str = "fallback"
    templates: dict[str, TemplateMap] = field(default_factory=dict)

    @property
    def messages_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}/{self.phone_number_id}/messages"

    @property
    def probe_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.api_version}/{self.phone_number_id}"


def parse_config(sec: Section, base: Path) -> CloudSettings:
    language = sec.str("language", "nl")
    templates: dict[str, TemplateMap] = {}
    tsec = sec.table("templates")
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
    s = CloudSettings(
        phone_number_id=sec.str("phone_number_id", ""),
        token_env=sec.env("token_env", "BRIDGE_CLOUD_TOKEN") or "BRIDGE_CLOUD_TOKEN",
        token_file=sec.path("token_file", None, base),
        base_url=sec.str("base_url", "https://graph.facebook.com"),
        api_version=sec.str("api_version", "v23.0"),
        timeout=sec.float("timeout", 10.0, min=0.1, max=300),
        max_connections=sec.int("max_connections", 100, min=1, max=10000),
        max_rate=sec.float("max_rate", 80.0, min=0.01, max=10000),
        min_interval=sec.float("min_interval", 6.0, min=0, max=3600),
        unique_cap=sec.int("unique_cap", 250, min=0, max=100_000_000),
        probe_interval=sec.float("probe_interval", 300.0, min=0.05, max=86400),
        broken_template_hold=sec.float("broken_template_hold", 3600.0, min=0, max=7 * 86400),
        webhook_retry_attempts=sec.int("webhook_retry_attempts", 3, min=0, max=100),
        language=language,
        fallback_template=short_name(sec.str("fallback_template", "fallback")),
        templates=templates,
    )
    if not s.phone_number_id.isdigit():
        raise sec.fail("phone_number_id", "required: the numeric phone number id from the Meta"
                                          f" app (WhatsApp > API set-up), got {s.phone_number_id!r}")
    if not s.base_url.startswith(("http://", "https://")):
        raise sec.fail("base_url", f"must start with https:// (or http:// for tests), got {s.base_url!r}")
    if not re.match(r"^v\d+\.\d+$", s.api_version):
        raise sec.fail("api_version", f"must look like v23.0, got {s.api_version!r}")
    sec.done()
    return s


# -- HTTP transport ---------------------------------------------------------------------------
def _transport(max_connections: int) -> AiohttpTransport:
    """httpx's API over aiohttp's HTTP/1.1 client (keep-alive, at most ``max_connections``).

    httpx's own transport (httpcore) costs about 2 CPU s per 1,000 requests here, which
    caps a fan-out near 500/s on one core; aiohttp's client does the same work for a
    fraction of that (docs/cloud-api.md, benchmark).
    """
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections, keepalive_expiry=30.0)
    return AiohttpTransport(limits=limits)


# -- the channel ------------------------------------------------------------------------------
@dataclass
class _Reply:
    """One Graph API answer, reduced to what we act on."""

    wamid: str | None = None
    code: int | None = None
    title: str = ""
    http: int = 0
    network: str | None = None


class CloudChannel:
    name = "cloud"
    jitter = 0.0
    wants_window = True
    receipts = True  # statuses by webhook: reachability is judged by them, not by the 200

    def __init__(self, settings: CloudSettings, ctx: ChannelContext):
        self.settings = settings
        self.ctx = ctx
        self.max_rate = settings.max_rate
        self.min_interval = settings.min_interval
        self._client: httpx.AsyncClient | None = None
        self._paused: str | None = None
        self._paused_token: str | None = None
        self._token_cached: str | None = None
        self._token_read_at = -1e9
        self._wake = asyncio.Event()
        self._last_probe = 0.0
        self.probes = 0
        self.sent = 0
        self.sent_text = 0
        self.sent_template = 0
        self.requests = 0
        self.webhook_errors: dict[str, int] = {}
        self._broken: dict[str, tuple[float, str]] = {}  # WhatsApp template name -> (until, why)
        self._pair_hits: dict[str, int] = {}  # recipient -> consecutive 131056 (memory only)
        self._wamid_template: dict[str, str] = {}  # recent template sends, for webhook 132xxx
        self._force_template: dict[str, float] = {}  # recipients that answered 131047 (memory)
        self._params_cache: dict[tuple, list[str]] = {}  # (map, notice, text) -> parameters
        self._messages_url = httpx.URL(settings.messages_url)  # parsed once, not per send
        # unique-recipient cap: keyed hash (hex) -> first template send time (rolling 24 h)
        self._cap: dict[str, float] = {}
        self._cap_warned: set[int | None] = set()
        # notices with cap-deferred deliveries -> their stale count already reported
        self._cap_deferred: dict[int, int] = {}
        self._cap_stale_checked = time.monotonic()
        self._granted: dict[int | None, int] = {}  # notice -> its sends under way, not deferred
        # dispatch.max_age_hours, when the application passes it (ChannelContext.extra);
        # None: unknown, the messages then name the setting and its default
        max_age = ctx.extra.get("dispatch_max_age_hours") if ctx.extra else None
        self.max_age_hours: float | None = float(max_age) if max_age is not None else None
        self._cap_dirty = False
        self._cap_saved = 0.0
        self._mem_key = secrets.token_bytes(32)
        self._load_cap()

    # -- state ------------------------------------------------------------------------------
    @property
    def paused(self) -> str | None:
        if self._paused is None and not self._token():
            where = (f"file {self.settings.token_file}" if self.settings.token_file
                     else f"environment variable {self.settings.token_env}")
            self._pause(f"token: {where} is not set")
        return self._paused

    def describe(self) -> dict:
        t = time.time()
        return {
            "type": "cloud",
            "state": "paused" if self.paused else "ready",
            "paused": self._paused,
            "phone_number_id": self.settings.phone_number_id,
            "sent": self.sent, "sent_text": self.sent_text, "sent_template": self.sent_template,
            "broken_templates": sorted(n for n, (until, _) in self._broken.items() if until > t),
            "unique_recipients_24h": self.unique_recipients(),
            "unique_cap": self.settings.unique_cap,
        }

    def unique_recipients(self) -> int:
        self._prune_cap()
        return len(self._cap)

    def _token(self) -> str | None:
        if self.settings.token_file:
            t = time.monotonic()
            if t - self._token_read_at > 1.0:  # re-read at most once a second
                self._token_read_at = t
                try:
                    self._token_cached = self.settings.token_file.read_text().strip() or None
                except OSError:
                    self._token_cached = None
            return self._token_cached
        return os.environ.get(self.settings.token_env) or None

    def _pause(self, reason: str) -> None:
        if self._paused is not None:
            return
        self._paused = reason
        self._paused_token = self._token()
        self._last_probe = time.monotonic()
        log.critical("cloud: channel PAUSED, nothing is sent until this is fixed: %s. "
                     "Probing every %.0f s (and at once when the token changes).",
                     reason, self.settings.probe_interval)
        self._wake.set()

    def _resume(self, how: str) -> None:
        if self._paused is None:
            return
        log.warning("cloud: channel resumed (%s); was paused: %s", how, self._paused)
        self._paused = None
        self._paused_token = None

    # -- HTTP -------------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(s.timeout, connect=min(5.0, s.timeout)),
                transport=_transport(s.max_connections),
                headers={"User-Agent": f"storingsbridge/{__version__}"},
            )
        return self._client

    async def _call(self, method: str, url: str | httpx.URL, token: str, payload: dict | None = None) -> _Reply:
        self.requests += 1
        try:
            r = await self._http().request(method, url, json=payload,
                                           headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException as e:
            return _Reply(network=f"timeout ({type(e).__name__})")
        except (httpx.HTTPError, aiohttp.ClientError) as e:  # the latter: any httpx_aiohttp
            return _Reply(network=f"{type(e).__name__}: {e}")  # does not map
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return _Reply(http=r.status_code,
                          network=None if r.status_code < 500 else f"HTTP {r.status_code}",
                          title=f"HTTP {r.status_code} without JSON")
        err = data.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            title = str(err.get("error_user_title") or err.get("message") or err.get("type") or "")
            return _Reply(code=code if isinstance(code, int) else None, title=title,
                          http=r.status_code)
        if r.status_code >= 400:
            return _Reply(http=r.status_code, title=f"HTTP {r.status_code}",
                          network=f"HTTP {r.status_code}" if r.status_code >= 500 else None)
        wamid = None
        msgs = data.get("messages")
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
            wamid = msgs[0].get("id")
        return _Reply(wamid=wamid or "", http=r.status_code)

    # -- payloads ---------------------------------------------------------------------------------
    @staticmethod
    def _addressee(to: str) -> dict:
        if to.startswith("user:"):
            return {"recipient": to[5:]}  # a business-scoped user id (BSUID)
        return {"to": to if to.startswith("+") else "+" + to}

    def _text_payload(self, msg: Outgoing) -> dict:
        return {"messaging_product": "whatsapp", "recipient_type": "individual",
                **self._addressee(msg.to), "type": "text",
                "text": {"preview_url": False, "body": msg.text}}

    def _template_payload(self, msg: Outgoing, tm: TemplateMap, params: list[str]) -> dict:
        template: dict[str, Any] = {"name": tm.name, "language": {"code": tm.language}}
        if params:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": p} for p in params]}]
        return {"messaging_product": "whatsapp", "recipient_type": "individual",
                **self._addressee(msg.to), "type": "template", "template": template}

    def _is_broken(self, name: str) -> bool:
        b = self._broken.get(name)
        if b is None:
            return False
        if b[0] <= time.time():
            del self._broken[name]
            log.warning("cloud: trying WhatsApp template %s again after %.0f s (it failed: %s)",
                        name, self.settings.broken_template_hold, b[1])
            return False
        return True

    def _mark_broken(self, name: str, why: str) -> None:
        if self._is_broken(name):
            return
        self._broken[name] = (time.time() + self.settings.broken_template_hold, why)
        log.error("cloud: ALERT: WhatsApp template %s rejected by Meta (%s); not using it for "
                  "%.0f s, notices fall back to template %r (check the template's approval, "
                  "name, language and parameter count in WhatsApp Manager)", name, why,
                  self.settings.broken_template_hold, self.settings.fallback_template)

    def template_context(self, msg: Outgoing) -> dict:
        tekst = re.sub(r"\s+", " ", msg.text or "").strip()
        renderer = self.ctx.renderer
        if msg.report and renderer is not None:
            report = OutageReport.from_json(msg.report)
            return {**renderer.notice_context(report, None), "tekst": tekst}
        return {"r": None, "tekst": tekst}

    def render_params(self, tm: TemplateMap, context: dict) -> list[str]:
        """The body parameters of ``tm`` for ``context``; raises on a render error."""
        if self.ctx.renderer is None:
            raise RuntimeError("no renderer")
        return [single_line(self.ctx.renderer.render_string(p, context)) for p in tm.parameters]

    def _choose_template(self, msg: Outgoing) -> tuple[TemplateMap, list[str]] | str:
        """The template and its parameters for an out-of-window notice, or why there is none."""
        s = self.settings
        key = short_name(msg.template)
        candidates = []
        mapped = s.templates.get(key)
        if mapped is not None:
            candidates.append(mapped)
        fb = s.templates.get(s.fallback_template)
        if fb is not None and fb is not mapped:
            candidates.append(fb)
        if not candidates:
            return (f"no WhatsApp template for {msg.template or 'this notice'} and no "
                    f"fallback template [channel.cloud.templates.{s.fallback_template}]")
        context = None
        why = []
        for tm in candidates:
            if self._is_broken(tm.name):
                why.append(f"{tm.name} is marked broken")
                continue
            # A notice's parameters are the same for all its recipients (they depend only
            # on the notice's text and report): render them once per fan-out.
            key = (tm, msg.notice_id, msg.text) if msg.notice_id is not None else None
            params = self._params_cache.get(key) if key is not None else None
            if params is not None:
                return tm, params
            if context is None:
                context = self.template_context(msg)
            try:
                params = self.render_params(tm, context)
                if key is not None:
                    if len(self._params_cache) > 64:
                        self._params_cache.clear()
                    self._params_cache[key] = params
                return tm, params
            except Exception as e:  # noqa: BLE001 - a bad expression must not stop the notice
                log.error("cloud: parameters of WhatsApp template %s failed for notice %s: %s",
                          tm.name, msg.notice_id, e)
                why.append(f"{tm.name} parameters: {e}")
        return "no usable WhatsApp template: " + "; ".join(why)

    # -- unique-recipient cap ---------------------------------------------------------------------
    def _cap_keys(self, to: str) -> tuple[str, str | None]:
        subs = getattr(self.ctx.store, "subscribers", None)
        if subs is not None and hasattr(subs, "_digests"):
            # the store's keyed hashes: per-day keys that are deleted after two days
            h, p = subs._digests("cloud-cap", CAP_WINDOW, to)
            return h.hex(), (p.hex() if p else None)
        return hmac.new(self._mem_key, to.encode(), hashlib.sha256).hexdigest()[:32], None

    def _prune_cap(self) -> None:
        cutoff = time.time() - CAP_WINDOW
        if self._cap and min(self._cap.values()) < cutoff:
            self._cap = {k: v for k, v in self._cap.items() if v >= cutoff}
            self._cap_dirty = True

    def _cap_reserve(self, msg: Outgoing) -> tuple[str | None, SendResult | None]:
        """Reserve a slot for ``msg.to``; (key to release on failure, or a deferral)."""
        cap = self.settings.unique_cap
        if cap <= 0:
            return None, None
        h, p = self._cap_keys(msg.to)
        if h in self._cap or (p and p in self._cap):
            return None, None
        self._prune_cap()
        if len(self._cap) < cap:
            self._cap[h] = time.time()
            self._cap_dirty = True
            return h, None
        times = sorted(self._cap.values())
        k = max(1, cap // 10)  # wake up when a tenth of the cap is free again
        when = times[min(k, len(times)) - 1] + CAP_WINDOW
        wait = max(1.0, when - time.time())
        at = datetime.fromtimestamp(when, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
        if msg.notice_id not in self._cap_warned:
            self._cap_warned.add(msg.notice_id)
            self._cap_warning(msg.notice_id, cap, when, at)
        return None, SendResult("paused", retry_after=wait,
                                error=f"unique-recipient cap {cap}/24h reached; next slots {at}")

    def _cap_warning(self, notice_id: int | None, cap: int, when: float, at: str) -> None:
        """The one WARNING per notice when the cap defers its recipients: how many, until
        when, and whether they will be dropped as stale before that."""
        counts: dict[str, int] = {}
        created: float | None = None
        st = self.ctx.store
        if st is not None and notice_id is not None:
            try:
                counts = st.deliveries.notice_counts(notice_id)
                row = st.incidents.notice(notice_id)
                created = float(row["created_at"]) if row else None
            except Exception as e:  # noqa: BLE001 - a warning must never stop a send
                log.debug("cloud: no fan-out size for notice %s: %s", notice_id, e)
        waiting = max(1, counts.get("pending", 0) + counts.get("sending", 0)
                      - self._granted.get(notice_id, 0))
        if notice_id is not None:
            self._cap_deferred.setdefault(notice_id, counts.get("stale", 0))
        who = (f"up to {waiting} recipients still waiting for it (those outside their 24-hour "
               f"window)" if counts else "the remaining recipients outside their 24-hour window")
        head = (f"cloud: unique-recipient cap reached: {len(self._cap)} recipients got a template "
                f"in the last 24 h (unique_cap {cap}); notice {notice_id}: {who} are deferred "
                f"until about {at}, when a tenth of the cap is free again")
        age = self.max_age_hours
        if age is None:
            log.warning("%s. Deliveries older than dispatch.max_age_hours (default %g h) are "
                        "dropped as stale: if the notice is older than that by then, these "
                        "recipients do not get it (a newer notice of the incident supersedes "
                        "it anyway)", head, DEFAULT_MAX_AGE_HOURS)
            return
        stale_at = (created if created is not None else time.time()) + age * 3600
        if stale_at < when:
            shown = datetime.fromtimestamp(stale_at, timezone.utc).astimezone()
            log.warning("%s. But deliveries are dropped as stale after dispatch.max_age_hours = "
                        "%g h, at about %s for this notice, before the cap allows them: these "
                        "recipients will not get this notice. %s", head, age,
                        shown.strftime("%Y-%m-%d %H:%M"),
                        "Set dispatch.max_age_hours = 24 (or more) if a late notice is still "
                        "wanted, or raise unique_cap when Meta raises the messaging limit")
        else:
            log.warning("%s; they continue then (unless a newer notice of the incident "
                        "supersedes them)", head)

    def check_cap_stale(self) -> int:
        """Log the deliveries of cap-deferred notices that went stale since the last look
        (the dispatcher drops them; this says why). Returns how many."""
        st = self.ctx.store
        total = 0
        if st is None:
            return 0
        for nid, seen in list(self._cap_deferred.items()):
            try:
                counts = st.deliveries.notice_counts(nid)
            except Exception as e:  # noqa: BLE001
                log.debug("cloud: cannot look at notice %s: %s", nid, e)
                continue
            stale = counts.get("stale", 0)
            if stale > seen:
                total += stale - seen
                log.warning("cloud: notice %d: %d deliveries deferred by the unique-recipient cap "
                            "(unique_cap %d) were dropped as stale (older than "
                            "dispatch.max_age_hours%s) before the cap allowed them: these "
                            "recipients did not get this notice", nid, stale - seen,
                            self.settings.unique_cap,
                            f" = {self.max_age_hours:g} h" if self.max_age_hours else "")
            if not counts.get("pending") and not counts.get("sending"):
                del self._cap_deferred[nid]
            else:
                self._cap_deferred[nid] = stale
        return total

    def _cap_release(self, h: str | None) -> None:
        if h is not None and self._cap.pop(h, None) is not None:
            self._cap_dirty = True

    def _load_cap(self) -> None:
        st = getattr(self.ctx.store, "state", None)
        if st is None or self.settings.unique_cap <= 0:
            return
        try:
            raw = st.get(CAP_STATE_KEY)
            data = json.loads(raw) if raw else {}
            cutoff = time.time() - CAP_WINDOW
            self._cap = {k: float(v) for k, v in data.items() if float(v) >= cutoff}
        except Exception as e:  # noqa: BLE001
            log.warning("cloud: could not read the unique-recipient state: %s", e)

    def _save_cap(self, force: bool = False) -> None:
        st = getattr(self.ctx.store, "state", None)
        if st is None or not self._cap_dirty:
            return
        t = time.monotonic()
        if not force and t - self._cap_saved < 10:
            return
        self._cap_saved = t
        self._cap_dirty = False
        try:
            st.set(CAP_STATE_KEY, json.dumps(self._cap))
        except Exception as e:  # noqa: BLE001
            log.warning("cloud: could not save the unique-recipient state: %s", e)

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, msg: Outgoing) -> SendResult:
        if self.paused:
            return SendResult("paused", error=self._paused,
                              retry_after=max(5.0, min(60.0, self.settings.probe_interval)))
        token = self._token() or ""
        template = msg.kind == "notice" and (not msg.window_open or self._forced(msg.to))
        if template:
            return await self._send_template(msg, token)
        with self._granted_send(msg):
            reply = await self._call("POST", self._messages_url, token, self._text_payload(msg))
        if reply.code == REENGAGE and msg.kind == "notice":
            # The window was closed after all: the same notice as a template, right away.
            self._force_template[msg.to] = time.time() + CAP_WINDOW
            log.info("cloud: delivery %d to %s: 131047 outside the 24-hour window; resending "
                     "as a template", msg.delivery_id, mask(msg.to))
            return await self._send_template(msg, token)
        return self._result(msg, reply, kind="text")

    @contextlib.contextmanager
    def _granted_send(self, msg: Outgoing):
        """Count a notice's sends under way that the cap let through: the deferral warning
        subtracts them from the notice's unfinished deliveries."""
        nid = msg.notice_id
        self._granted[nid] = self._granted.get(nid, 0) + 1
        try:
            yield
        finally:
            n = self._granted.pop(nid) - 1
            if n:
                self._granted[nid] = n

    def _forced(self, to: str) -> bool:
        until = self._force_template.get(to)
        if until is None:
            return False
        if until < time.time():
            del self._force_template[to]
            return False
        return True

    async def _send_template(self, msg: Outgoing, token: str) -> SendResult:
        chosen = self._choose_template(msg)
        if isinstance(chosen, str):
            log.error("cloud: delivery %d (notice %s): %s", msg.delivery_id, msg.notice_id, chosen)
            return SendResult("failed", error="template " + chosen)
        tm, params = chosen
        slot, deferred = self._cap_reserve(msg)
        if deferred is not None:
            return deferred
        with self._granted_send(msg):
            reply = await self._call("POST", self._messages_url, token,
                                     self._template_payload(msg, tm, params))
        result = self._result(msg, reply, kind="template", template=tm.name)
        if result.status != "sent":
            self._cap_release(slot)
        self._save_cap()
        return result

    def _result(self, msg: Outgoing, reply: _Reply, *, kind: str,
                template: str | None = None) -> SendResult:
        if reply.wamid is not None:
            self.sent += 1
            if kind == "text":
                self.sent_text += 1
            else:
                self.sent_template += 1
                if template:
                    if len(self._wamid_template) > 20000:
                        self._wamid_template.clear()
                    self._wamid_template[reply.wamid] = template
            self._pair_hits.pop(msg.to, None)
            return SendResult.ok(reply.wamid or None)
        if reply.code is None:
            if reply.network:  # network trouble, 5xx: the dispatcher's backoff
                return SendResult("retry", error=f"network {reply.network}")
            return SendResult("failed", error=f"http {reply.title or reply.http}")
        code, title = reply.code, reply.title
        err = f"{code} {title}".strip()
        cls = classify(code)
        if cls == "transient":
            return SendResult("retry", error=err)
        if cls == "pair_rate":
            n = self._pair_hits.get(msg.to, 0) + 1
            self._pair_hits[msg.to] = n
            if len(self._pair_hits) > 50_000:
                self._pair_hits.clear()
            return SendResult("retry", error=err, retry_after=float(min(4 ** (n - 1), 1024)))
        if cls == "unreachable":
            return SendResult("failed", error=err, unreachable=True)
        if cls == "template":
            if template:
                self._mark_broken(template, err)
            return SendResult("failed", error=err)
        if cls == "pause":
            self._pause(err)
            return SendResult("paused", error=err,
                              retry_after=max(5.0, min(60.0, self.settings.probe_interval)))
        if cls == "reengage":  # a reply outside the window, or a template answered 131047
            return SendResult("failed", error=err)
        return SendResult("failed", error=err)

    # -- statuses that arrive by webhook ----------------------------------------------------------
    async def on_status(self, wamid: str, state: str, code: int | None = None,
                        title: str = "") -> None:
        """Apply one status webhook: classify failures, then move the delivery forward."""
        if state != "failed":
            if self.ctx.status:
                await self.ctx.status(wamid, state, None, False)
            return
        err = f"{code} {title}".strip() if code is not None else (title or "failed")
        key = str(code) if code is not None else "unknown"
        self.webhook_errors[key] = self.webhook_errors.get(key, 0) + 1
        cls = classify(code)
        if cls == "pause":
            self._pause(f"{err} (webhook)")
        elif cls == "template":
            name = self._wamid_template.get(wamid)
            if name:
                self._mark_broken(name, f"{err} (webhook)")
        elif cls in ("transient", "pair_rate", "reengage"):
            # Accepted, then failed for a passing reason: queue the notice again (its
            # subscriber's number comes back from the subscriber row), a few times at most.
            requeue = getattr(getattr(self.ctx.store, "deliveries", None), "requeue", None)
            if requeue is not None and self.settings.webhook_retry_attempts > 0:
                delay = 60.0 if cls == "transient" else 10.0
                number = requeue(wamid, time.time() + delay, f"{err} (webhook)",
                                 self.settings.webhook_retry_attempts)
                if number:
                    if cls == "reengage":
                        self._force_template[number] = time.time() + CAP_WINDOW
                    log.info("cloud: message %s… failed later (%s); queued again", wamid[:20], err)
                    return
        unreachable = cls == "unreachable"
        if unreachable and self._state_of(wamid) == "failed":
            # Meta repeats webhooks: count a subscriber unreachable once per message.
            # (App.delivery_status would count every repeat: store progress() does not say
            # whether the state changed.)
            unreachable = False
        if self.ctx.status:
            await self.ctx.status(wamid, "failed", err, unreachable)

    def _state_of(self, wamid: str) -> str | None:
        db = getattr(self.ctx.store, "db", None)
        if db is None:
            return None
        return db.scalar("SELECT state FROM deliveries WHERE provider_id=?", (wamid,))

    # -- upkeep -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """While paused: probe the phone-number endpoint every ``probe_interval`` s, and at
        once when the token changes; resume when a probe succeeds."""
        conflict = cap_stale_conflict(self.settings.unique_cap, self.max_age_hours)
        if conflict:
            log.warning("cloud: %s", conflict)
        while True:
            if self._cap_deferred and \
                    time.monotonic() - self._cap_stale_checked >= CAP_STALE_CHECK:
                self._cap_stale_checked = time.monotonic()
                self.check_cap_stale()
            if self.paused is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 5.0)
                except asyncio.TimeoutError:
                    pass
                self._save_cap()
                continue
            token = self._token()
            changed = token is not None and token != self._paused_token
            due = time.monotonic() - self._last_probe >= self.settings.probe_interval
            if token and (changed or due):
                await self.probe(token)
            await asyncio.sleep(min(1.0, self.settings.probe_interval))

    async def probe(self, token: str) -> bool:
        """One cheap authenticated GET; resumes the channel when it succeeds."""
        self._last_probe = time.monotonic()
        self.probes += 1
        reply = await self._call("GET", self.settings.probe_url + "?fields=id", token)
        if reply.code is None and reply.network is None and 200 <= reply.http < 300:
            self._resume("probe succeeded")
            return True
        if reply.code is not None and classify(reply.code) == "pause":
            self._paused_token = token  # this token does not work: wait for another
        log.info("cloud: probe while paused: %s", f"{reply.code} {reply.title}"
                 if reply.code is not None else (reply.network or f"HTTP {reply.http}"))
        return False

    async def close(self) -> None:
        self._save_cap(force=True)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def create(settings: CloudSettings, ctx: ChannelContext) -> CloudChannel:
    return CloudChannel(settings, ctx)


# -- bridge check -----------------------------------------------------------------------------
def check(settings: CloudSettings, renderer, samples: list[OutageReport],
          dispatch: Any = None) -> list[str]:
    """Trial-render every mapped template's parameters against the sample reports; with
    ``dispatch`` (the [dispatch] config) also check the unique-recipient cap against
    ``dispatch.max_age_hours``."""
    problems: list[str] = []
    conflict = cap_stale_conflict(settings.unique_cap, getattr(dispatch, "max_age_hours", None))
    if conflict:
        problems.append(f"channel.cloud.unique_cap:0: warning: {conflict}")
    where = "channel.cloud.templates"
    notices_dir = Path(renderer.templates_dir) / "notices"
    known = {p.stem for p in notices_dir.glob("*.j2")} if notices_dir.is_dir() else set()
    if settings.fallback_template not in settings.templates:
        unmapped = sorted(k for k in known if k not in settings.templates)
        if unmapped:
            problems.append(f"{where}:0: no fallback template "
                            f"[{where}.{settings.fallback_template}]: notices {', '.join(unmapped)} "
                            "cannot reach subscribers outside their 24-hour window")
    ctx = ChannelContext(inbound=_no_inbound, renderer=renderer)
    ch = CloudChannel(settings, ctx)
    for key, tm in sorted(settings.templates.items()):
        if known and key not in known and key != settings.fallback_template:
            problems.append(f"{where}.{key}:0: warning: no notice template notices/{key}.j2")
        if key == settings.fallback_template:
            reports = list(samples)
        else:
            kind, _, status = key.partition("_")
            reports = [r for r in samples if r.kind == kind and r.status == status] or list(samples)
        for i, report in enumerate(reports):
            text = renderer.render_notice(report).text
            msg = Outgoing(delivery_id=0, to="+31600000000", text=text, kind="notice",
                           template=f"notices/{key}.j2", report=report.to_json())
            try:
                params = ch.render_params(tm, ch.template_context(msg))
            except Exception as e:  # noqa: BLE001
                problems.append(f"{where}.{key}:0: sample {i + 1} ({report.kind} "
                                f"{report.status}): parameter failed: {e}")
                continue
            for j, p in enumerate(params):
                if p == "-":
                    problems.append(f"{where}.{key}:0: warning: sample {i + 1}: parameter "
                                    f"{j + 1} is empty (sent as '-')")
    return problems


async def _no_inbound(msg) -> None:  # pragma: no cover - check() never receives
    return None
