"""The WhatsApp Cloud API channel against a fake Graph API on loopback.

Real objects throughout: bridge.app.App with a config in tmp_path, the real Dispatcher and
Store; only Meta is faked (tests/fake_graph.py, a real HTTP server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fake_graph import PHONE_NUMBER_ID, FakeGraph
from helpers import free_port, write_config

from bridge.app import App
from bridge.channels.base import Outgoing
from bridge.channels.cloud import TemplateMap, classify, single_line
from bridge.channels.cloud.graph import template_body, template_payload
from bridge.checks import sample_reports
from bridge.config import load
from bridge.core.models import InboundMessage

TOKEN_ENV = "TEST_CLOUD_TOKEN"
IN = "+31611111111"  # wrote to us an hour ago: inside the 24-hour window
OUT = "+31622222222"  # wrote three days ago: outside it


def cloud_config(tmp_path, base_url: str, cloud_extra: str = "", extra: str = "",
                 rate: float = 1000.0, timeout: float = 5):
    return write_config(tmp_path, extra=extra, rate=rate, channel="cloud", channel_extra=f"""
        [channel.cloud]
        phone_number_id = "{PHONE_NUMBER_ID}"
        base_url = "{base_url}"
        token_env = "{TOKEN_ENV}"
        timeout = {timeout}
        probe_interval = 0.2
        min_interval = 0
        {cloud_extra}

        [channel.cloud.templates.storing_nieuw]
        name = "storing_nieuw"
        parameters = ["diensten or 'internet'", "waar or 'in uw regio'", "r.start|datum if r.start else 'onbekend'"]

        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """)


@pytest.fixture
async def fake(monkeypatch):
    f = FakeGraph()
    await f.start()
    monkeypatch.setenv(TOKEN_ENV, f.token)
    yield f
    await f.stop()


@pytest.fixture
def make_app(tmp_path):
    apps = []

    def make(base_url: str, **kw) -> App:
        app = App(load(cloud_config(tmp_path, base_url, **kw)))
        apps.append(app)
        return app

    yield make
    for a in apps:
        if a._dispatcher:
            a._dispatcher.release()
        a.store.close()


def subscribe(app: App, number: str, hours_ago: float) -> int:
    sub, _ = app.store.subscribers.add(number, "cloud", f"wamid.in-{number}",
                                       at=time.time() - hours_ago * 3600)
    return sub.id


def queue_notice(app: App, report=None) -> int:
    report = report or sample_reports()[0]  # storing / nieuw
    rendered = app.renderer.render_notice(report)
    with app.store.tx():
        nid = app.store.incidents.add_notice(
            incident_id=None, raw_mail_id=None, kind=report.kind, status=report.status,
            template=rendered.template, text=rendered.text, report=report, fallback=False)
        app.store.deliveries.fan_out(nid, None)
    return nid


async def drain(app: App):
    app.dispatcher.acquire()
    try:
        return await app.dispatcher.drain()
    finally:
        app.dispatcher.release()


async def close(app: App):
    if app._channel is not None:
        await app._channel.close()


def states(app: App) -> dict[str, int]:
    return app.store.deliveries.counts()


def outgoing(to: str, *, window: bool, template="notices/storing_nieuw.j2", n=1) -> Outgoing:
    report = sample_reports()[0]
    return Outgoing(delivery_id=n, to=to, text="*Storing internet*\nin Amersfoort.", kind="notice",
                    notice_id=1, template=template, report=report.to_json(), window_open=window)


# -- text or template ---------------------------------------------------------------------------
async def test_text_inside_window_template_outside(fake, make_app):
    app = make_app(fake.base_url)
    subscribe(app, IN, 1)
    subscribe(app, OUT, 72)
    nid = queue_notice(app)
    await drain(app)
    await close(app)
    assert fake.problems == []
    text = fake.sends(IN)
    tmpl = fake.sends(OUT)
    assert len(text) == 1 and len(tmpl) == 1
    notice_text = app.store.incidents.notice(nid)["text"]
    assert text[0].body["type"] == "text"
    assert text[0].body["text"] == {"preview_url": False, "body": notice_text}
    t = tmpl[0].body["template"]
    assert t["name"] == "storing_nieuw" and t["language"] == {"code": "nl"}
    params = [p["text"] for p in t["components"][0]["parameters"]]
    assert params[0] == "internet en bellen"
    assert params[1] == "in Amersfoort, Leusden en Hoogland"
    assert "\n" not in "".join(params)
    assert tmpl[0].auth == f"Bearer {fake.token}"
    # the wamid is stored on the delivery
    wamids = {r.answer.split()[1] for r in fake.accepted()}
    rows = app.store.db.execute("SELECT provider_id, state FROM deliveries").fetchall()
    assert {r[0] for r in rows} == wamids and {r[1] for r in rows} == {"sent"}


async def test_reply_goes_as_text_and_unmapped_notice_uses_fallback(fake, make_app):
    app = make_app(fake.base_url)
    subscribe(app, OUT, 72)
    await app.inbound(InboundMessage(channel="cloud", sender="+31633333333", text="info?",
                                     message_id="wamid.q1", received_at=datetime.now(timezone.utc)))
    queue_notice(app, sample_reports()[2])  # storing / opgelost: not mapped -> fallback
    await drain(app)
    await close(app)
    assert fake.problems == []
    reply = fake.sends("+31633333333")
    assert reply[0].body["type"] == "text" and "STOP" in reply[0].body["text"]["body"]
    t = fake.sends(OUT)[0].body["template"]
    assert t["name"] == "storing_melding"
    (param,) = t["components"][0]["parameters"]
    assert param["text"].startswith("*Storing internet en bellen opgelost*")
    assert "\n" not in param["text"]


def test_single_line_parameters():
    assert single_line("a\nb\tc     d") == "a b c d"
    assert single_line("  \n ") == "-"
    long = single_line("woord " * 400)
    assert len(long) == 1024 and long.endswith("…")


@pytest.mark.parametrize("to", ["+31612345678", "31612345678", 'user:NL.1a"2\\b'])
@pytest.mark.parametrize("params", [[], ['Storing "internet" in ’s-Hertogenbosch € – ✓'],
                                    ["a", "b" * 1024, "\u2028"]])
def test_template_body_is_the_payload_as_json(to, params):
    """The request body of a template message, whose template part is encoded once per
    notice, is byte for byte the JSON of the documented payload (compact, UTF-8)."""
    tm = TemplateMap("storing_nieuw", "storing_nieuw", "nl", ("x",) * len(params))
    payload = template_payload(to, tm, params)
    expected = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert template_body(to, tm, params) == expected
    assert template_body(to, tm, params) == expected  # again, from the cache
    assert json.loads(template_body(to, tm, params)) == payload


def test_tls_is_verified_against_certifi_or_the_ca_file_the_environment_names(
        tmp_path, monkeypatch):
    import certifi

    from bridge.channels.cloud.graph import tls_context

    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    default = tls_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert default.cert_store_stats()["x509_ca"] > 50  # certifi's bundle
    one = tmp_path / "one-ca.pem"
    pem = open(certifi.where()).read()
    one.write_text(pem[:pem.index("-----END CERTIFICATE-----") + 26])
    monkeypatch.setenv("SSL_CERT_FILE", str(one))
    assert tls_context().cert_store_stats()["x509_ca"] == 1


async def test_slow_answer_times_out_as_transient_and_the_next_send_works(fake, make_app):
    app = make_app(fake.base_url, timeout=0.3)
    fake.script(OUT, ("delay", 1.5))
    slow = await app.channel.send(outgoing(OUT, window=False, n=1))
    fine = await app.channel.send(outgoing(OUT, window=False, n=2))
    await close(app)
    assert slow.status == "retry" and slow.error.startswith("network timeout"), slow
    assert fine.status == "sent" and fine.provider_id.startswith("wamid.")


async def test_reengagement_error_resends_as_template(fake, make_app):
    app = make_app(fake.base_url)
    subscribe(app, IN, 1)  # we think the window is open; Meta disagrees
    fake.window_closed.add(IN)
    queue_notice(app)
    await drain(app)
    await close(app)
    sends = fake.sends(IN)
    assert [s.body["type"] for s in sends] == ["text", "template"]
    assert [s.answer.split()[0] for s in sends] == ["131047", "ok"]
    assert states(app) == {"sent": 1}


# -- error classes ------------------------------------------------------------------------------
def test_classifier():
    for code in (130429, 131000, 131016, 131057, 1, 2, 4, 80007):
        assert classify(code) == "transient"
    assert classify(131056) == "pair_rate"
    assert classify(131026) == "unreachable"
    assert classify(131047) == "reengage"
    for code in (132000, 132001, 132012, 132018):
        assert classify(code) == "template"
    for code in (190, 0, 3, 10, 368, 131031):
        assert classify(code) == "pause"
    assert classify(131009) == classify(None) == "permanent"


async def test_transient_errors_retry_by_code_not_http_status(fake, make_app):
    app = make_app(fake.base_url)
    subscribe(app, IN, 1)
    subscribe(app, OUT, 1)
    fake.script(IN, 131000)  # answered with HTTP 500
    fake.script(OUT, 130429, 80007)  # HTTP 429, then 400
    queue_notice(app)
    counters = await drain(app)
    await close(app)
    assert states(app) == {"sent": 2}
    assert len(fake.sends(IN)) == 2 and len(fake.sends(OUT)) == 3
    assert counters.errors == {"131000": 1, "130429": 1, "80007": 1}


async def test_pair_rate_limit_backs_off_1_4_16_per_recipient(fake, make_app):
    app = make_app(fake.base_url)
    ch = app.channel
    fake.script(IN, 131056, 131056, 131056)
    got = [await ch.send(outgoing(IN, window=True)) for _ in range(4)]
    other = await ch.send(outgoing(OUT, window=True))
    await close(app)
    assert [r.status for r in got] == ["retry", "retry", "retry", "sent"]
    assert [r.retry_after for r in got[:3]] == [1.0, 4.0, 16.0]
    assert got[0].error.startswith("131056 ")
    assert other.status == "sent"


async def test_undeliverable_fails_and_counts_unreachable(fake, make_app):
    app = make_app(fake.base_url)
    sid = subscribe(app, IN, 1)
    fake.script(IN, 131026)
    queue_notice(app)
    await drain(app)
    await close(app)
    assert states(app) == {"failed": 1}
    assert app.store.subscribers.by_id(sid).unreachable == 1
    row = app.store.db.one("SELECT error FROM deliveries")
    assert row[0].startswith("131026")


async def test_template_error_marks_it_broken_and_falls_back(fake, make_app, caplog):
    app = make_app(fake.base_url)
    fake.templates = {"storing_melding": 1}  # storing_nieuw is unknown to Meta: 132001
    ch = app.channel
    with caplog.at_level(logging.ERROR, "bridge.channels.cloud"):
        first = await ch.send(outgoing(OUT, window=False, n=1))
        second = await ch.send(outgoing("+31644444444", window=False, n=2))
    await close(app)
    assert first.status == "failed" and first.error.startswith("132001")
    assert not first.unreachable
    assert second.status == "sent"
    assert [s.body["template"]["name"] for s in fake.sends()] == ["storing_nieuw", "storing_melding"]
    assert ch.describe()["broken_templates"] == ["storing_nieuw"]
    assert sum("ALERT" in r.message and "storing_nieuw" in r.message for r in caplog.records) == 1
    assert fake.problems == []


async def test_no_usable_template_fails_clearly(fake, make_app):
    app = make_app(fake.base_url)
    fake.templates = {}  # every template unknown
    ch = app.channel
    r1 = await ch.send(outgoing(OUT, window=False, n=1))  # storing_nieuw -> 132001
    r2 = await ch.send(outgoing(OUT, window=False, n=2))  # fallback -> 132001
    r3 = await ch.send(outgoing(OUT, window=False, n=3))  # both broken: no request
    r4 = await ch.send(outgoing(OUT, window=True, n=4))  # text still works
    await close(app)
    assert [r.status for r in (r1, r2, r3, r4)] == ["failed", "failed", "failed", "sent"]
    assert "no usable WhatsApp template" in r3.error
    assert len(fake.sends()) == 3


async def test_network_error_is_transient(make_app, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "x")
    app = make_app(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    r = await app.channel.send(outgoing(IN, window=True))
    await close(app)
    assert r.status == "retry" and r.error.startswith("network")


# -- answers without JSON (w04) -------------------------------------------------------------------
W04 = Path(__file__).parent / "data" / "whatsapp" / "w04-graph-zonder-json.json"


def short_timeout_config(tmp_path, base_url: str):
    """cloud_config with a 1-second Graph API timeout (the w04 case hangs 4.5 s)."""
    path = cloud_config(tmp_path, base_url)
    path.write_text(path.read_text().replace("timeout = 5", "timeout = 1"))
    return path


async def test_answers_without_json_w04_each_as_the_field_case_says(fake, tmp_path):
    """429 and 503 as HTML pages are transient, the empty 400 fails with a clear error, a
    request past the configured timeout is transient; each send directly on the channel."""
    fake.load_script(W04)
    app = App(load(short_timeout_config(tmp_path, fake.base_url)))
    ch = app.channel
    try:
        r429 = await ch.send(outgoing("+31611110901", window=True, n=1))
        r503 = await ch.send(outgoing("+31611110902", window=True, n=2))
        r400 = await ch.send(outgoing("+31611110903", window=True, n=3))
        t = time.monotonic()
        slow = await ch.send(outgoing("+31611110904", window=True, n=4))
        waited = time.monotonic() - t
    finally:
        await close(app)
        app.store.close()
    assert r429.status == "retry" and r429.error == "HTTP 429 without JSON (text/html)", r429
    assert r503.status == "retry" and r503.error == "HTTP 503 without JSON (text/html)", r503
    assert r429.retry_after is None and r503.retry_after is None  # no Retry-After sent
    assert r400.status == "failed" and not r400.unreachable
    assert r400.error == "http HTTP 400 without JSON (an empty body): refused, not retried"
    assert slow.status == "retry" and slow.error.startswith("network timeout"), slow
    assert 0.9 <= waited < 3.0, waited  # the configured 1 s, not the 4.5 s of the answer


async def test_answers_without_json_w04_through_the_outbox(fake, tmp_path):
    """The whole case through the dispatcher: the transient ones are sent on the next try,
    the empty 400 fails once and is not tried again."""
    fake.load_script(W04)
    app = App(load(short_timeout_config(tmp_path, fake.base_url)))
    numbers = ["+31611110901", "+31611110902", "+31611110903", "+31611110904"]
    for n in numbers:
        subscribe(app, n, 1)
    queue_notice(app)
    try:
        counters = await drain(app)
    finally:
        await close(app)
    assert [len(fake.sends(n)) for n in numbers] == [2, 2, 1, 2]
    rows = dict(app.store.db.execute(
        "SELECT d.error, d.state FROM deliveries d WHERE d.state != 'sent'").fetchall())
    assert rows == {"http HTTP 400 without JSON (an empty body): refused, not retried": "failed"}
    assert app.store.deliveries.counts() == {"sent": 3, "failed": 1}
    assert counters.sent == 3 and counters.failed == 1
    assert fake.problems == []
    app.store.close()


async def test_retry_after_is_honoured_in_seconds_and_as_a_date(fake, make_app):
    from email.utils import format_datetime

    from bridge.channels.cloud.graph import retry_after

    app = make_app(fake.base_url)
    ch = app.channel
    later = format_datetime(datetime.fromtimestamp(time.time() + 120, timezone.utc), usegmt=True)
    fake.script(IN, ("raw", 429, "text/html", "<html>slow down</html>", {"Retry-After": "7"}))
    fake.script(OUT, ("raw", 503, "text/plain", "", {"Retry-After": later}))
    fake.script("+31644444444", 130429)  # Meta's JSON rate-limit error, no header: backoff
    r1 = await ch.send(outgoing(IN, window=True, n=1))
    r2 = await ch.send(outgoing(OUT, window=True, n=2))
    r3 = await ch.send(outgoing("+31644444444", window=True, n=3))
    await close(app)
    assert (r1.status, r1.retry_after) == ("retry", 7.0)
    assert r2.status == "retry" and r2.error == "HTTP 503 without JSON (an empty body)"
    assert 110 <= r2.retry_after <= 121, r2.retry_after
    assert r3.status == "retry" and r3.retry_after is None and r3.error.startswith("130429")
    assert retry_after("0") == 0.0 and retry_after("99999") == 3600.0
    assert retry_after("soon") is None and retry_after(None) is None and retry_after(" ") is None


async def test_other_answers_without_json_by_status(fake, make_app):
    """408 is transient; 401/404/413 without JSON fail for good; JSON without an error code
    is judged by its status as well."""
    app = make_app(fake.base_url)
    ch = app.channel
    cases = {"+31650000001": (408, "text/html", "<html>timeout</html>", "retry"),
             "+31650000002": (404, "text/html", "<html>not found</html>", "failed"),
             "+31650000003": (413, "text/plain", "too large", "failed"),
             "+31650000004": (502, "application/json", '{"error": {"message": "x"}}', "retry"),
             "+31650000005": (400, "application/json", "[1, 2]", "failed")}
    got = {}
    for i, (to, (status, ctype, body, _)) in enumerate(cases.items()):
        fake.script(to, ("raw", status, ctype, body))
        got[to] = await ch.send(outgoing(to, window=True, n=i))
    await close(app)
    assert {to: r.status for to, r in got.items()} == {to: c[3] for to, c in cases.items()}
    assert got["+31650000004"].error == "HTTP 502 without an error code"
    assert "HTTP 404 without JSON (text/html)" in got["+31650000002"].error


# -- token and policy errors: pause, no storm, resume --------------------------------------------
async def test_token_expiry_pauses_without_retry_storm_and_resumes(fake, make_app, monkeypatch,
                                                                    caplog):
    app = make_app(fake.base_url)
    for i in range(200):
        subscribe(app, f"+316{i:08d}", 1)
    queue_notice(app)
    fake.token = "renewed-token"  # ours has expired: every send answers 190
    ch = app.channel
    app.dispatcher.acquire()
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        tasks = [asyncio.create_task(app.dispatcher.run(stop)), asyncio.create_task(ch.run())]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if ch.paused:
                break
        assert ch.paused and ch.paused.startswith("190 ")
        await asyncio.sleep(1.0)  # paused for a while: no more sends, a few probes
        rejected = [s for s in fake.sends() if s.answer == "190"]
        assert 1 <= len(rejected) <= app.cfg.dispatch.concurrency
        assert len(fake.sends()) == len(rejected)
        probes = [r for r in fake.requests if r.method == "GET"]
        assert 1 <= len(probes) <= 10
        assert app.store.deliveries.counts() == {"pending": 200}
        assert app.store.db.scalar("SELECT max(attempts) FROM deliveries") == 0
        # the operator puts the new token in place: the channel notices and resumes
        monkeypatch.setenv(TOKEN_ENV, "renewed-token")
        for _ in range(500):
            await asyncio.sleep(0.02)
            if app.store.deliveries.counts() == {"sent": 200}:
                break
        stop.set()
        await tasks[0]
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
    await close(app)
    assert app.store.deliveries.counts() == {"sent": 200}
    assert ch.paused is None
    crit = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(crit) == 1 and "PAUSED" in crit[0].message
    assert fake.problems == []


async def test_missing_token_pauses(make_app, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    app = make_app("http://127.0.0.1:9")
    assert "TEST_CLOUD_TOKEN is not set" in app.channel.paused
    r = await app.channel.send(outgoing(IN, window=True))
    assert r.status == "paused"
    await close(app)


# -- the unique-recipient cap ---------------------------------------------------------------------
async def test_unique_recipient_cap_defers_the_rest(fake, make_app, caplog):
    app = make_app(fake.base_url, cloud_extra="unique_cap = 3")
    numbers = [f"+3165555000{i}" for i in range(6)]
    for n in numbers:
        subscribe(app, n, 72)
    subscribe(app, IN, 1)  # in its window: free text, does not count
    queue_notice(app)
    with caplog.at_level(logging.WARNING, "bridge.channels.cloud"):
        await drain(app)
    assert states(app) == {"sent": 4, "pending": 3}
    assert len([s for s in fake.sends() if s.body["type"] == "template"]) == 3
    errors = [r[0] for r in app.store.db.execute("SELECT error FROM deliveries WHERE state='pending'")]
    assert all(e.startswith("unique-recipient cap 3/24h") for e in errors)
    due = app.store.deliveries.next_due()
    assert due > time.time() + 86000
    warnings = [r for r in caplog.records if "unique-recipient cap reached" in r.message]
    assert len(warnings) == 1
    await close(app)
    # the window is kept as keyed hashes only, and survives a restart
    raw = app.store.state.get("cloud:unique-recipients")
    assert raw and all(n[1:] not in raw and n[-8:] not in raw for n in numbers)
    assert len(json.loads(raw)) == 3


def test_cap_stale_conflict_is_reported_by_bridge_check(tmp_path):
    import dataclasses

    from bridge.channels.cloud import cap_stale_conflict, check
    from bridge.checks import ChannelChecks
    from bridge.analysis import make_renderer

    assert cap_stale_conflict(250, 12) and "never get that notice" in cap_stale_conflict(250, 12)
    assert cap_stale_conflict(250, 24) is None and cap_stale_conflict(0, 12) is None
    assert cap_stale_conflict(250, None) is None
    cfg = load(cloud_config(tmp_path, "http://127.0.0.1:9"))  # defaults: cap 250, 12 h
    renderer = make_renderer(cfg)
    problems = check(cfg.channel.settings, ChannelChecks(cfg, renderer))
    found = [p for p in problems if p.startswith("channel.cloud.unique_cap:0: warning:")]
    assert len(found) == 1 and "dispatch.max_age_hours = 12" in found[0], problems
    day = dataclasses.replace(cfg, dispatch=dataclasses.replace(cfg.dispatch, max_age_hours=24))
    assert not any("unique_cap" in p for p in check(cfg.channel.settings,
                                                       ChannelChecks(day, renderer)))


def test_bridge_check_warns_about_the_cap_and_still_passes(tmp_path, monkeypatch, capsys):
    from bridge.cli import main

    monkeypatch.setenv(TOKEN_ENV, "x")
    path = cloud_config(tmp_path, "http://127.0.0.1:9")  # defaults: cap 250, 12 h
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "channel.cloud.unique_cap:0: warning:" in out and "ok:" in out, out


async def test_cap_deferral_says_how_many_until_when_and_that_they_go_stale(fake, make_app,
                                                                            caplog):
    """A first fan-out beyond the cap: the rest wait 24 h for free slots, longer than
    dispatch.max_age_hours (12 h): the warning says so plainly, and when the dispatcher
    drops them as stale the channel says why."""
    app = make_app(fake.base_url, cloud_extra="unique_cap = 3")
    assert app.channel.cap.max_age_hours == app.cfg.dispatch.max_age_hours  # from the port
    for i in range(6):
        subscribe(app, f"+3165555000{i}", 72)
    nid = queue_notice(app)
    with caplog.at_level(logging.WARNING, "bridge.channels.cloud"):
        await drain(app)
        assert states(app) == {"sent": 3, "pending": 3}
        warnings = [r.getMessage() for r in caplog.records
                    if "unique-recipient cap reached" in r.getMessage()]
        assert len(warnings) == 1, warnings
        w = warnings[0]
        assert f"notice {nid}: up to 3 recipients" in w and "deferred until about" in w
        assert "dropped as stale after dispatch.max_age_hours = 12 h" in w
        assert "will not get this notice" in w and "dispatch.max_age_hours = 24" in w
        assert app.channel.cap.check_stale() == 0  # nothing stale yet

        # 13 hours later: the dispatcher drops them as stale; the channel says why.
        app.store.db.execute("UPDATE deliveries SET created_at = created_at - 13 * 3600")
        app.dispatcher._expire()
        assert states(app) == {"sent": 3, "stale": 3}
        caplog.clear()
        assert app.channel.cap.check_stale() == 3
        lines = [r.getMessage() for r in caplog.records]
        assert any(f"notice {nid}: 3 deliveries deferred by the unique-recipient cap" in m
                   and "dropped as stale" in m and "did not get this notice" in m
                   for m in lines), lines
        assert app.channel.cap.check_stale() == 0  # said once; the notice is done
        assert app.channel.cap.deferred == {}
    await close(app)


async def test_cap_deferral_within_max_age_continues_then(fake, make_app, caplog):
    app = make_app(fake.base_url, cloud_extra="unique_cap = 3")
    app.channel.cap.max_age_hours = 48.0
    for i in range(4):
        subscribe(app, f"+3165555000{i}", 72)
    queue_notice(app)
    with caplog.at_level(logging.WARNING, "bridge.channels.cloud"):
        await drain(app)
    w = [r.getMessage() for r in caplog.records if "cap reached" in r.getMessage()]
    assert len(w) == 1 and "up to 1 recipients" in w[0] and "they continue then" in w[0], w
    await close(app)


# -- restart in the middle of a fan-out -------------------------------------------------------------
async def test_restart_mid_fanout_resends_only_what_was_in_flight(fake, tmp_path, monkeypatch):
    fake.latency = 0.05
    cfg = load(cloud_config(tmp_path, fake.base_url, rate=200))
    app = App(cfg)
    numbers = [f"+3167777{i:04d}" for i in range(300)]
    for n in numbers:
        subscribe(app, n, 1)
    queue_notice(app)
    app.dispatcher.acquire()
    task = asyncio.create_task(app.dispatcher.run(asyncio.Event()))
    while len(fake.sends()) < 100:
        await asyncio.sleep(0.01)
    # crash: the dispatcher dies with sends under way (no chance to record their results)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    in_flight = app.store.db.scalar("SELECT count(*) FROM deliveries WHERE state='sending'")
    await app.channel.close()
    app.dispatcher.release()
    app.store.close()

    app2 = App(load(cfg.path))
    await drain(app2)
    await close(app2)
    assert app2.store.deliveries.counts() == {"sent": 300}
    per = {}
    for s in fake.sends():
        per[s.to] = per.get(s.to, 0) + 1
    assert set(per) == set(numbers)
    doubles = sum(1 for v in per.values() if v > 1)
    assert all(v <= 2 for v in per.values())
    assert doubles <= in_flight
    assert in_flight <= cfg.dispatch.concurrency + 10
    app2.store.close()


# -- bridge check -------------------------------------------------------------------------------------
def test_check_renders_every_mapped_template(tmp_path):
    from bridge.checks import check_all

    cfg = load(cloud_config(tmp_path, "http://127.0.0.1:9"))
    problems = check_all(cfg)
    assert [p for p in problems if "channel.cloud" in p and ": warning:" not in p] == []

    bad = load(cloud_config(tmp_path, "http://127.0.0.1:9", cloud_extra="""
        [channel.cloud.templates.storing_update]
        name = "storing_update"
        parameters = ["r.nonexistent.deeper"]
        """))
    problems = check_all(bad)
    assert any("channel.cloud.templates.storing_update" in p and "parameter failed" in p
               for p in problems)


def test_config_errors_name_the_key(tmp_path):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match="channel.cloud.templates.storing_update.name"):
        load(cloud_config(tmp_path, "http://x", cloud_extra="""
            [channel.cloud.templates.storing_update]
            name = "Storing Nieuw"
            """))


# -- an operator's own message (the console's "Zelf versturen") ----------------------------------
async def test_an_operators_message_goes_as_text_inside_and_as_the_template_outside(
        fake, make_app):
    app = make_app(fake.base_url)
    subscribe(app, IN, 1)
    subscribe(app, OUT, 72)
    o = app.review.send_message("*Let op*: vannacht onderhoud.\nInternet valt kort weg.",
                                  by="anna")
    assert o.queued == 2
    await drain(app)
    await close(app)
    assert fake.problems == []
    assert fake.sends(IN)[0].body["text"]["body"] == (
        "*Let op*: vannacht onderhoud.\nInternet valt kort weg.")
    # outside the window: no [channel.cloud.templates.bericht], so the fallback template
    t = fake.sends(OUT)[0].body["template"]
    assert t["name"] == "storing_melding"
    (param,) = t["components"][0]["parameters"]
    assert param["text"] == "*Let op*: vannacht onderhoud. Internet valt kort weg."
