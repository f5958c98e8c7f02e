"""The web part: Cloud API webhook (signatures, inbound, statuses), /healthz, /metrics.

Real objects: bridge.app.App with a config in tmp_path, bridge.web's server on a free
loopback port (the webhook is the Cloud channel's, bridge.channels.cloud.webhook), the
fake Graph API for the sends whose statuses come back.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from fake_graph import FakeGraph
from helpers import write_config
from test_cloud import IN, TOKEN_ENV, cloud_config, drain, queue_notice, subscribe

from bridge.app import App
from bridge.channels.base import BaseChannel, HttpRequest, HttpResponse, Metric, Route
from bridge.channels.cloud import parse_webhook, signature_ok
from bridge.config import load

SAMPLES = Path("/work/shared/samples/whatsapp")
SECRET = "app-secret-ééé"
VERIFY = "verify-me"
WEB = """
    [web]
    port = 0
    verify_token_env = "TEST_VERIFY_TOKEN"
    app_secret_env = "TEST_APP_SECRET"
    """


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def sign(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def inbound_body(text: str, *, sender: str | None = "31612345678", msg_id: str = "wamid.in1",
                 user_id: str | None = None, kind: str = "text", extra: dict | None = None) -> dict:
    doc = sample("cloud-inbound-text.json")
    value = doc["entry"][0]["changes"][0]["value"]
    m = value["messages"][0]
    m["id"] = msg_id
    m["timestamp"] = str(int(time.time()))
    if kind == "text":
        m["text"]["body"] = text
    else:
        del m["text"]
        m["type"] = kind
        m.update(extra or {})
    if sender is None:
        del m["from"]
        del value["contacts"][0]["wa_id"]
    if user_id:
        m["from_user_id"] = user_id
        value["contacts"][0]["user_id"] = user_id
    return doc


def statuses_body(*items: tuple[str, str, int | None]) -> dict:
    doc = sample("cloud-status-failed.json")
    value = doc["entry"][0]["changes"][0]["value"]
    value["statuses"] = []
    for wamid, status, code in items:
        s = {"id": wamid, "status": status, "timestamp": str(int(time.time())),
             "recipient_id": "31611111111"}
        if code is not None:
            s["errors"] = [{"code": code, "title": "Message undeliverable" if code == 131026
                            else "Something went wrong"}]
        value["statuses"].append(s)
    return doc


class Web:
    """The app, its web server and a client."""

    def __init__(self, app: App, server, client: httpx.AsyncClient, fake: FakeGraph):
        self.app, self.server, self.client, self.fake = app, server, client, fake

    async def post(self, doc: dict | bytes, signature: str | None = "auto") -> httpx.Response:
        raw = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "auto":
            headers["X-Hub-Signature-256"] = sign(raw)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await self.client.post("/webhook", content=raw, headers=headers)


@pytest.fixture
async def web(tmp_path, monkeypatch):
    from bridge import web as web_mod

    fake = FakeGraph()
    await fake.start()
    monkeypatch.setenv(TOKEN_ENV, fake.token)
    monkeypatch.setenv("TEST_VERIFY_TOKEN", VERIFY)
    monkeypatch.setenv("TEST_APP_SECRET", SECRET)
    app = App(load(cloud_config(tmp_path, fake.base_url, extra=WEB)))
    server = web_mod.build(app.cfg.web, app)
    task = asyncio.create_task(server.run(asyncio.Event()))
    await asyncio.wait_for(server.started.wait(), 5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield Web(app, server, client, fake)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await app.channel.close()
    app.store.close()
    await fake.stop()


# -- verification handshake -------------------------------------------------------------------------
async def test_verification_handshake(web):
    ok = await web.client.get("/webhook", params={"hub.mode": "subscribe",
                                                  "hub.verify_token": VERIFY,
                                                  "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    bad = await web.client.get("/webhook", params={"hub.mode": "subscribe",
                                                   "hub.verify_token": "wrong",
                                                   "hub.challenge": "1"})
    assert bad.status_code == 403
    none = await web.client.get("/webhook")
    assert none.status_code == 403


# -- signatures ---------------------------------------------------------------------------------------
async def test_valid_signature_over_non_ascii_body_subscribes(web):
    doc = inbound_body("Ja ik wil storingsberichten van CBG Connect ontvangen. Graag! é 🙂",
                       msg_id="wamid.nonascii")
    raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    assert "é".encode() in raw and "🙂".encode() in raw
    # a signature over re-serialised JSON (\\u escapes) is not a signature over these bytes
    reserialised = json.dumps(doc).encode()
    assert (await web.post(raw, signature=sign(reserialised))).status_code == 403
    assert web.app.store.subscribers.count() == 0
    r = await web.post(raw)
    assert r.status_code == 200
    sub = web.app.store.subscribers.get("+31612345678")
    assert sub is not None and sub.channel == "cloud"
    # the welcome reply is queued (committed before the 200) and goes out as text
    await drain(web.app)
    (reply,) = web.fake.sends("+31612345678")
    assert reply.body["type"] == "text" and "STOP" in reply.body["text"]["body"]
    # Meta delivers the same webhook again: harmless
    assert (await web.post(raw)).status_code == 200
    assert web.app.store.subscribers.count() == 1
    assert web.app.store.deliveries.counts() == {"sent": 1}


async def test_wrong_or_missing_signature_is_403_and_changes_nothing(web):
    doc = inbound_body("aanmelden")
    assert (await web.post(doc, signature=None)).status_code == 403
    assert (await web.post(doc, signature="sha256=" + "0" * 64)).status_code == 403
    assert (await web.post(doc, signature="sha1=abc")).status_code == 403
    raw = json.dumps(doc).encode()
    assert (await web.post(raw, signature=sign(raw, "another secret"))).status_code == 403
    assert web.app.store.subscribers.count() == 0
    assert web.app.store.deliveries.counts() == {}


def test_signature_helper():
    raw = "é".encode()
    assert signature_ok(raw, sign(raw), SECRET.encode())
    assert signature_ok(raw, sign(raw).upper().replace("SHA256=", "sha256="), SECRET.encode())
    assert not signature_ok(raw, None, SECRET.encode())
    assert not signature_ok(raw + b" ", sign(raw), SECRET.encode())
    assert not signature_ok(raw, "sha256=" + "é" * 64, SECRET.encode())


async def test_non_ascii_signature_header_is_403_not_500(web):
    raw = json.dumps(inbound_body("aanmelden")).encode()
    r = await web.client.post("/webhook", content=raw, headers={
        "Content-Type": "application/json",
        "X-Hub-Signature-256": ("sha256=" + "é" * 64).encode("utf-8")})
    assert r.status_code == 403
    assert web.app.store.subscribers.count() == 0


# -- inbound variants ----------------------------------------------------------------------------------
async def test_sender_known_only_by_user_id_can_subscribe_and_unsubscribe(web):
    uid = "NL.1502576394655843"
    r = await web.post(inbound_body("aanmelden", sender=None, user_id=uid, msg_id="wamid.u1"))
    assert r.status_code == 200
    assert web.app.store.subscribers.get(f"user:{uid}") is not None
    await drain(web.app)
    (reply,) = web.fake.sends(f"user:{uid}")
    assert reply.body["recipient"] == uid and "to" not in reply.body
    r = await web.post(inbound_body("STOP", sender=None, user_id=uid, msg_id="wamid.u2"))
    assert r.status_code == 200
    assert web.app.store.subscribers.count() == 0


def test_non_text_messages():
    img = inbound_body("", kind="image", extra={"image": {"id": "1", "caption": "storing?"}})
    p = parse_webhook(img)
    msgs, skipped = p.messages, p.skipped
    assert [m.text for m in msgs] == ["storing?"] and not skipped
    sticker = inbound_body("", kind="sticker", extra={"sticker": {"id": "2"}})
    msgs = parse_webhook(sticker).messages
    assert [m.text for m in msgs] == [""]
    reaction = inbound_body("", kind="reaction", extra={"reaction": {"message_id": "x", "emoji": "👍"}})
    p = parse_webhook(reaction)
    msgs, skipped = p.messages, p.skipped
    assert msgs == [] and "reaction" in skipped[0]
    button = inbound_body("", kind="button", extra={"button": {"text": "STOP", "payload": "STOP"}})
    msgs = parse_webhook(button).messages
    assert [m.text for m in msgs] == ["STOP"]
    assert msgs[0].sender == "+31612345678" and msgs[0].channel == "cloud"


# -- statuses -------------------------------------------------------------------------------------------
async def sent_wamids(web, n: int) -> dict[str, str]:
    numbers = [f"+3161111100{i}" for i in range(n)]
    for num in numbers:
        subscribe(web.app, num, 1)
    queue_notice(web.app)
    await drain(web.app)
    return {s.to: s.answer.split()[1] for s in web.fake.accepted()}


def state_of(app: App, wamid: str) -> tuple[str, str | None]:
    row = app.store.db.one("SELECT state, error FROM deliveries WHERE provider_id=?", (wamid,))
    return tuple(row) if row else (None, None)


async def test_statuses_move_forward_only_out_of_order_and_repeated(web):
    w = await sent_wamids(web, 2)
    a, b = sorted(w.values())
    # the sample: "read" before "delivered" in one POST
    doc = sample("cloud-status-delivered-read.json")
    for s in doc["entry"][0]["changes"][0]["value"]["statuses"]:
        s["id"] = a
    assert (await web.post(doc)).status_code == 200
    assert state_of(web.app, a) == ("read", None)
    assert (await web.post(doc)).status_code == 200  # repeated
    assert (await web.post(statuses_body((a, "sent", None)))).status_code == 200
    assert state_of(web.app, a) == ("read", None)
    # failed is terminal, with its code; the sample's 131026 counts as unreachable
    fail = sample("cloud-status-failed.json")
    fail["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = b
    assert (await web.post(fail)).status_code == 200
    assert state_of(web.app, b) == ("failed", "131026 Message undeliverable")
    assert (await web.post(statuses_body((b, "delivered", None), (b, "read", None)))).status_code == 200
    assert state_of(web.app, b)[0] == "failed"
    sub_b = [num for num, wid in w.items() if wid == b][0]
    assert web.app.store.subscribers.get(sub_b).unreachable == 1
    assert (await web.post(fail)).status_code == 200  # repeated: counted once
    assert web.app.store.subscribers.get(sub_b).unreachable == 1
    # a status for a message we do not know is ignored
    assert (await web.post(statuses_body(("wamid.unknown", "read", None)))).status_code == 200


async def test_transient_failure_by_webhook_sends_again(web):
    w = await sent_wamids(web, 1)
    (num, wamid), = w.items()
    assert (await web.post(statuses_body((wamid, "failed", 131000)))).status_code == 200
    row = web.app.store.db.one("SELECT state, to_addr, error FROM deliveries")
    assert row["state"] == "pending" and row["to_addr"] == num
    assert row["error"].startswith("131000")
    web.app.store.db.execute("UPDATE deliveries SET due_at=0")
    await drain(web.app)
    assert len(web.fake.sends(num)) == 2
    assert web.app.store.deliveries.counts() == {"sent": 1}
    assert web.app.channel.webhook_errors == {"131000": 1}


async def test_policy_failure_by_webhook_pauses_the_channel(web):
    w = await sent_wamids(web, 1)
    (wamid,) = w.values()
    assert (await web.post(statuses_body((wamid, "failed", 131031)))).status_code == 200
    assert web.app.channel.paused.startswith("131031")
    h = await web.client.get("/healthz")
    assert h.status_code == 503
    assert h.json()["status"] == "unhealthy" and h.json()["paused"].startswith("131031")


# -- health and metrics --------------------------------------------------------------------------------
async def test_a_full_store_answers_500_without_a_traceback_and_the_redelivery_subscribes(
        web, caplog):
    """Webhooks while the store is full (SQLite's max_page_count): 500, so Meta delivers
    again; nothing half-done, one quiet line instead of a traceback per POST (a wall of
    ERRORs before); the redelivery after space returns subscribes once. The inbound
    path's write is made as big as a full page's worth first, so the small rows of a
    subscribe cannot slip into free space left in the store's pages."""
    import logging

    app = web.app
    real_take = app.switchboard._handle_inbound

    def take_after_a_big_write(event):
        with app.store.tx():
            app.store.db.execute("INSERT INTO state VALUES ('big', zeroblob(50000))")
            app.store.db.execute("DELETE FROM state WHERE key = 'big'")
            return real_take(event)

    app.switchboard._handle_inbound = take_after_a_big_write
    app.store.db.execute("VACUUM")
    app.store.db.execute(f"PRAGMA max_page_count={app.store.db.scalar('PRAGMA page_count')}")
    caplog.set_level(logging.INFO, "bridge")
    doc = inbound_body("aanmelden", msg_id="wamid.full1")
    for _ in range(3):
        assert (await web.post(doc)).status_code == 500
    assert app.store.subscribers.count() == 0 and app.store.deliveries.counts() == {}
    assert app.health().store_problem == "database or disk is full"
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1  # the store's
    assert "refused meanwhile: 3 by inbound" in caplog.text or \
        app.store_health.refused == {"inbound": 3}

    app.store.db.execute("PRAGMA max_page_count=1073741823")  # space returns
    assert (await web.post(doc)).status_code == 200  # Meta's redelivery
    assert (await web.post(doc)).status_code == 200  # and a repeat: harmless
    assert app.store.subscribers.count() == 1
    assert app.store.deliveries.counts() == {"pending": 1}  # one welcome reply
    assert app.health().store_problem is None  # the commit shows the store takes writes


async def test_healthz(web):
    r = await web.client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["store"] == "ok"
    assert body["channel"]["type"] == "cloud" and body["channel"]["state"] == "ready"
    assert body["queue_depth"] == 0


async def test_healthz_states_paused_by_the_operator_or_the_store(web, monkeypatch):
    import dataclasses

    body = (await web.client.get("/healthz")).json()
    assert (body["state"], body["reason"], body["retrying"], body["throttled"]) == \
        ("ok", None, 0, 0)
    web.app.store.control.pause("anna", "onderhoud")
    r = await web.client.get("/healthz")  # paused on purpose: not a reason to page anyone
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["reason"]) == ("paused", "paused by anna: onderhoud")
    web.app.store.control.resume()
    healthy = web.app.health
    monkeypatch.setattr(web.app, "health", lambda: dataclasses.replace(
        healthy(), store_problem="database or disk is full"))
    r = await web.client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert (body["state"], body["reason"], body["store_problem"]) == \
        ("paused", "store: database or disk is full", "database or disk is full")
    assert "bridge_sending_state 2.0" in (await web.client.get("/metrics")).text


