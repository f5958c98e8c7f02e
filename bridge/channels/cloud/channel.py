"""The WhatsApp Business Cloud API channel: what goes out how, and what comes back.

- Inside the recipient's 24-hour service window (``Outgoing.window_open``; replies are
  always in the window) a message goes as free text; otherwise a notice goes as an
  approved template (:mod:`.templates`), counted against the unique-recipient cap
  (:mod:`.cap`). A text answered with 131047 (the window was closed after all) goes again
  at once as a template.
- Errors are classified by ``error.code`` (:func:`.graph.classify`); the same classes
  apply to ``failed`` statuses that arrive later by webhook (:meth:`CloudChannel.on_status`;
  the webhook itself: :mod:`.webhook`, mounted by the web server from :meth:`routes`).
- Token and policy errors pause the channel (one CRITICAL log line); :meth:`run` probes the
  phone-number endpoint every ``probe_interval`` seconds, and at once when the token
  changes, and resumes when the probe succeeds.

See docs/cloud-api.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from bridge.channels.base import (BaseChannel, Metric, Outgoing, Route, SendResult,
                                  WebOptions)
from bridge.channels.cloud.cap import CAP_WINDOW, UniqueRecipientCap, cap_stale_conflict
from bridge.channels.cloud.graph import (GLOBAL_RATE_LIMIT, REENGAGE, GraphClient, Reply,
                                         Token, classify, template_body, text_payload)
from bridge.channels.cloud.settings import REPLY_TEMPLATES, CloudSettings
from bridge.channels.cloud.templates import Templates, mapped_problems
from bridge.channels.cloud.webhook import Webhook
from bridge.config import SettingsTable, secret
from bridge.core.phone import mask
from bridge.port import ChannelPort, CheckPort, ReceiptState

log = logging.getLogger(__name__)


class CloudChannel(BaseChannel):
    name = "cloud"
    wants_window = True
    receipts = True  # statuses by webhook: reachability is judged by them, not by the 200

    def __init__(self, settings: CloudSettings, port: ChannelPort):
        self.settings = settings
        self._port = port
        self.max_rate = settings.max_rate
        self.min_interval = settings.min_interval
        self.graph = GraphClient(settings)
        self.token = Token(settings)
        self.templates = Templates(settings, port)
        self.cap = UniqueRecipientCap(settings.unique_cap, port)
        self._paused: str | None = None
        self._paused_token: str | None = None
        self._paused_retry = max(5.0, min(60.0, settings.probe_interval))
        self._wake = asyncio.Event()
        self._last_probe = 0.0
        self._webhook: Webhook | None = None
        self.probes = 0
        self.sent = 0
        self.sent_text = 0
        self.sent_template = 0
        self.webhook_errors: dict[str, int] = {}  # failed statuses by error code
        self._pair_hits: dict[str, int] = {}  # recipient -> consecutive 131056 (memory only)
        self._force_template: dict[str, float] = {}  # recipients that answered 131047 (memory)

    # -- state ------------------------------------------------------------------------------
    @property
    def paused(self) -> str | None:
        if self._paused is None and not self.token.get():
            self._pause(self.token.missing())
        return self._paused

    @property
    def requests(self) -> int:
        """Graph API requests made (sends and probes)."""
        return self.graph.requests

    def unique_recipients(self) -> int:
        """Template recipients in the cap's rolling 24 hours."""
        return self.cap.count()

    def initiate_problem(self, reply: str) -> str | None:
        """A reply to people who have not written goes only as an approved template: None
        when ``reply`` (e.g. "welcome") is mapped in ``[channel.cloud.templates]``."""
        if reply in REPLY_TEMPLATES and reply in self.settings.templates:
            return None
        return (f"on the Cloud API a first message to people who have not written must be an "
                f"approved template, and no WhatsApp template is mapped for replies/{reply}.j2: "
                f"add [channel.cloud.templates.{reply}] (docs/cloud-api.md, 'The welcome "
                f"template')")

    def describe(self) -> dict[str, object]:
        return {
            "type": "cloud",
            "state": "paused" if self.paused else "ready",
            "paused": self._paused,
            "phone_number_id": self.settings.phone_number_id,
            "sent": self.sent, "sent_text": self.sent_text, "sent_template": self.sent_template,
            "broken_templates": self.templates.broken_names(),
            "unique_recipients_24h": self.unique_recipients(),
            "unique_cap": self.settings.unique_cap,
        }

    def metrics(self) -> Sequence[Metric]:
        out = [Metric("bridge_channel_errors", "Channel errors by code", "counter",
                      ("code", "source"), {(code, "webhook"): n for code, n
                                           in sorted(self.webhook_errors.items())}),
               Metric("bridge_unique_recipients", "Template recipients in the last 24 h",
                      "gauge", (), {(): self.unique_recipients()})]
        if self._webhook is not None:
            out += self._webhook.metrics()
        return out

    def routes(self, options: WebOptions) -> Sequence[Route]:
        """Meta's webhook (``GET``/``POST /webhook``) unless ``web.webhook = false``; its
        secrets are read now, so a missing one stops the start-up with its name."""
        if not options.webhook:
            return ()
        verify_token = secret(options.verify_token_env, "web.verify_token_env")
        app_secret = secret(options.app_secret_env, "web.app_secret_env").encode()
        self._webhook = Webhook(verify_token, app_secret, self._port.inbound, self.on_status)
        return self._webhook.routes()

    def _pause(self, reason: str) -> None:
        if self._paused is not None:
            return
        self._paused = reason
        self._paused_token = self.token.get()
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

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, msg: Outgoing) -> SendResult:
        token = self.token.get()  # read once per send (the ``paused`` property reads it too)
        if self._paused is None and not token:
            self._pause(self.token.missing())
        if self._paused:
            return SendResult("paused", error=self._paused, retry_after=self._paused_retry)
        token = token or ""
        if msg.kind == "notice" and (not msg.window_open or self._forced(msg.to)):
            return await self._send_template(msg, token)
        if msg.kind == "reply" and self.templates.for_reply(msg) is not None:
            # to someone who has not written (the welcome of an import): only a template may go
            return await self._send_template(msg, token)
        with self.cap.sending(msg):
            reply = await self.graph.send_message(token, text_payload(msg.to, msg.text))
        if reply.code == REENGAGE and msg.kind == "notice":
            # The window was closed after all: the same notice as a template, right away.
            self._force_template[msg.to] = time.time() + CAP_WINDOW
            log.info("cloud: delivery %d to %s: 131047 outside the 24-hour window; resending "
                     "as a template", msg.delivery_id, mask(msg.to))
            return await self._send_template(msg, token)
        return self._result(msg, reply, template=None)

    def _forced(self, to: str) -> bool:
        until = self._force_template.get(to)
        if until is None:
            return False
        if until < time.time():
            del self._force_template[to]
            return False
        return True

    async def _send_template(self, msg: Outgoing, token: str) -> SendResult:
        chosen = self.templates.choose(msg)
        if isinstance(chosen, str):
            log.error("cloud: delivery %d (notice %s): %s", msg.delivery_id, msg.notice_id, chosen)
            return SendResult("failed", error="template " + chosen)
        tm, params = chosen
        slot, deferred = self.cap.reserve(msg)
        if deferred is not None:
            return deferred
        with self.cap.sending(msg):
            reply = await self.graph.send_message(token, template_body(msg.to, tm, params))
        result = self._result(msg, reply, template=tm.name)
        if result.status != "sent":
            self.cap.release(slot)
        self.cap.save()
        return result

    def _result(self, msg: Outgoing, reply: Reply, *, template: str | None) -> SendResult:
        """A Graph API answer -> SendResult (``template``: the WhatsApp template sent, None
        for free text). Rate limits are typed (``SendResult.rate_limit``): 130429, 80007, 4
        and an HTTP 429 without JSON are ``"global"``; 131056 (too many messages to this
        recipient) is ``"recipient"``, waiting 4^(n-1) s (at most 1,024 s) after the n-th
        in a row."""
        if reply.wamid is not None:
            self.sent += 1
            if template is None:
                self.sent_text += 1
            else:
                self.sent_template += 1
                self.templates.sent_as(reply.wamid, template)
            self._pair_hits.pop(msg.to, None)
            return SendResult.ok(reply.wamid or None)
        if reply.code is None:
            if reply.network:  # a timeout, no connection, 408/429/5xx without JSON
                return SendResult("retry", retry_after=reply.retry_after, error=(
                    reply.network if reply.http else f"network {reply.network}"),
                    rate_limit="global" if reply.http == 429 else None)
            return SendResult("failed", error=f"http {reply.title or reply.http}")
        err = f"{reply.code} {reply.title}".strip()
        cls = classify(reply.code)
        if cls == "transient":
            return SendResult("retry", error=err, retry_after=reply.retry_after,
                              rate_limit="global" if reply.code in GLOBAL_RATE_LIMIT else None)
        if cls == "pair_rate":
            n = self._pair_hits.get(msg.to, 0) + 1
            self._pair_hits[msg.to] = n
            if len(self._pair_hits) > 50_000:
                self._pair_hits.clear()
            return SendResult("retry", error=err, retry_after=float(min(4 ** (n - 1), 1024)),
                              rate_limit="recipient")
        if cls == "unreachable":
            return SendResult("failed", error=err, unreachable=True)
        if cls == "template" and template:
            self.templates.mark_broken(template, err)
        elif cls == "pause":
            self._pause(err)
            return SendResult("paused", error=err, retry_after=self._paused_retry)
        # template, reengage (a reply outside the window, or a template answered 131047),
        # permanent: failed for this message
        return SendResult("failed", error=err)

    # -- statuses that arrive by webhook ----------------------------------------------------------
    async def on_status(self, wamid: str, state: ReceiptState, code: int | None = None,
                        title: str = "") -> None:
        """Apply one status webhook: classify failures, then move the delivery forward."""
        if state != "failed":
            await self._port.delivery_status(wamid, state)
            return
        err = f"{code} {title}".strip() if code is not None else (title or "failed")
        key = str(code) if code is not None else "unknown"
        self.webhook_errors[key] = self.webhook_errors.get(key, 0) + 1
        cls = classify(code)
        if cls == "pause":
            self._pause(f"{err} (webhook)")
        elif cls == "template":
            name = self.templates.template_of(wamid)
            if name:
                self.templates.mark_broken(name, f"{err} (webhook)")
        elif cls in ("transient", "pair_rate", "reengage") \
                and self.settings.webhook_retry_attempts > 0:
            # Accepted, then failed for a passing reason: queue the notice again (its
            # subscriber's number comes back from the subscriber row), a few times at most.
            delay = 60.0 if cls == "transient" else 10.0
            number = self._port.requeue(wamid, delay, f"{err} (webhook)",
                                        self.settings.webhook_retry_attempts)
            if number:
                if cls == "reengage":
                    self._force_template[number] = time.time() + CAP_WINDOW
                log.info("cloud: message %s… failed later (%s); queued again", wamid[:20], err)
                return
        # Meta repeats webhooks: the port counts a subscriber unreachable only when the
        # report moves the delivery (once per message).
        await self._port.delivery_status(wamid, "failed", err, cls == "unreachable")

    # -- upkeep -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """While paused: probe the phone-number endpoint every ``probe_interval`` s, and at
        once when the token changes; resume when a probe succeeds."""
        conflict = cap_stale_conflict(self.settings.unique_cap, self.cap.max_age_hours)
        if conflict:
            log.warning("cloud: %s", conflict)
        while True:
            self.cap.upkeep()
            if self.paused is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 5.0)
                except asyncio.TimeoutError:
                    pass
                self.cap.save()
                continue
            token = self.token.get()
            changed = token is not None and token != self._paused_token
            due = time.monotonic() - self._last_probe >= self.settings.probe_interval
            if token and (changed or due):
                await self.probe(token)
            await asyncio.sleep(min(1.0, self.settings.probe_interval))

    async def probe(self, token: str) -> bool:
        """One cheap authenticated GET; resumes the channel when it succeeds."""
        self._last_probe = time.monotonic()
        self.probes += 1
        reply = await self.graph.probe(token)
        if reply.ok:
            self._resume("probe succeeded")
            return True
        if reply.code is not None and classify(reply.code) == "pause":
            self._paused_token = token  # this token does not work: wait for another
        log.info("cloud: probe while paused: %s", f"{reply.code} {reply.title}"
                 if reply.code is not None else (reply.network or f"HTTP {reply.http}"))
        return False

    async def close(self) -> None:
        self.cap.save(force=True)
        await self.graph.aclose()


def create(settings: SettingsTable, port: ChannelPort) -> CloudChannel:
    if not isinstance(settings, CloudSettings):
        raise TypeError(f"cloud channel: expected CloudSettings, got {type(settings).__name__}")
    return CloudChannel(settings, port)


def check(settings: SettingsTable, port: CheckPort) -> list[str]:
    """``bridge check``: the unique-recipient cap against ``dispatch.max_age_hours``, the
    template mapping, and every mapped template's parameters trial-rendered against the
    sample reports."""
    if not isinstance(settings, CloudSettings):
        raise TypeError(f"cloud channel: expected CloudSettings, got {type(settings).__name__}")
    problems: list[str] = []
    conflict = cap_stale_conflict(settings.unique_cap, port.dispatch_max_age_hours)
    if conflict:
        problems.append(f"channel.cloud.unique_cap:0: warning: {conflict}")
    problems += mapped_problems(settings, port.notice_templates(), port.sample_notices(), port)
    return problems
