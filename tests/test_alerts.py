"""Alerts to the operators (issue 13): when to mail (one mail per condition and change,
flapping summarised), and, end to end, the Cloud channel paused by a fake Graph API's error
190 gives exactly one alert and one "resumed" mail; a fan-out with too many failures, a
review item waiting too long and a daemon stopping on a crashing task are mailed too."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from daemon import Daemon, bridge
from fake_graph import PHONE_NUMBER_ID, FakeGraph
from helpers import free_port, sample, sample_now, wait_until, write_config
from smtp_relay import SmtpRelay
from test_receipts import FWD, forward, NO_TICKET, send

from bridge.app import App
from bridge.config import load
from bridge.events import ChannelPaused, ChannelResumed, FanOutEnded
from bridge.mailout import alerts as rules
from bridge.mailout.alerts import Condition, Policy

OPERATOR = "beheer@cbgconnect.example"
W = Policy(window=600.0, per_window=2)


def mails(*steps):
    """Run (kind, now, *args) steps through the state machine; the alerts of each step."""
    states: dict = {}
    out = []
    for kind, now, *args in steps:
        if kind == "observe":
            states, alerts = rules.observe(states, args[0], args[1], args[2], now, W)
        elif kind == "occurred":
            states, alerts = rules.occurred(states, args[0], args[1], now, W)
        else:
            states, alerts = rules.tick(states, now, W)
        out.append([(a.key, a.kind) for a in alerts])
        # what the store keeps: the states survive a restart
        states = rules.from_json(json.loads(json.dumps(rules.to_json(states))))
    return out, states


# -- the state machine (pure) ------------------------------------------------------------------
def test_one_mail_per_change_of_the_channel():
    out, _ = mails(("observe", 0, "channel", True, ("190 token expired",)),
                   ("observe", 1, "channel", True, ("190 token expired",)),  # seen again
                   ("observe", 2, "channel", True, ("token: not set",)),  # another reason
                   ("tick", 100),
                   ("observe", 300, "channel", False, ()))
    assert out == [[("channel", "raised")], [], [], [], [("channel", "cleared")]]


def test_a_flapping_channel_is_summarised():
    steps = [("observe", 0, "channel", True, ("mqtt: broker unreachable",)),
             ("observe", 10, "channel", False, ())]
    for i in range(5):
        steps += [("observe", 20 + 20 * i, "channel", True, ("mqtt: broker unreachable",)),
                  ("observe", 30 + 20 * i, "channel", False, ())]
    steps += [("tick", 500), ("tick", 601), ("tick", 602), ("tick", 2000)]
    out, states = mails(*steps)
    assert out[:2] == [[("channel", "raised")], [("channel", "cleared")]]
    assert all(o == [] for o in out[2:-3])  # ten changes held: the window's two mails went
    assert out[-3] == [("channel", "summary")] and out[-2:] == [[], []]
    c = states["channel"]
    assert not c.active and not c.told_active and c.flips == 0


def test_a_short_pause_before_the_mail_could_go_is_still_told():
    out, _ = mails(("observe", 0, "channel", True, ("a",)), ("observe", 1, "channel", False, ()),
                   ("observe", 2, "channel", True, ("a",)), ("observe", 3, "channel", False, ()),
                   ("tick", 700))
    assert out == [[("channel", "raised")], [("channel", "cleared")], [], [],
                   [("channel", "summary")]]


def test_review_waiting_new_items_are_news_emptying_is_not():
    out, states = mails(("observe", 0, "review", True, ("1",)),
                        ("observe", 5, "review", True, ("1", "2")),
                        ("observe", 6, "review", True, ("2",)),
                        ("observe", 7, "review", False, ()),
                        ("observe", 9, "review", True, ("3",)))
    assert out == [[("review", "raised")], [("review", "raised")], [], [], []]
    assert states["review"].active  # the window's two mails went: item 3 waits for a tick
    _, later = rules.tick(states, 601, W)
    assert [(a.kind, a.detail, a.new) for a in later] == [("raised", ("3",), ("3",))]


def test_events_beyond_the_window_are_held_and_summarised_but_a_stop_never_waits():
    out, states = mails(*[("occurred", i, "fanout", {"id": i}) for i in range(4)],
                        ("occurred", 5, "stopping", {"reden": "x"}),
                        ("occurred", 6, "stopping", {"reden": "y"}),
                        ("occurred", 7, "stopping", {"reden": "z"}))
    assert out == [[("fanout", "event")], [("fanout", "event")], [], [],
                   [("stopping", "event")], [("stopping", "event")], [("stopping", "event")]]
    assert rules.next_due(states, W) == 600.0
    later, alerts = rules.tick(states, 600.5, W)
    assert [(a.kind, [e["id"] for e in a.events]) for a in alerts] == [("events", [2, 3])]
    assert later["fanout"].held == ()


def test_state_from_the_store_tolerates_bad_entries():
    assert rules.from_json({"channel": {"active": True, "mails": ["x"]}, "other": {},
                            "review": []}) == {}
    c = rules.from_json({"channel": {"active": True, "detail": ["a"]}})["channel"]
    assert c == Condition(active=True, detail=("a",))


@pytest.mark.parametrize("reason,sort", [
    ("190 Error validating access token: Session has expired.", "token"),
    ("token: environment variable BRIDGE_CLOUD_TOKEN is not set", "token"),
    ("368 Temporarily blocked for policies violations", "policy"),
    ("131031 Account has been locked", "policy"),
    ("mqtt: broker unreachable (Connection refused)", "broker"),
    ("something else", "other"),
])
def test_pause_reasons_choose_the_advice(reason, sort):
    assert rules.pause_sort("cloud", reason).sort == sort


# -- end to end --------------------------------------------------------------------------------
async def until(cond, timeout: float = 20.0, what: str = "condition"):
    """Wait without blocking the loop (a fake Graph API may be serving in it)."""
    if not await wait_until(cond, timeout):
        raise TimeoutError(f"{what} not met after {timeout} s")


def cloud_config(tmp_path, fake: FakeGraph, relay: SmtpRelay, *, smtp_port: int | None = None,
                 extra: str = ""):
    token = tmp_path / "token"
    return token, write_config(
        tmp_path, smtp=smtp_port is not None, smtp_port=smtp_port, channel="cloud",
        extra=relay.config(operators=(OPERATOR,), extra=extra), channel_extra=f"""
        [channel.cloud]
        phone_number_id = "{PHONE_NUMBER_ID}"
        base_url = "{fake.base_url}"
        token_file = "{token}"
        timeout = 5
        probe_interval = 0.2
        min_interval = 0

        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """)


def alerts_in(relay: SmtpRelay) -> list:
    return [m for m in relay.messages if m.rcpt_tos == [OPERATOR]]


async def test_token_expiry_gives_one_alert_and_one_resumed_mail(tmp_path):
    relay = SmtpRelay().start()
    fake = FakeGraph(token="renewed-token")
    await fake.start()
    token, cfg = cloud_config(tmp_path, fake, relay)
    token.write_text("expired-token\n")  # every send answers 190
    numbers = [f"+3161111111{i}" for i in range(3)]
    await asyncio.to_thread(bridge, cfg, "subscribers", "add", *numbers)
    (tmp_path / "m.eml").write_bytes(sample_now("01"))
    await asyncio.to_thread(bridge, cfg, "ingest", str(tmp_path / "m.eml"))  # a notice to send
    d = Daemon(cfg).start(wait=False)
    try:
        await until(lambda: alerts_in(relay), what="the pause alert")
        [paused] = alerts_in(relay)
        m = paused.message
        assert m["To"] == OPERATOR and m["Auto-Submitted"] == "auto-generated"
        assert str(m["Subject"]) == "Storingsbridge CBG Connect: verzenden gestopt (cloud)"
        assert "Reden: 190 " in paused.body
        assert "toegangstoken van de WhatsApp Cloud API is verlopen" in paused.body  # what to do
        assert "token_file" in paused.body
        await asyncio.sleep(2.0)  # paused a while: probes and retries fail, no more mail
        assert len(relay.messages) == 1
        token.write_text("renewed-token\n")  # the operator puts the new token in place
        await until(lambda: len(alerts_in(relay)) == 2, what="the resumed mail")
        resumed = alerts_in(relay)[1]
        assert str(resumed.message["Subject"]) == \
            "Storingsbridge CBG Connect: verzenden hervat (cloud)"
        assert "Het was gestopt omdat: 190 " in resumed.body
        assert resumed.message["Message-ID"] != m["Message-ID"]
        await until(lambda: len(fake.accepted()) == 3, what="the notices sent")
        await asyncio.sleep(1.0)
        assert len(relay.messages) == 2  # exactly one alert and one resumed mail
    finally:
        code = await asyncio.to_thread(d.stop)
        await fake.stop()
        relay.stop()
    assert code == 0, d.log()
    assert "mail-out: alert queued" in d.log()


async def test_a_fan_out_with_many_failures_alerts_and_tells_the_forwarder(tmp_path):
    relay = SmtpRelay().start()
    fake = FakeGraph()
    await fake.start()
    port = free_port()
    token, cfg = cloud_config(tmp_path, fake, relay, smtp_port=port,
                              extra="fanout_failure_share = 0.25\n")
    token.write_text(fake.token)
    numbers = [f"+3162222222{i}" for i in range(4)]
    for n in numbers[:2]:
        fake.script(n, 131026)  # undeliverable: failed for good
    await asyncio.to_thread(bridge, cfg, "subscribers", "add", *numbers)
    d = Daemon(cfg, port=port)
    await asyncio.to_thread(d.start)
    try:
        await asyncio.to_thread(send, port, sample_now("06"))
        await until(lambda: len(relay.messages) >= 3, what="receipt, follow-up and alert")
        await asyncio.sleep(0.5)
    finally:
        code = await asyncio.to_thread(d.stop)
        await fake.stop()
        relay.stop()
    assert code == 0, d.log()
    assert len(relay.messages) == 3
    receipt, followup = [m for m in relay.messages if m.rcpt_tos == [FWD]]
    [alert] = alerts_in(relay)
    assert "melding 1 gaat naar 4 abonnees" in receipt.body
    assert followup.message["References"].split()[-1] == receipt.message["Message-ID"]
    assert "niet bij iedereen aangekomen: 2 van de 4 berichten zijn mislukt" in followup.body
    assert "- 2 x 131026" in followup.body
    assert str(alert.message["Subject"]) == \
        "Storingsbridge CBG Connect: melding 1: 2 van 4 berichten mislukt"
    assert "(50%, meer dan de grens van 25%)" in alert.body
    for m in relay.messages:  # numbers never leave in a mail
        assert not any(n[3:] in m.data.decode() for n in numbers)


# -- in process: review waiting, flapping, a daemon that stops ----------------------------------
def app_with_relay(tmp_path, relay: SmtpRelay, extra: str = "") -> App:
    return App(load(write_config(tmp_path, extra=relay.config(operators=(OPERATOR,),
                                                              extra=extra))))


async def run_part(app: App, seconds: float, during=None):
    from bridge.mailout import build

    part = build(app.cfg.mail_out, app)
    stop = asyncio.Event()
    task = asyncio.create_task(part.run(stop))
    try:
        if during is not None:
            await during()
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return part


async def test_a_review_item_waiting_too_long_is_mailed_once(tmp_path, monkeypatch):
    from bridge.mailout import service

    monkeypatch.setattr(service, "REVIEW_EVERY", 0.1)
    relay = SmtpRelay().start()
    app = app_with_relay(tmp_path, relay, "review_wait_minutes = 0.01\n"
                         'console_url = "https://bridge.example.nl/console/controle/{review}"\n')
    try:
        from bridge.store import RawMail

        mail_id = app.store.mails.add(RawMail(
            forward("Melding Amersfoort", NO_TICKET, "r@x"), "smtp", envelope_from=FWD))
        assert app.pipeline.process(mail_id).outcome == "review"
        await run_part(app, 2.0)
    finally:
        app.store.close()
        relay.stop()
    receipt, alert = sorted(relay.messages, key=lambda m: m.rcpt_tos != [FWD])
    assert "https://bridge.example.nl/console/controle/1" in receipt.body
    assert alert.rcpt_tos == [OPERATOR]
    assert str(alert.message["Subject"]) == "Storingsbridge CBG Connect: 1 mail wacht op controle"
    assert "controle 1, sinds" in alert.body and "no ticket and no status" in alert.body
    assert "https://bridge.example.nl/console/controle/1" in alert.body


async def test_a_flapping_channel_sends_two_mails_and_a_summary(tmp_path):
    relay = SmtpRelay().start()
    app = app_with_relay(tmp_path, relay, "alert_window_minutes = 0.05\n")  # 3 s

    async def flap():
        for _ in range(4):
            app.events.publish(ChannelPaused(channel="console", reason="mqtt: broker gone"))
            await asyncio.sleep(0.05)
            app.events.publish(ChannelResumed(channel="console", was="mqtt: broker gone"))
            await asyncio.sleep(0.05)
        await until(lambda: len(relay.messages) == 2, what="paused and resumed")
        assert len(relay.messages) == 2  # the other six changes are held

    try:
        await run_part(app, 3.5, flap)
    finally:
        app.store.close()
        relay.stop()
    subjects = [str(m.message["Subject"]) for m in relay.messages]
    assert subjects == ["Storingsbridge CBG Connect: verzenden gestopt (console)",
                        "Storingsbridge CBG Connect: verzenden hervat (console)",
                        "Storingsbridge CBG Connect: kanaal console stopt en hervat steeds"]
    assert "6 keer gestopt of weer gaan versturen" in relay.messages[2].body
    assert "Nu: het kanaal verstuurt." in relay.messages[2].body


async def test_a_fan_out_event_under_the_share_is_not_mailed(tmp_path):
    relay = SmtpRelay().start()
    app = app_with_relay(tmp_path, relay)  # share 0.1 by default
    try:
        async def fan_outs():
            app.events.publish(FanOutEnded(notice_id=1, recipients=100, failed=10,
                                           failures=(("131026 Message undeliverable", 10),)))
            app.events.publish(FanOutEnded(notice_id=2, recipients=100, failed=11,
                                           failures=(("131026 Message undeliverable", 11),)))
        await run_part(app, 1.0, fan_outs)
    finally:
        app.store.close()
        relay.stop()
    [alert] = relay.messages
    assert "melding 2: 11 van 100 berichten mislukt" in str(alert.message["Subject"])


async def test_a_daemon_stopped_by_a_crashing_task_mails_before_it_exits(tmp_path, monkeypatch,
                                                                         caplog):
    relay = SmtpRelay().start()
    app = app_with_relay(tmp_path, relay)
    app.restart_delay = lambda n: 0.0

    async def upkeep_crashing(stop):
        raise OSError("disk I/O error")

    monkeypatch.setattr(app, "_upkeep", upkeep_crashing)
    caplog.set_level(logging.INFO, "bridge")
    try:
        t = time.monotonic()
        code = await asyncio.wait_for(app.run(), 20)
        took = time.monotonic() - t
    finally:
        relay.stop()
    assert code == 1
    [alert] = relay.messages  # sent before run() returned
    assert str(alert.message["Subject"]) == "Storingsbridge CBG Connect: de dienst is gestopt"
    assert "task upkeep keeps crashing: OSError: disk I/O error" in alert.body
    assert "journalctl -u storingsbridge" in alert.body
    assert took < 10


async def test_a_daemon_stopping_with_a_silent_relay_waits_at_most_stop_wait(tmp_path,
                                                                              monkeypatch):
    import socket

    relay = SmtpRelay()  # never started: a socket that takes connections and never answers
    silent = socket.socket()
    silent.bind(("127.0.0.1", relay.port))
    silent.listen(8)
    app = app_with_relay(tmp_path, relay, "stop_wait = 1\n")  # the SMTP timeout is 5 s
    app.restart_delay = lambda n: 0.0

    async def upkeep_crashing(stop):
        raise OSError("disk I/O error")

    monkeypatch.setattr(app, "_upkeep", upkeep_crashing)
    t = time.monotonic()
    try:
        code = await asyncio.wait_for(app.run(), 20)
    finally:
        silent.close()
    assert code == 1 and time.monotonic() - t < 4
    from bridge.store import Store

    store = Store.open(app.cfg.store.path)
    try:
        assert store.mailout.counts() == {"pending": 1}  # kept: it goes after the restart
    finally:
        store.close()


async def test_the_stop_alert_goes_even_when_the_store_cannot_take_it(tmp_path, monkeypatch):
    import sqlite3

    relay = SmtpRelay().start()
    app = app_with_relay(tmp_path, relay)
    app.restart_delay = lambda n: 0.0

    def full(mail, due_at=None):
        raise sqlite3.OperationalError("database or disk is full")

    async def upkeep_crashing(stop):
        monkeypatch.setattr(app.store.mailout, "enqueue", full)
        raise OSError("database or disk is full")

    monkeypatch.setattr(app, "_upkeep", upkeep_crashing)
    try:
        code = await asyncio.wait_for(app.run(), 20)
    finally:
        relay.stop()
    assert code == 1
    [alert] = relay.messages
    assert str(alert.message["Subject"]) == "Storingsbridge CBG Connect: de dienst is gestopt"
    assert "database or disk is full" in alert.body


# -- sending degraded for more than N minutes (issue 15) ---------------------------------------
def test_degraded_sending_is_mailed_once_and_its_all_clear_once():
    reason = ("100 % of 40 sends not accepted in the last 60 s: 131000 x40", "1000.0")
    out, states = mails(("observe", 600, "sending", True, reason),
                        ("observe", 601, "sending", True, reason),  # seen again
                        ("tick", 700),
                        ("observe", 900, "sending", False, ()),
                        ("observe", 901, "sending", False, ()))
    assert out == [[("sending", "raised")], [], [], [("sending", "cleared")], []]
    assert not states["sending"].told_active


def test_an_all_clear_without_an_alert_is_no_mail():
    out, _ = mails(("observe", 0, "sending", False, ()))
    assert out == [[]]


async def test_sending_degraded_for_minutes_gives_one_alert_and_one_all_clear(tmp_path):
    """Against a fake Graph API answering every send with HTTP 500 (131000), the daemon
    mails the operator once sending has been degraded for degraded_alert_minutes, and once
    when it is ok again; nothing in between."""
    relay = SmtpRelay().start()
    fake = FakeGraph(fail_all=131000)
    await fake.start()
    token, cfg = cloud_config(tmp_path, fake, relay, extra=(
        "degraded_alert_minutes = 0.03\n\n"  # 1.8 s
        "[health]\nwindow_s = 2\ndegraded_share = 0.5\ndegraded_after_s = 1\n"
        "min_results = 3\n"))
    cfg.write_text(cfg.read_text().replace("backoff_max = 0.5",
                                           "backoff_max = 0.5\nmax_attempts = 100"))
    token.write_text(fake.token + "\n")
    numbers = [f"+3161111111{i}" for i in range(5)]
    await asyncio.to_thread(bridge, cfg, "subscribers", "add", *numbers)
    (tmp_path / "m.eml").write_bytes(sample_now("01"))
    await asyncio.to_thread(bridge, cfg, "ingest", str(tmp_path / "m.eml"))
    d = Daemon(cfg).start(wait=False)
    try:
        await until(lambda: alerts_in(relay), what="the degraded alert")
        [alert] = alerts_in(relay)
        assert str(alert.message["Subject"]) == \
            "Storingsbridge CBG Connect: verzenden verstoord (cloud)"
        assert alert.message["Auto-Submitted"] == "auto-generated"
        assert "Wat de bridge telt: 100 % of " in alert.body and "131000 x" in alert.body
        assert "Er wachten nu 5 berichten." in alert.body
        await asyncio.sleep(1.0)
        assert len(alerts_in(relay)) == 1  # still degraded: no more mail
        fake.fail_all = None
        await until(lambda: len(alerts_in(relay)) == 2, what="the all-clear")
        ok = alerts_in(relay)[1]
        assert str(ok.message["Subject"]) == \
            "Storingsbridge CBG Connect: verzenden weer normaal (cloud)"
        assert "verstoring" in ok.body and "Wat de bridge telde: 100 % of" in ok.body
        await until(lambda: len({r.to for r in fake.accepted()}) == 5, what="all sent")
        await asyncio.sleep(1.0)
        assert len(alerts_in(relay)) == 2
    finally:
        code = await asyncio.to_thread(d.stop)
        await fake.stop()
        relay.stop()
    assert code == 0, d.log()
    for m in relay.messages:  # numbers never leave in a mail
        assert not any(n[3:] in m.data.decode() for n in numbers)
