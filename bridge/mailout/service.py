"""Mail back, the daemon's part: the sender task and the operator alerts.

- **Sender.** Takes due mails from the durable queue (store.mailout) and sends them through
  the relay, several in one SMTP session. A passing failure (relay down, 4xx, timeout, a
  refused login) moves the mail on with exponential backoff (2 s doubling to 5 min, with
  jitter); only a 5xx for the message itself, or ``queue_lifetime_hours`` of trying, ends
  it as failed. A crash between the relay's 250 and our record sends that one mail again.
- **Alerts.** Subscribes to channel pause/resume, sending degraded/recovered (mailed when
  degraded for more than ``degraded_alert_minutes``, and once when ok again), fan-out ends
  and the daemon's stop, and checks the review queue every few seconds; :mod:`.alerts` decides when to mail (its state
  is kept in the store, so a restart does not repeat what the operator knows).
- **Stop.** The part runs in the foreground: at a stop (SIGTERM, or a task that kept
  crashing, whose alert is queued just before) it sends what is due for at most
  ``stop_wait`` seconds, then returns; what is left goes after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from bridge.aio import first_of
from bridge.config import secret
from bridge.core.phone import mask_text
from bridge.events import (ChannelPaused, ChannelResumed, DaemonStopping, FanOutEnded,
                           SendingDegraded, SendingRecovered)
from bridge.logs import eta
from bridge.mailout import alerts as rules
from bridge.mailout.back import MailBack, review_link, utc
from bridge.mailout.relay import Relay, RelayAnswer, RelayError
from bridge.mailout.settings import MailOutSettings
from bridge.part import BasePart
from bridge.store.mailout import OutMail, QueuedMail

log = logging.getLogger("bridge.mailout")

STATE_KEY = "mailout:alerts"
BATCH = 20  # mails per SMTP session
BACKOFF_BASE = 2.0  # seconds before the first retry; doubles each time
BACKOFF_MAX = 300.0
REVIEW_EVERY = 5.0  # seconds between looks at the review queue
IDLE = 1.0  # seconds between looks at the queue (mails queued by other processes)


def backoff(attempts: int) -> float:
    """Seconds before the next try of a mail that failed ``attempts`` times before."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempts, 20)) * random.uniform(0.9, 1.1)