async def test_metrics(web):
    await sent_wamids(web, 3)
    web.fake.script(IN, 131026)
    subscribe(web.app, IN, 1)
    queue_notice(web.app)
    await drain(web.app)
    await web.post(inbound_body("hallo", msg_id="wamid.m1"))
    await web.post(inbound_body("hallo"), signature=None)
    r = await web.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in ('bridge_deliveries{channel="cloud",state="sent"} 6.0',
                   'bridge_deliveries{channel="cloud",state="failed"} 1.0',
                   "bridge_send_latency_seconds_count 6.0",
                   "bridge_queue_depth 1.0",  # the reply to "hallo"
                   'bridge_channel_errors_total{code="131026",source="send"} 1.0',
                   "bridge_notices_total 2.0",
                   "bridge_channel_paused 0.0",
                   'bridge_webhook_requests_total{result="ok"} 1.0',
                   'bridge_webhook_requests_total{result="forbidden"} 1.0',
                   'bridge_inbound_total{effect="support"} 1.0',
                   "bridge_unique_recipients 0.0"):
        assert needle in text, needle
    assert "# TYPE bridge_mails_total counter" in text
    assert "+3161111" not in text


async def test_the_daemon_part_mechanism(web):
    d = web.server.describe()
    assert d["webhook"] is True and d["listen"].endswith(str(web.server.port))
    assert web.server.background is True


