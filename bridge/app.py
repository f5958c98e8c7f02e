"""The supervisor: builds the parts from config and runs them in one TaskGroup.

Parts and their order of stopping (SIGTERM/SIGINT):

1. intake (SMTP, and IMAP when configured) stops accepting;
2. the mail processor finishes the mail in hand;
3. the dispatcher finishes the sends under way;
4. then the background parts (the channel's connection and inbound side, the web server,
   status and retention upkeep) are cancelled, and the daemon exits 0.

A crashing task is logged and restarted with backoff; one that keeps crashing (more than
five times in five minutes) brings the daemon down cleanly: the same ordered stop as for
SIGTERM (the sends under way finish), then exit status 1.

A task that stopped because the store cannot be written now (a full disk, an I/O error:
:func:`bridge.store.write_problem`) did not crash: it waits for the store
(:class:`bridge.storehealth.StoreHealth`: a probe write after 1 s, doubling to 10 s, one
WARNING a minute) and starts again once writes work, without counting towards the limit.
Only a store that cannot be written at start stops the daemon (exit 78, ``bridge run``).

Optional parts (``[imap]``, ``[web]``, ``[mail_out]``) are modules with
``parse_config(section, base)`` and ``build(settings, app) -> Part``
(:class:`bridge.part.PartModule`); a :class:`bridge.part.Part` is started before the tasks
run, runs in the foreground or the background, and is stopped when the start-up fails; see
:data:`bridge.config.OPTIONAL_PARTS`. The SMTP intake is a Part too.

While it runs, the daemon holds an flock on ``<store>.run.lock`` (:mod:`bridge.runlock`),
so ``bridge status`` sees a daemon killed with SIGKILL at once, and writes its status
(parts, and how sending goes: :mod:`bridge.sendhealth`) to the store every HEARTBEAT
seconds.

The App implements the ports of :mod:`bridge.port` through small parts it owns: the
intakes (SMTP, and IMAP through ``build``) get :attr:`App.mailroom` (IntakePort), the channel :attr:`App.switchboard`
(ChannelPort); the web server reads the App itself as its StatusPort.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import time
from typing import Any, Awaitable, Callable, Mapping, cast

from bridge import runlock
from bridge.aio import first_of
from bridge.channels.base import Channel, SendResult
from bridge.config import Config, OPTIONAL_PARTS, channel_module
from bridge.events import DaemonStopping, EventBus
from bridge.inbound import InboundHandler
from bridge.mailroom import Mailroom
from bridge.outbox import Counters, Dispatcher
from bridge.part import Part, PartModule
from bridge.analysis import make_renderer
from bridge.pipeline import Pipeline
from bridge.port import Health, Sending
from bridge.review import ReviewDesk
from bridge.sendhealth import SendHealth, overall
from bridge.store import Delivery, Store, StoreCounts
from bridge.storehealth import StoreHealth
from bridge.switchboard import Switchboard

log = logging.getLogger("bridge.app")

STATUS_KEY = "daemon:status"
HEARTBEAT = 5.0  # seconds between status writes (and send-health ticks)


class App:
    """All parts, wired. The CLI uses the same object for one-shot commands."""

    # A task that crashes more than RESTART_LIMIT times in RESTART_WINDOW seconds stops the daemon.
    RESTART_LIMIT = 5
    RESTART_WINDOW = 300.0

    @staticmethod
    def restart_delay(crashes: int) -> float:
        """Seconds to wait before restarting a task after its n-th recent crash."""
        return min(30.0, 2.0 ** crashes)

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.store = Store.open(cfg.store.path)
        self.renderer = make_renderer(cfg)
        self.mail_event = asyncio.Event()
        # bridge.events: what happened, for mail back, the console and health
        self.events = EventBus()
        # whether the store takes writes; tasks wait on it while it does not (disk full)
        self.store_health = StoreHealth(self.store.db.probe_write, path=str(cfg.store.path))
        # bridge.port.IntakePort for the intakes: durable commit, then the processor wakes
        self.mailroom = Mailroom(self.store, on_stored=self.mail_stored,
                                 on_unwritable=self.store_health.unwritable)
        self.pipeline = Pipeline(cfg, self.store, self.renderer, on_queued=self.wake_dispatcher,
                                 events=self.events)
        # the review queue and the operator's own message (CLI and console)
        self.review = ReviewDesk(cfg, self.store, self.renderer, on_queued=self.wake_dispatcher,
                                 events=self.events)
        self.inbound = InboundHandler(cfg, self.store, self.renderer, on_queued=self.wake_dispatcher)
        # bridge.port.ChannelPort for the channel: inbound messages, receipts, its state
        self.switchboard = Switchboard(
            self.store, self.renderer, max_age_hours=cfg.dispatch.max_age_hours,
            handle_inbound=self.inbound.take, unreachable=self.inbound.unreachable,
            commit_sends=self._commit_sends, on_unwritable=self.store_health.unwritable,
            on_written=self.store_health.wrote)
        self._channel: Channel | None = None
        self._dispatcher: Dispatcher | None = None
        self.parts: dict[str, Part] = {}
        self.started_at = time.time()
        self._stop: asyncio.Event | None = None
        self.fatal: str | None = None  # why a task that kept crashing stopped the daemon
        self._run_lock = None  # bridge.runlock: held while the daemon runs
        # Called as listener(delivery, SendResult, latency_seconds) after each successful
        # send (e.g. the metrics of bridge.web).
        self.send_listeners: list[Callable[[Delivery, SendResult, float], None]] = []
        # Mail back queues receipts in every process (a review approved with the CLI too);
        # the daemon's [mail_out] part sends them (bridge.mailout).
        self.mailback = None
        if cfg.mail_out is not None:
            from bridge.mailout.back import MailBack

            self.mailback = MailBack(cfg.mail_out, cfg, self.store, self.renderer,
                                     self.events)

    # -- lazily built parts (one-shot CLI commands need only some) ----------------------------------
    @property
    def channel(self) -> Channel:
        if self._channel is None:
            mod = channel_module(self.cfg.channel.type)
            self._channel = mod.create(self.cfg.channel.settings, self.switchboard)
        return self._channel

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(self.cfg.dispatch, self.store, self.channel,
                                          on_unreachable=self.inbound.unreachable,
                                          on_sent=self._on_sent, events=self.events,
                                          health=SendHealth(self.cfg.health, self.events))
        return self._dispatcher

    def wake_dispatcher(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.wake()

    def _on_sent(self, delivery: Delivery, result: SendResult, latency: float) -> None:
        for listener in self.send_listeners:
            listener(delivery, result, latency)

    def _commit_sends(self) -> None:
        """Commit the sends recorded but not yet committed (a receipt may overtake them)."""
        if self._dispatcher is not None:
            self._dispatcher.flush()

    def mail_stored(self, mail_id: int) -> None:
        self.store_health.wrote()
        self.mail_event.set()

    # -- the daemon -----------------------------------------------------------------------------------
    async def run(self) -> int:
        cfg = self.cfg
        stop = self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig, stop)

        # A store this user cannot write stops the start (exit 78), not a crash loop later;
        # a full one starts paused (it resumes by itself once space returns).
        full = self.store.db.check_writable()
        if full is not None:
            self.store_health.unwritable(full)
        self.dispatcher.acquire()
        try:
            # held for the daemon's life: `bridge status` sees a SIGKILL at once (runlock)
            self._run_lock = runlock.hold(cfg.store.path)
            smtp = await self._start_parts()
        except BaseException:
            # e.g. a port in use: undo what did start (listeners, the dispatcher lock)
            for part in self.parts.values():
                with contextlib.suppress(Exception):
                    await part.stop()
            self.dispatcher.release()
            self._release_run_lock()
            raise

        log.info("bridge: running (channel %s, %d subscribers, store %s)", cfg.channel.type,
                 self.store.subscribers.count(), cfg.store.path)
        try:
            async with asyncio.TaskGroup() as tg:
                background = [
                    tg.create_task(self._supervise("channel", self.channel.run, stop)),
                    tg.create_task(self._supervise("upkeep", lambda: self._upkeep(stop), stop)),
                ]
                foreground = []
                if smtp:
                    foreground.append(tg.create_task(smtp.run(stop)))
                for name, part in self.parts.items():
                    if name == "smtp":
                        continue
                    target = background if part.background else foreground
                    target.append(tg.create_task(
                        self._supervise(name, lambda p=part: p.run(stop), stop)))
                foreground.append(tg.create_task(
                    self._supervise("processor", lambda: self._processor(stop), stop)))
                foreground.append(tg.create_task(
                    self._supervise("dispatcher", lambda: self.dispatcher.run(stop), stop)))
                await asyncio.wait(foreground)
                for t in background:
                    t.cancel()
        finally:
            self._write_status(running=False)
            self.dispatcher.release()
            self._release_run_lock()
            if self._channel is not None:
                await self._channel.close()
            self.store.close()
        if self.fatal:
            log.critical("bridge: stopped because %s", self.fatal)
            return 1
        log.info("bridge: stopped")
        return 0

    async def _start_parts(self) -> Part | None:
        """Build the optional parts and bind what listens, before any task runs, so that a
        port in use fails fast. Returns the SMTP intake, or None."""
        cfg = self.cfg
        for name, settings in cfg.parts().items():
            mod = cast(PartModule, importlib.import_module(OPTIONAL_PARTS[name].split(":")[0]))
            part = self.parts[name] = mod.build(settings, self)
            await part.start()  # e.g. the web server binds now
        if not cfg.smtp.enabled:
            return None
        from bridge.intake.smtp import SmtpIntake

        smtp = SmtpIntake(cfg.smtp, cfg.senders, self.mailroom)
        self.parts["smtp"] = smtp
        await smtp.start()
        return smtp

    def request_stop(self) -> None:
        """Stop the daemon as SIGTERM does (for embedding and tests)."""
        if self._stop is not None:
            self._stop.set()

    def _on_signal(self, sig: signal.Signals, stop: asyncio.Event) -> None:
        if stop.is_set():
            log.warning("bridge: %s again; still finishing sends under way", sig.name)
            return
        log.info("bridge: %s received; stopping intake, finishing sends under way", sig.name)
        self.events.publish(DaemonStopping(reason=sig.name))
        stop.set()

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[Any]],
                         stop: asyncio.Event) -> None:
        crashes: list[float] = []
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.store_health.failed(name, e) is not None:
                    # The store cannot be written now (disk full): a pause, not a crash.
                    # Nothing to finish at a stop: the store takes nothing anyway.
                    if not await self.store_health.wait_writable(name, stop):
                        return
                    continue
                t = time.monotonic()
                crashes = [c for c in crashes if t - c < self.RESTART_WINDOW] + [t]
                log.exception("bridge: task %s crashed (%d in %g s)", name, len(crashes),
                              self.RESTART_WINDOW)
                if len(crashes) > self.RESTART_LIMIT:
                    # Not an exception into the TaskGroup: that would cancel the sends under
                    # way. Stop the way SIGTERM does, and exit 1 afterwards.
                    self.fatal = f"task {name} keeps crashing: {type(e).__name__}: {e}"
                    log.critical("bridge: %s; stopping", self.fatal)
                    self.events.publish(DaemonStopping(reason=self.fatal, fatal=True))
                    stop.set()
                    return
                if stop.is_set():
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.restart_delay(len(crashes)))
                if stop.is_set() and name not in ("dispatcher", "processor"):
                    return

    async def _processor(self, stop: asyncio.Event) -> None:
        """Process stored mails: woken by intakes, and polling for mails other processes stored."""
        while True:
            self.mail_event.clear()
            while ids := self.store.mails.unprocessed(100):
                for mail_id in ids:
                    # raises when the store cannot be written: the supervisor pauses us
                    await self.pipeline.process_async(mail_id)
                    self.store_health.wrote()
                    self.mailroom.outcome_given()
                    # One mail at a time: SMTP, sends and signals run in between, and a
                    # stop finishes the mail in hand (the rest stays stored for the restart).
                    await asyncio.sleep(0)
                    if stop.is_set():
                        return
            if stop.is_set():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first_of(self.mail_event.wait(), stop.wait()),
                                       self.cfg.dispatch.poll_interval)

    async def _upkeep(self, stop: asyncio.Event) -> None:
        last_purge = 0.0
        while True:
            if time.time() - last_purge > 3600:
                last_purge = time.time()
                purged: dict[str, int] = {}
                for purged in self.store.purge_steps(self.cfg.store.retention_days):
                    await asyncio.sleep(0)  # sends, intake and signals between batches
                if any(purged.values()):
                    log.info("retention: purged %s", purged)
            if self._dispatcher is not None:
                self._dispatcher.health.tick()  # a state changes while nothing is sent too
            self._write_status(running=True)
            health = self.store_health
            if health.problem is not None and not health.waiting:
                # only an edge met the full store (a 451, a webhook's 500): nobody waits
                # on it, so look here whether it takes writes again
                why = health.probe()
                if why is None:
                    health.wrote()
            await asyncio.sleep(HEARTBEAT)

    # -- status ------------------------------------------------------------------------------------
    def describe(self) -> dict:
        parts = {name: part.describe() for name, part in self.parts.items()}
        parts["channel"] = self.channel.describe()
        d = self._dispatcher
        if d:
            parts["dispatcher"] = {"rate": d.rate, "sent": d.counters.sent,
                                   "failed": d.counters.failed, "retried": d.counters.retried}
        return parts

    # -- bridge.port.StatusPort: what the web server and the metrics read ----------------------
    def health(self) -> Health:
        store_ok = self.store.db.ping()
        try:
            channel = self.channel
            paused, state = channel.paused, channel.describe()
        except Exception as e:  # noqa: BLE001 - /healthz answers, whatever the channel does
            paused, state = f"channel error: {e}", {"state": "error"}
        depth = None
        if store_ok:
            with contextlib.suppress(Exception):
                depth = self.store.deliveries.pending()
        return Health(store_ok=store_ok, paused=paused, channel=state, queue_depth=depth,
                      uptime_s=round(time.time() - self.started_at, 1),
                      store_problem=self.store_health.problem)

    def sending(self, health: Health | None = None) -> Sending:
        h = health if health is not None else self.health()
        d = self._dispatcher
        judged = d.health.judge() if d is not None else None
        operator = None
        if h.store_ok:
            with contextlib.suppress(Exception):
                p = self.store.control.paused()
                operator = p.describe() if p is not None else None
        v = overall(judged, store_ok=h.store_ok, store_problem=h.store_problem,
                    channel_paused=h.paused, operator_paused=operator)
        return Sending(state=v.state, reason=v.reason, since=v.since, urgent=v.urgent,
                       rate=d.rate if d is not None else None,
                       retrying=judged.retrying if judged else 0,
                       throttled=judged.throttled if judged else 0)

    def store_counts(self) -> StoreCounts:
        return self.store.read_counts()

    def mail_outcomes(self) -> Mapping[str, int]:
        return self.pipeline.outcomes

    def inbound_effects(self) -> Mapping[str, int]:
        return self.inbound.counts

    def send_totals(self) -> Counters | None:
        return self._dispatcher.counters if self._dispatcher is not None else None

    def _release_run_lock(self) -> None:
        f, self._run_lock = self._run_lock, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()  # closing lets go of the flock

    def _write_status(self, running: bool) -> None:
        doc: dict[str, Any] = {"running": running, "updated_at": time.time(),
                               "started_at": self.started_at}
        with contextlib.suppress(Exception):
            doc["parts"] = self.describe()
        with contextlib.suppress(Exception):
            h = self.health()
            s = self.sending(h)
            doc["sending"] = {"state": s.state, "reason": s.reason, "since": s.since,
                              "urgent": s.urgent, "rate": s.rate, "retrying": s.retrying,
                              "throttled": s.throttled, "queue": h.queue_depth}
        with contextlib.suppress(Exception):
            self.store.state.set(STATUS_KEY, json.dumps(doc, default=str))

    def daemon_status(self) -> dict | None:
        """The daemon's last status (None: never ran on this store). ``running`` comes from
        the run lock (:mod:`bridge.runlock`) when it can be tried: a daemon killed with
        SIGKILL is seen as stopped at once, whatever its last heartbeat says; without a
        lock file (an older daemon) from the heartbeat (none for over 30 s: stopped)."""
        raw = self.store.state.get(STATUS_KEY)
        live = runlock.daemon_running(self.cfg.store.path)
        if not raw:
            return None if not live else {"running": True, "updated_at": None,
                                          "note": "running; no status written yet"}
        doc = json.loads(raw)
        if live is not None:
            if doc.get("running") and not live:
                doc["note"] = "the daemon stopped without saying so (killed?); not running"
            doc["running"] = live
        elif doc.get("running") and time.time() - doc.get("updated_at", 0) > 30:
            doc["running"] = False
            doc["note"] = "no heartbeat for over 30 s: the daemon is not running"
        return doc