class MailOutPart(BasePart):
    """The ``[mail_out]`` part of the daemon (see the module doc)."""

    def __init__(self, settings: MailOutSettings, app: Any, back: MailBack):
        self.settings = settings
        self.app = app
        self.back = back
        self.store = app.store
        password = secret(settings.password_env, "mail_out.password_env") \
            if settings.password_env else None
        self.relay = Relay(settings, password)
        self.policy = rules.Policy(window=settings.alert_window_minutes * 60)
        try:
            saved = json.loads(self.store.state.get(STATE_KEY) or "{}")
        except ValueError:
            saved = {}
        self.states = rules.from_json(saved)
        self._wake = asyncio.Event()
        back.on_queued = self._wake.set
        _ = back.key  # read now: a store failing later must not hold back the stop alert
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._unsaved: list[QueuedMail] = []  # alerts the store could not take
        self._review_checked = 0.0
        self._review_items: dict[str, dict] = {}
        self._degraded: SendingDegraded | None = None  # sending degraded now (not yet told)
        ev = app.events
        ev.subscribe(ChannelPaused, self._channel_paused)
        ev.subscribe(ChannelResumed, self._channel_resumed)
        ev.subscribe(FanOutEnded, self._fan_out_ended)
        ev.subscribe(DaemonStopping, self._daemon_stopping)
        ev.subscribe(SendingDegraded, self._sending_degraded)
        ev.subscribe(SendingRecovered, self._sending_recovered)

    # -- status ------------------------------------------------------------------------------
    def describe(self) -> dict:
        counts = self.store.mailout.counts()
        return {"relay": self.settings.describe_relay(), "waiting": counts.get("pending", 0),
                "sent": self.sent, "failed": self.failed, "last_error": self.last_error,
                "alerts": ",".join(k for k, c in sorted(self.states.items()) if c.active) or "none"}

    # -- the task ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        log.info("mail-out: via %s; receipts %s; alerts to %s",
                 self.settings.describe_relay(),
                 "to listed forwarders" if self.settings.receipts else "off",
                 ", ".join(self.settings.operators) or "nobody (no operators)")
        paused = self.app.channel.paused  # what is true at start (the state may be older)
        self._observe("channel", bool(paused), (paused,) if paused else (), time.time())
        sending: asyncio.Future | None = None
        while not stop.is_set():
            # A slow relay must not hold up a stop: the send races the stop, and what is
            # under way gets the stop's bounded wait.
            sending = asyncio.ensure_future(self._send_due())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([sending, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not sending.done():
                break
            more = sending.result()
            self._tick(time.time())
            if not more:
                await self._sleep(stop)
        await self._flush_at_stop(sending if sending and not sending.done() else None)

    async def _sleep(self, stop: asyncio.Event) -> None:
        now = time.time()
        timeout = IDLE
        for due in (self.store.mailout.next_due(), rules.next_due(self.states, self.policy)):
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
        self._wake.clear()
        await first_of(self._wake.wait(), stop.wait(), timeout=timeout)

    async def _flush_at_stop(self, under_way: asyncio.Future | None) -> None:
        """Finish the send under way, send the alerts the store could not take, then what
        is due in the queue: for at most ``stop_wait`` seconds in all."""
        try:
            async with asyncio.timeout(self.settings.stop_wait):
                if under_way is not None:
                    await under_way
                await self._send_unsaved()
                while self.store.mailout.due(1):
                    if not await self._send_due():
                        break
        except TimeoutError:
            pass
        except Exception as e:  # e.g. the store failing: the reason we stop
            log.error("mail-out: stopping: %s", e)
        finally:
            if under_way is not None and not under_way.done():
                under_way.cancel()
                await asyncio.gather(under_way, return_exceptions=True)
        with contextlib.suppress(Exception):
            left = self.store.mailout.counts().get("pending", 0)
            if left:
                log.warning("mail-out: stopping with %d mails queued; they go after the"
                            " restart", left)
        for m in self._unsaved:
            log.error("mail-out: alert to %s not sent (the store could not keep it either)",
                      ", ".join(m.recipients))

    async def _send_unsaved(self) -> None:
        while self._unsaved:
            m = self._unsaved[0]
            answer = await self.relay.send_now(m.sender, m.recipients, m.data)
            if not answer.ok:
                log.error("mail-out: alert to %s not sent: %s", ", ".join(m.recipients),
                          answer.text)
                return
            self._unsaved.pop(0)
            self.sent += 1
            log.info("mail-out: alert to %s sent: %s", ", ".join(m.recipients), answer.text)

    # -- sending -----------------------------------------------------------------------------
    async def _send_due(self) -> bool:
        """Send one batch of due mails; True when every mail of a full batch went (more
        may be due)."""
        batch = self.store.mailout.due(BATCH)
        if not batch:
            return False
        now = time.time()
        lifetime = self.settings.queue_lifetime_hours * 3600
        live = []
        for m in batch:
            if now - m.created_at > lifetime:
                self._failed(m, f"gave up after {self.settings.queue_lifetime_hours:g} h"
                                " (queue_lifetime_hours) without the relay taking it")
            else:
                live.append(m)
        if not live:
            return True
        try:
            smtp = await self.relay.connect()
        except RelayError as e:
            for m in live:
                self._retry(m, e.answer)
            self._log_waiting(e.answer, live)
            return False
        all_sent = True
        try:
            for m in live:
                answer = await self.relay.send(smtp, m.sender, m.recipients, m.data)
                if answer.ok:
                    self.sent += 1
                    self.store.mailout.mark_sent(m.id, answer.text)
                    log.info("mail-out: %s %d to %s sent: %s", m.kind, m.id,
                             ", ".join(m.recipients), answer.text)
                    continue
                all_sent = False
                if answer.permanent:
                    self._failed(m, answer.text)
                else:
                    self._retry(m, answer)
                    self._log_waiting(answer, [m])
                    if answer.code is None:
                        break  # the connection is gone: the rest waits its turn
        except BaseException:
            smtp.close()  # cancelled at a stop, or the store failed: no QUIT
            raise
        with contextlib.suppress(Exception):
            await self.relay.close(smtp)
        return all_sent and len(batch) == BATCH

    def _retry(self, m: OutMail, answer: RelayAnswer) -> None:
        self.last_error = answer.text
        self.store.mailout.mark_retry(m.id, time.time() + backoff(m.attempts), answer.text)

    def _failed(self, m: OutMail, why: str) -> None:
        self.failed += 1
        self.last_error = why
        self.store.mailout.mark_failed(m.id, why)
        log.error("mail-out: %s %d to %s not sent, for good: %s", m.kind, m.id,
                  ", ".join(m.recipients), why)

    def _log_waiting(self, answer: RelayAnswer, mails: list[OutMail]) -> None:
        waiting = self.store.mailout.counts().get("pending", 0)
        nxt = self.store.mailout.next_due()
        log.warning("mail-out: relay %s: %s; %d mails wait, next try in %s",
                    self.settings.describe_relay(), answer.text, waiting,
                    eta((nxt or time.time()) - time.time()))

    # -- alerts ------------------------------------------------------------------------------
    def _channel_paused(self, e: ChannelPaused) -> None:
        self._observe("channel", True, (e.reason,), e.at)

    def _channel_resumed(self, e: ChannelResumed) -> None:
        self._observe("channel", False, (), e.at)

    def _sending_degraded(self, e: SendingDegraded) -> None:
        self._degraded = e  # mailed by _tick once it has lasted degraded_alert_minutes
        self._tick(e.at)

    def _sending_recovered(self, e: SendingRecovered) -> None:
        # an all-clear only when the operator was told (observing "not active" otherwise
        # changes nothing); also after a restart: the first good window clears it
        self._degraded = None
        self._observe("sending", False, (), e.at)

    def _fan_out_ended(self, e: FanOutEnded) -> None:
        share = self.settings.fanout_failure_share
        if not e.recipients or e.failed / e.recipients <= share:
            return
        facts = {"id": e.notice_id, "abonnees": e.recipients, "mislukt": e.failed,
                 "aandeel": percent(e.failed / e.recipients),
                 "redenen": [{"reden": mask_text(r), "aantal": n} for r, n in e.failures]}
        self._apply(*rules.occurred(self.states, "fanout", facts, e.at, self.policy))

    def _daemon_stopping(self, e: DaemonStopping) -> None:
        if e.fatal:
            self._apply(*rules.occurred(self.states, "stopping",
                                        {"reden": e.reason, "sinds": e.at}, e.at, self.policy))

    def _observe(self, key: str, active: bool, detail: tuple[str, ...], now: float) -> None:
        self._apply(*rules.observe(self.states, key, active, detail, now, self.policy))

    def _tick(self, now: float) -> None:
        d = self._degraded
        if d is not None and now - d.since >= self.settings.degraded_alert_minutes * 60:
            # the reason as it was when it began: the same detail, so no new mail or write
            self._observe("sending", True, (d.reason, str(d.since)), now)
        if now - self._review_checked >= REVIEW_EVERY:
            self._review_checked = now
            cutoff = now - self.settings.review_wait_minutes * 60
            items = self.store.mailout.open_reviews_before(cutoff)
            self._review_items = {str(i["id"]): i for i in items}
            self._observe("review", bool(items), tuple(str(i["id"]) for i in items), now)
        self._apply(*rules.tick(self.states, now, self.policy))

    def _apply(self, states: dict, alerts: list[rules.Alert]) -> None:
        changed = states != self.states
        self.states = states
        for a in alerts:
            try:
                self._mail(a)
            except Exception:  # never lose the state change over one mail
                log.exception("mail-out: could not queue the %s alert", a.key)
        if changed:
            try:
                self.store.state.set(STATE_KEY, json.dumps(rules.to_json(states)))
            except Exception as e:
                log.error("mail-out: could not save the alert state: %s", e)

    def _mail(self, a: rules.Alert) -> None:
        """Queue the mail for an alert decided by :mod:`.alerts`."""
        if a.key == "channel":
            kanaal = self.app.cfg.channel.type
            wachtend = self.store.deliveries.pending()
            if a.kind == "summary":
                self.back.queue_alert("alert_flapping.j2", {
                    "kanaal": kanaal, "keer": a.flips, "vanaf": utc(a.flips_since),
                    "gepauzeerd": a.active, "reden": a.detail[0] if a.detail else ""})
            elif a.kind == "raised":
                reason = a.detail[0] if a.detail else "onbekend"
                trouble = rules.pause_sort(kanaal, reason)
                self.back.queue_alert("alert_paused.j2", {
                    "kanaal": kanaal, "reden": reason, "sinds": utc(a.since),
                    "soort": trouble.sort, "code": trouble.code, "wachtend": wachtend})
            else:
                duur = a.since - a.prev_since if a.prev_since else 0
                self.back.queue_alert("alert_resumed.j2", {
                    "kanaal": kanaal, "was": a.was[0] if a.was else "", "sinds": utc(a.since),
                    "duur": _duration(duur) if duur > 0 else "", "wachtend": wachtend})
        elif a.key == "sending":
            kanaal = self.app.cfg.channel.type
            wachtend = self.store.deliveries.pending()
            if a.active:  # raised (or a summary of flapping that ends degraded)
                since = float(a.detail[1]) if len(a.detail) > 1 else a.since
                self.back.queue_alert("alert_degraded.j2", {
                    "kanaal": kanaal, "reden": a.detail[0] if a.detail else "onbekend",
                    "sinds": utc(since), "duur": _duration(time.time() - since),
                    "wachtend": wachtend, "wissels": a.flips if a.kind == "summary" else 0})
            else:
                began = float(a.was[1]) if len(a.was) > 1 else a.prev_since
                duur = a.since - began if began else 0
                self.back.queue_alert("alert_sending_ok.j2", {
                    "kanaal": kanaal, "was": a.was[0] if a.was else "", "sinds": utc(a.since),
                    "duur": _duration(duur) if duur > 0 else "", "wachtend": wachtend})
        elif a.key == "review":
            url = self.back.console_url
            items = [{"id": int(i), "reden": r["reason"], "sinds": utc(r["created_at"]),
                      "link": review_link(url, int(i))}
                     for i in a.detail if (r := self._review_items.get(i))]
            if items:
                self.back.queue_alert("alert_review.j2", {
                    "items": items, "nieuw": len(a.new),
                    "wachttijd": f"{self.settings.review_wait_minutes:g}"})
        elif a.key == "fanout":
            self.back.queue_alert("alert_fanout.j2", {
                "meldingen": list(a.events),
                "grens": percent(self.settings.fanout_failure_share)})
        elif a.key == "stopping":
            facts = a.events[0] if a.events else {}
            self.back.queue_alert("alert_stopping.j2", {
                "reden": facts.get("reden", ""), "sinds": utc(facts.get("sinds"))},
                keep=self._unsaved.append)


def percent(share: float) -> str:
    """A share as a Dutch percentage without the sign: 0.218 -> "21,8", 0.5 -> "50"."""
    return f"{100.0 * share:.1f}".rstrip("0").rstrip(".").replace(".", ",")


def _duration(seconds: float) -> str:
    """Dutch words for a duration: "40 seconden", "25 minuten", "3 uur en 5 minuten"."""
    s = int(seconds)
    if s < 120:
        return f"{s} seconden"
    m = s // 60
    if m < 120:
        return f"{m} minuten"
    h, m = divmod(m, 60)
    return f"{h} uur" + (f" en {m} minuten" if m else "")