def test_webhook_needs_its_secrets(tmp_path, monkeypatch):
    from bridge import web as web_mod
    from bridge.config import ConfigError

    monkeypatch.delenv("TEST_APP_SECRET", raising=False)
    monkeypatch.setenv("TEST_VERIFY_TOKEN", VERIFY)
    app = App(load(cloud_config(tmp_path, "http://127.0.0.1:9", extra=WEB)))
    try:
        with pytest.raises(ConfigError, match="TEST_APP_SECRET"):
            web_mod.build(app.cfg.web, app)
    finally:
        app.store.close()


def test_parse_ignores_other_fields():
    doc = copy.deepcopy(sample("cloud-inbound-text.json"))
    doc["entry"][0]["changes"][0]["field"] = "message_template_status_update"
    p = parse_webhook(doc)
    msgs, statuses, skipped = p.messages, p.statuses, p.skipped
    assert msgs == [] and statuses == [] and skipped


async def test_undeliverable_webhooks_in_a_row_remove_the_subscriber(web):
    """131026 arrives by webhook after Meta's 200: the accepted sends in between must not
    reset the count, or the subscriber is never removed; a delivered receipt does reset it."""
    from test_cloud import drain, queue_notice, subscribe

    num = "+31622222222"
    sid = subscribe(web.app, num, 72)

    async def notice_then(status, code=None):
        queue_notice(web.app)
        await drain(web.app)
        wamid = web.fake.accepted()[-1].answer.split()[1]
        body = statuses_body((wamid, status, code))
        assert (await web.post(body)).status_code == 200

    await notice_then("failed", 131026)
    await notice_then("failed", 131026)
    assert web.app.store.subscribers.by_id(sid).unreachable == 2
    await notice_then("delivered")
    assert web.app.store.subscribers.by_id(sid).unreachable == 0
    for _ in range(3):
        await notice_then("failed", 131026)
    assert web.app.store.subscribers.by_id(sid) is None, "removed after 3 x 131026 in a row"


async def test_one_person_by_number_or_by_business_scoped_id_is_one_subscriber(web):
    """Meta sends the BSUID (user_id) with every message and may withhold the number of a
    user who adopts a username: subscribed with number + id, that person can write with the
    id only and is still the same subscriber (no second row; STOP erases them)."""
    uid = "NL.1502576394655843"
    seed = "Ja ik wil storingsberichten van CBG Connect ontvangen."
    await web.post(inbound_body(seed, user_id=uid, msg_id="wamid.a"))
    assert web.app.store.subscribers.count() == 1
    await web.post(inbound_body(seed, sender=None, user_id=uid, msg_id="wamid.b"))
    assert web.app.store.subscribers.count() == 1
    assert web.app.inbound.counts.get("already_subscribed") == 1
    await web.post(inbound_body("STOP", sender=None, user_id=uid, msg_id="wamid.c"))
    assert web.app.store.subscribers.count() == 0
    assert web.app.inbound.counts.get("unsubscribed") == 1
    rows = web.app.store.db.execute("SELECT * FROM subscribers").fetchall()
    assert rows == []


async def test_a_subscriber_known_by_number_learns_the_id_from_a_later_message(web):
    uid = "NL.99887766554433"
    await web.post(inbound_body("aanmelden", msg_id="wamid.a"))  # no user_id yet
    await web.post(inbound_body("hallo", user_id=uid, msg_id="wamid.b"))
    [sub] = list(web.app.store.subscribers.iter())
    assert sub.user_id == uid
    await web.post(inbound_body("afmelden", sender=None, user_id=uid, msg_id="wamid.c"))
    assert web.app.store.subscribers.count() == 0


# -- the server binds at start and again after a restart --------------------------------------------
async def test_the_web_server_binds_in_start_and_serves_after_a_restart(tmp_path):
    import asyncio

    import aiohttp

    from bridge.app import App
    from bridge.config import load
    from bridge.web import build
    from helpers import free_port

    port = free_port()
    app = App(load(write_config(tmp_path, extra=f"[web]\nport = {port}\nwebhook = false\n")))
    server = build(app.cfg.web, app)
    try:
        await server.start()
        with socket.socket() as s:  # bound before run() is called
            assert s.connect_ex(("127.0.0.1", port)) == 0
        for _ in range(2):  # run, cancelled (as after a crash), run again: binds again
            task = asyncio.create_task(server.run())
            await asyncio.wait_for(server.started.wait(), 5)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert not server.started.is_set()
    finally:
        await server.stop()
        app.store.close()


# -- the web server knows channels only by their declared hooks -------------------------------------
async def test_without_the_cloud_channel_there_is_no_webhook_and_no_secret_is_needed(
        tmp_path, monkeypatch):
    from bridge import web as web_mod
    from bridge.checks import secret_refs
    from helpers import write_config

    monkeypatch.delenv("TEST_VERIFY_TOKEN", raising=False)
    monkeypatch.delenv("TEST_APP_SECRET", raising=False)
    app = App(load(write_config(tmp_path, extra=WEB)))  # console channel, webhook = true
    assert not [r for r in secret_refs(app.cfg) if r.key.startswith("web.")]
    server = web_mod.build(app.cfg.web, app)  # no ConfigError: nothing needs the secrets
    task = asyncio.create_task(server.run(asyncio.Event()))
    try:
        await asyncio.wait_for(server.started.wait(), 5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/webhook")).status_code == 404
            assert (await client.post("/webhook", content=b"{}")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200
            metrics = (await client.get("/metrics")).text
        assert "bridge_channel_paused 0.0" in metrics
        assert "bridge_webhook_requests" not in metrics and "bridge_unique_recipients" not in metrics
        assert server.describe()["webhook"] is False
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.channel.close()
        app.store.close()


class _HookChannel(BaseChannel):
    """A channel (BaseChannel defaults) contributing one route and two metric families."""

    name = "hook"

    def __init__(self):
        self.options = None

    def routes(self, options):
        self.options = options

        async def echo(req: HttpRequest) -> HttpResponse:
            if req.query.get("fail"):
                raise RuntimeError("boom")
            return HttpResponse(202, json.dumps({
                "method": req.method, "path": req.path, "q": req.query.get("q"),
                "sig": req.headers.get("x-sig"), "body": req.body.decode()}),
                "application/json")

        return [Route("POST", "/hook", echo)]

    def metrics(self):
        return [Metric("bridge_channel_errors", "x", "counter", ("code", "source"),
                       {("42", "hook"): 2}),
                Metric("bridge_hook_things", "Things", "gauge", (), {(): 5})]


class _Status:
    """A StatusPort without an App."""

    def __init__(self, channel):
        from bridge.port import Health

        self.channel = channel
        self.send_listeners = []
        self._health = Health(store_ok=True, paused=None, channel={"type": "hook"},
                              queue_depth=0, uptime_s=1.0)

    def health(self):
        return self._health

    def store_counts(self):
        from bridge.store import StoreCounts

        return StoreCounts(notices=3, deliveries={("hook", "sent"): 7}, queue_depth=0,
                           subscribers=2)

    def mail_outcomes(self):
        return {"queued": 1}

    def inbound_effects(self):
        return {}

    def send_totals(self):
        return None

    def sending(self, health=None):
        from bridge.port import Sending

        return Sending(state="ok", reason=None, since=None, urgent=False, rate=None,
                       retrying=0, throttled=0)


async def test_a_channels_routes_and_metrics_are_mounted_as_declared():
    from bridge.web import WebServer, WebSettings

    channel = _HookChannel()
    server = WebServer(WebSettings(port=0, webhook=False, verify_token_env="V"), _Status(channel))
    assert channel.options.webhook is False and channel.options.verify_token_env == "V"
    task = asyncio.create_task(server.run(asyncio.Event()))
    try:
        await asyncio.wait_for(server.started.wait(), 5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            r = await client.post("/hook", params={"q": "é"}, content="rå".encode(),
                                  headers={"X-Sig": "s1"})
            assert r.status_code == 202 and r.headers["content-type"].startswith("application/json")
            assert r.json() == {"method": "POST", "path": "/hook", "q": "é", "sig": "s1",
                                "body": "rå"}
            assert (await client.post("/hook", params={"fail": "1"})).status_code == 500
            assert (await client.get("/hook")).status_code == 405
            text = (await client.get("/metrics")).text
        assert 'bridge_channel_errors_total{code="42",source="hook"} 2.0' in text
        assert "bridge_hook_things 5.0" in text
        assert 'bridge_deliveries{channel="hook",state="sent"} 7.0' in text
        assert 'bridge_mails_total{outcome="queued"} 1.0' in text
        assert server.requests == 2 and server.describe()["webhook"] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- sending health, end to end: a real daemon against a fake Graph API in a 500 storm ---------
HEALTH = """
    [health]
    window_s = 2
    degraded_share = 0.5
    degraded_after_s = 1
    min_results = 3
    """


async def test_healthz_and_status_show_degraded_in_a_500_storm_and_ok_after_it(tmp_path,
                                                                               monkeypatch):
    from daemon import Daemon, bridge
    from helpers import free_port, wait_until

    fake = FakeGraph(fail_all=131000)  # every send: HTTP 500 "Something went wrong"
    await fake.start()
    port = free_port()
    env = {TOKEN_ENV: fake.token, "TEST_VERIFY_TOKEN": VERIFY, "TEST_APP_SECRET": SECRET}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = cloud_config(tmp_path, fake.base_url, extra=WEB.replace("port = 0", f"port = {port}")
                       + HEALTH)
    # retries without end for the storm's length (the attempts are not what is tested here)
    cfg.write_text(cfg.read_text().replace("backoff_max = 0.5", "backoff_max = 0.5\n"
                                           "max_attempts = 100"))
    app = App(load(cfg))
    numbers = [f"+316111110{i:02d}" for i in range(20)]
    for n in numbers:
        subscribe(app, n, 1)
    queue_notice(app)
    app.store.close()

    async def until(cond, what, timeout=30.0):
        if not await wait_until(cond, timeout):
            raise TimeoutError(f"{what} not met after {timeout} s")

    daemon = Daemon(cfg, env=env).start(wait=False)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            seen: dict = {}

            async def healthz() -> bool:
                try:
                    r = await client.get("/healthz")
                except httpx.TransportError:
                    return False
                seen.update(r.json(), code=r.status_code)
                return True

            async def poll(pred, what):
                t = time.monotonic()
                while time.monotonic() - t < 30:
                    if await healthz() and pred(seen):
                        return
                    await asyncio.sleep(0.1)
                raise TimeoutError(f"{what}: last /healthz {seen}")

            await poll(lambda s: s["state"] == "degraded" and s["code"] == 503,
                       "degraded and 503")
            assert seen["status"] == "unhealthy" and "131000" in seen["reason"], seen
            assert "not accepted" in seen["reason"] and seen["retrying"] > 0
            metrics = (await client.get("/metrics")).text
            assert "bridge_sending_state 1.0" in metrics and "bridge_sending_urgent 1.0" in metrics
            assert "bridge_send_rate 80.0" in metrics
            assert "bridge_sends_retrying " in metrics and "bridge_sends_throttled_total 0.0" in metrics

            async def status_line() -> str:
                out = (await asyncio.to_thread(bridge, cfg, "status")).stdout
                return next(line for line in out.splitlines() if line.startswith("sending:"))

            line = ""

            async def status_says(word):
                nonlocal line
                t = time.monotonic()
                while time.monotonic() - t < 30:
                    line = await status_line()
                    if word in line:
                        return
                    await asyncio.sleep(0.5)
                raise TimeoutError(f"bridge status never said {word}: {line}")

            await status_says("DEGRADED")
            assert "131000 x" in line and "rate 80/s" in line and "queue 20" in line, line

            fake.fail_all = None  # the storm ends
            await until(lambda: len({r.to for r in fake.accepted()}) == 20, "all 20 sent")
            await poll(lambda s: s["state"] == "ok" and s["code"] == 200, "ok and 200")
            assert seen["reason"] is None and seen["retrying"] == 0
            await status_says("sending:         ok")
            assert "queue 0" in line and "retrying 0" in line, line
    finally:
        code = await asyncio.to_thread(daemon.stop)
        await fake.stop()
    assert code == 0, daemon.log()
    log = daemon.log()
    assert len(fake.accepted()) == 20  # nothing sent twice
    # one WARNING summary per window instead of a line per retry
    assert "WARNING bridge.outbox: dispatch: sending degraded: " in log
    assert "WARNING bridge.outbox: dispatch: sending ok again after" in log
    summaries = [x for x in log.splitlines() if "dispatch: last " in x]
    assert summaries and all("WARNING" in x for x in summaries), summaries
    assert any(" retrying (131000 x" in x for x in summaries), summaries
    assert "; retry " not in log
