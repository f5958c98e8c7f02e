"""The operator console's pages and actions, through aiohttp's test client against the real
web server (bridge.web.server.WebServer with ``console = true``) over a real App and store.

Sections: sign-in and the guard (no page without a session, CSRF, throttling, cookies);
each page; review (correct, preview, approve, reject, approval mode); stop and pause;
templates (preview, check, save, versions); own messages; subscribers (chart, search,
remove, import); the audit log; live updates. The same in a real browser:
test_console_browser.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from helpers import MAILS, no_ticket_mail, read_outbox, write_config

from bridge.accounts import MAX_FAILURES_USER, Accounts
from bridge.app import App
from bridge.config import load
from bridge.events import ReviewDecided
from bridge.store import RawMail
from bridge.web.server import WebServer

PASSWORD = "correct horse battery"
WEB = """
    [web]
    port = 0
    console = true
    """


class Env:
    def __init__(self, app: App, client: TestClient, tmp_path):
        self.app, self.client, self.tmp = app, client, tmp_path
        self.csrf = ""

    async def signin(self, name: str = "anna", password: str = PASSWORD, *,
                     expect: int = 200) -> str:
        page = await self.client.get("/console/login")
        r = await self.client.post("/console/login", data={
            "naam": name, "wachtwoord": password, "csrf": csrf_of(await page.text())})
        assert r.status == expect, (r.status, await r.text())
        if expect == 200:
            self.csrf = csrf_of(await r.text())
        return self.csrf

    async def post(self, path: str, data: dict | None = None, **kw):
        return await self.client.post(path, data={"csrf": self.csrf, **(data or {})}, **kw)

    async def get_text(self, path: str, status: int = 200) -> str:
        r = await self.client.get(path)
        text = await r.text()
        assert r.status == status, (path, r.status, text[:2000])
        return text

    def audit(self, action: str) -> list:
        return self.app.store.audit.entries(action=action)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def make_env(tmp_path, extra: str = "") -> Env:
    app = App(load(write_config(tmp_path, extra=WEB + extra)))
    Accounts(app.store).add("anna", PASSWORD)
    server = WebServer(app.cfg.web, app)
    client = TestClient(TestServer(server.web))
    await client.start_server()
    return Env(app, client, tmp_path)


@pytest.fixture
async def env(tmp_path):
    e = await make_env(tmp_path)
    yield e
    await e.client.close()
    e.app.store.close()


def review_item(env: Env, name: str = "vague.eml") -> int:
    """A mail without a ticket, processed into the review queue; returns the review id."""
    data = no_ticket_mail(env.tmp).read_bytes().replace(b"inc12345678.1@", b"vague.1@")
    mail_id = env.app.store.mails.add(RawMail(data=data, source="cli", source_ref=name))
    outcome = env.app.pipeline.process(mail_id)
    assert outcome.outcome == "review", outcome
    return env.app.store.mails.review_of(mail_id)["id"]


def queued_notice(env: Env, sample: str = "01-storing-nieuw.eml") -> int:
    from helpers import now_of

    from bridge.cli_ingest import parse_now

    data = (MAILS / sample).read_bytes()
    mail_id = env.app.store.mails.add(RawMail(data=data, source="cli", source_ref=sample))
    o = env.app.pipeline.process(mail_id, now=parse_now(env.app.cfg, now_of(MAILS / sample)))
    assert o.outcome == "queued", o
    return o.notice_id


# --- sign-in and the guard -------------------------------------------------------------------

GET_PAGES = ["/console/", "/console/mails", "/console/mails/1", "/console/incidents/1",
             "/console/notices/1", "/console/review", "/console/review/1", "/console/templates",
             "/console/templates/notices/storing_nieuw.j2", "/console/send",
             "/console/subscribers", "/console/audit"]
POST_ACTIONS = ["/console/logout", "/console/pause", "/console/resume",
                "/console/notices/1/stop", "/console/notices/1/reveal",
                "/console/review/1/preview", "/console/review/1/approve",
                "/console/review/1/reject", "/console/templates/notices/storing_nieuw.j2/save",
                "/console/templates/notices/storing_nieuw.j2/preview",
                "/console/templates/notices/storing_nieuw.j2/restore",
                "/console/templates/notices/storing_nieuw.j2/revert", "/console/send",
                "/console/send/preview", "/console/subscribers/remove",
                "/console/subscribers/import"]


async def test_no_page_and_no_action_without_a_session(env):
    review_item(env)
    for path in GET_PAGES:
        r = await env.client.get(path, allow_redirects=False)
        assert r.status == 303, path
        assert r.headers["Location"].startswith("/console/login?volgende="), path
    for path in POST_ACTIONS:
        r = await env.client.post(path, data={"bevestigd": "ja"}, allow_redirects=False)
        assert r.status == 401, path
    r = await env.client.get("/console/events?pagina=overview")
    assert r.status == 401
    assert env.app.store.control.paused() is None
    assert env.app.store.mails.review(1)["state"] == "open"


async def test_sign_in_opens_a_session_in_a_strict_httponly_cookie(env):
    page = await env.client.get("/console/login")
    r = await env.client.post("/console/login", allow_redirects=False, data={
        "naam": "Anna", "wachtwoord": PASSWORD, "csrf": csrf_of(await page.text()),
        "volgende": "/console/subscribers"})
    assert r.status == 303 and r.headers["Location"] == "/console/subscribers"
    cookie = [v for k, v in r.headers.items() if k == "Set-Cookie" and "bridge_session" in v][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    token = re.search(r"bridge_session=([^;]+)", cookie).group(1)
    # the store keeps a hash of the token, never the token
    rows = env.app.store.db.execute("SELECT token_hash FROM sessions").fetchall()
    assert len(rows) == 1 and rows[0][0] != token and token not in rows[0][0]
    assert [e.actor for e in env.audit("signin")] == ["anna"]
    # a redirect off the console after sign-in is not followed
    page = await env.client.get("/console/login")
    r = await env.client.post("/console/login", allow_redirects=False, data={
        "naam": "anna", "wachtwoord": PASSWORD, "csrf": csrf_of(await page.text()),
        "volgende": "https://evil.example/"})
    assert r.headers["Location"] == "/console/"


async def test_the_cookie_is_secure_behind_tls(tmp_path):
    e = await make_env(tmp_path, 'public_url = "https://bridge.example.nl"\n')
    try:
        page = await e.client.get("/console/login")
        signin = page.cookies["bridge_signin"]
        assert signin["secure"]  # the test client keeps a Secure cookie off plain http:
        r = await e.client.post("/console/login", allow_redirects=False, data={
            "naam": "anna", "wachtwoord": PASSWORD, "csrf": csrf_of(await page.text())},
            headers={"Cookie": f"bridge_signin={signin.value}"})
        cookie = r.headers.getall("Set-Cookie")
        assert any("bridge_session" in c and "Secure" in c for c in cookie), cookie
    finally:
        await e.client.close()
        e.app.store.close()


async def test_a_wrong_password_or_name_does_not_sign_in(env):
    await env.signin("anna", "wrong password!", expect=401)
    await env.signin("nobody", PASSWORD, expect=401)
    r = await env.client.get("/console/", allow_redirects=False)
    assert r.status == 303
    assert len(env.audit("signin.failed")) == 2


async def test_csrf_is_refused_and_changes_nothing(env):
    await env.signin()
    flipped = env.csrf[:-1] + ("1" if env.csrf[-1] == "0" else "0")
    for data in ({}, {"csrf": "forged"}, {"csrf": flipped}):
        r = await env.client.post("/console/pause", data={**data, "bevestigd": "ja"})
        assert r.status == 403, data
        assert "Formulier verlopen" in await r.text()
    assert env.app.store.control.paused() is None
    # the sign-in form has its own token
    r = await env.client.post("/console/login", data={"naam": "anna", "wachtwoord": PASSWORD})
    assert r.status == 403
    # another session's token is no good either
    other = TestClient(TestServer(env.client.server.app))
    await other.start_server()
    try:
        e2 = Env(env.app, other, env.tmp)
        await e2.signin()
        r = await other.post("/console/pause", data={"csrf": env.csrf, "bevestigd": "ja"})
        assert r.status == 403
    finally:
        await other.close()
    assert env.app.store.control.paused() is None


async def test_sign_in_is_throttled_per_account(env):
    for _ in range(MAX_FAILURES_USER):
        await env.signin("anna", "not the password", expect=401)
    # now even the right password is refused, without a session, and it says so
    page = await env.client.get("/console/login")
    r = await env.client.post("/console/login", data={
        "naam": "anna", "wachtwoord": PASSWORD, "csrf": csrf_of(await page.text())})
    assert r.status == 429 and "Te veel mislukte pogingen" in await r.text()
    r = await env.client.get("/console/", allow_redirects=False)
    assert r.status == 303
    assert len(env.audit("signin.throttled")) == 1
    # the lock is per account: another account signs in
    Accounts(env.app.store).add("bert", PASSWORD)
    await env.signin("bert", PASSWORD)
    # ... and lifts when the failures leave the window
    env.app.store.db.execute("UPDATE login_failures SET at = at - 3600")
    await env.signin("anna", PASSWORD)


async def test_sign_in_is_throttled_per_address(env):
    from bridge.accounts import MAX_FAILURES_ADDRESS

    for i in range(MAX_FAILURES_ADDRESS):
        await env.signin(f"guess{i}", "not the password", expect=401)
    await env.signin("anna", PASSWORD, expect=429)


async def test_sign_out_ends_the_session(env):
    await env.signin()
    r = await env.post("/console/logout", allow_redirects=False)
    assert r.status == 303
    r = await env.client.get("/console/", allow_redirects=False)
    assert r.status == 303
    assert env.app.store.db.scalar("SELECT count(*) FROM sessions") == 0
    assert [e.action for e in env.app.store.audit.entries()][:2] == ["signout", "signin"]


async def test_an_expired_or_removed_account_session_is_refused(env):
    await env.signin()
    env.app.store.users.remove("anna")
    r = await env.client.get("/console/", allow_redirects=False)
    assert r.status == 303


async def test_pages_carry_security_headers(env):
    await env.signin()
    r = await env.client.get("/console/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    js = await env.client.get("/console/static/console.js")
    assert js.status == 200 and "EventSource" in await js.text()


# --- the console beside /healthz and /metrics ------------------------------------------------


async def test_health_and_metrics_are_still_served_and_the_console_is_off_by_default(tmp_path):
    e = await make_env(tmp_path)
    try:
        assert (await e.client.get("/healthz")).status == 200
        assert (await e.client.get("/metrics")).status == 200
        assert (await e.client.get("/webhook")).status == 404  # only with the Cloud channel
        r = await e.client.get("/console", allow_redirects=False)
        assert r.status in (301, 303)  # to /console/, or first to the sign-in
    finally:
        await e.client.close()
        e.app.store.close()
    (tmp_path / "off").mkdir()
    app = App(load(write_config(tmp_path / "off", extra="[web]\nport = 0\n")))
    client = TestClient(TestServer(WebServer(app.cfg.web, app).web))
    await client.start_server()
    try:
        assert (await client.get("/console/")).status == 404
    finally:
        await client.close()
        app.store.close()


# --- every page ------------------------------------------------------------------------------


async def test_every_page_renders_with_data(env):
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    notice_id = queued_notice(env)
    review_id = review_item(env)
    await env.signin()
    incident_id = env.app.store.notices.get(notice_id)["incident_id"]
    pages = {
        "/console/": ["Overzicht", "Staat van de onderdelen", "Opslag", "SMTP", "IMAP",
                      "Kanaal (console)", "Melding 1", "0 van 1 verstuurd"],
        "/console/mails": ["Storingsmelding", "verstuurd", "controle", "INC000012345678"],
        f"/console/mails/{env.app.store.notices.get(notice_id)['raw_mail_id']}":
            ["De tekst die de bridge las", "Amersfoort", "Melding 1"],
        f"/console/incidents/{incident_id}": ["Tijdlijn", "Melding 1", "wacht 1"],
        f"/console/notices/{notice_id}": ["Aan wie: 1 abonnees", "+316****5678",
                                          "Stop met versturen"],
        "/console/review": ["geen ticketnummer dat de bridge herkent"],
        f"/console/review/{review_id}": ["De mail", "Wat de bridge las", "Goedkeuren"],
        "/console/templates": ["notices/storing_nieuw.j2", "replies/help.j2",
                               "mail/receipt_queued.j2"],
        "/console/templates/notices/storing_nieuw.j2": ["Geen fouten gevonden",
                                                        "melding 1 (INC000012345678)"],
        "/console/templates/replies/help.j2": ["voorbeeld"],
        "/console/templates/mail/alert_paused.j2": ["voorbeeld 1"],
        "/console/send": ["Zelf versturen"],
        "/console/subscribers": ["Abonnees: 1", "<svg", "Een lijst importeren"],
        "/console/audit": ["Logboek", "aangemeld"],
    }
    for path, needles in pages.items():
        html = await env.get_text(path)
        for needle in needles:
            assert needle in html, (path, needle)
        assert "+31612345678" not in html, path  # masked everywhere
    for missing in ("/console/mails/999", "/console/notices/999", "/console/review/999",
                    "/console/incidents/999", "/console/templates/notices/nope.j2"):
        assert (await env.client.get(missing)).status == 404, missing


async def test_times_are_shown_in_the_organisations_zone(env):
    await env.signin()
    c = env.client.server.app._subapps[0]  # noqa: SLF001 - the console's sub-application
    assert c is not None
    from bridge.web.console.context import Console

    console = Console(env.app.cfg.web, env.app)
    assert console.local(1764330000.0) == "28-11-2025 12:40"  # 11:40 UTC, winter: UTC+1
    assert console.local(1751320800.0) == "01-07-2025 00:00"  # 22:00 UTC, summer: UTC+2


# --- review: correct, preview, approve, reject ---------------------------------------------


async def test_review_correct_a_place_see_the_notice_and_approve(env):
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    review_id = review_item(env)
    decided: list[ReviewDecided] = []
    env.app.events.subscribe(ReviewDecided, decided.append)
    await env.signin()
    html = await env.get_text(f"/console/review/{review_id}")
    original = re.search(r'name="original" value="([^"]+)"', html).group(1)
    values = json.loads(original.replace("&#34;", '"').replace("&quot;", '"'))
    assert values["places"] == "Amersfoort, Leusden"
    form = {**values, "original": json.dumps(values), "places": "Zeewolde"}
    r = await env.post(f"/console/review/{review_id}/preview", form,
                       headers={"X-CSRF-Token": env.csrf})
    preview = await r.text()
    assert r.status == 200 and "Zeewolde" in preview and "Amersfoort" not in preview
    assert "Verbeterd: plaatsen" in preview  # the form's label, not the field name
    # an impossible time is named, in Dutch
    r = await env.post(f"/console/review/{review_id}/preview",
                       {**form, "end": "2020-01-01T00:00", "start": "2021-01-01T00:00"},
                       headers={"X-CSRF-Token": env.csrf})
    assert "Einde: ligt vóór het begin" in await r.text()
    r = await env.post(f"/console/review/{review_id}/approve", form, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/console/notices/")
    notice_id = int(r.headers["Location"].split("/")[-1].split("?")[0])
    notice = env.app.store.notices.get(notice_id)
    assert "Zeewolde" in notice["text"] and "Amersfoort" not in notice["text"]
    assert notice["recipients"] == 1 and notice["review_id"] == review_id
    assert env.app.store.mails.review(review_id)["state"] == "approved"
    [entry] = env.audit("review.approve")
    assert entry.actor == "anna" and "corrected places" in entry.detail
    assert decided and decided[0].by == "anna" and decided[0].notice_id == notice_id
    await env.app.dispatcher.drain()
    [msg] = read_outbox(env.tmp)
    assert "Zeewolde" in msg["text"]
    # decided: approving again is refused, the page says so
    r = await env.post(f"/console/review/{review_id}/approve", form)
    assert r.status == 400 and "already approved" in await r.text()


async def test_review_approved_as_read_sends_what_the_cli_sends(env):
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    review_id = review_item(env)
    draft = env.app.review.review_draft(review_id)
    await env.signin()
    html = await env.get_text(f"/console/review/{review_id}")
    original = re.search(r'name="original" value="([^"]+)"', html).group(1)
    values = json.loads(original.replace("&#34;", '"'))
    r = await env.post(f"/console/review/{review_id}/approve",
                       {**values, "original": json.dumps(values)}, allow_redirects=False)
    assert r.status == 303
    [entry] = env.audit("review.approve")
    assert entry.detail.endswith("as read")
    notice = env.app.store.notices.get(int(r.headers["Location"].split("/")[-1].split("?")[0]))
    assert notice["text"] == draft.notice.text


async def test_review_reject_with_a_reason(env):
    review_id = review_item(env)
    decided: list[ReviewDecided] = []
    env.app.events.subscribe(ReviewDecided, decided.append)
    await env.signin()
    r = await env.post(f"/console/review/{review_id}/reject", {"reden": "geen echte storing"},
                       allow_redirects=False)
    assert r.status == 303
    assert env.app.store.mails.review(review_id)["state"] == "rejected"
    mail = env.app.store.mails.get(env.app.store.mails.review(review_id)["raw_mail_id"])
    assert mail.reason == f"rejected in review {review_id} by anna: geen echte storing"
    assert decided[0].reason == "geen echte storing" and decided[0].by == "anna"
    [entry] = env.audit("review.reject")
    assert entry.detail == "geen echte storing"
    assert env.app.store.notices.count() == 0


async def test_approval_mode_holds_every_notice_until_a_person_approves(tmp_path):
    e = await make_env(tmp_path, "\n[review]\napproval_mode = true\n")
    try:
        e.app.store.subscribers.add("+31612345678", "console", "cli:test")
        from helpers import now_of

        from bridge.cli_ingest import parse_now

        data = (MAILS / "01-storing-nieuw.eml").read_bytes()
        mail_id = e.app.store.mails.add(RawMail(data=data, source="cli"))
        o = e.app.pipeline.process(mail_id,
                                   now=parse_now(e.app.cfg, now_of(MAILS / "01-storing-nieuw.eml")))
        assert o.outcome == "review" and o.reason.startswith("approval mode")
        assert e.app.store.deliveries.pending() == 0
        review_id = e.app.store.mails.review_of(mail_id)["id"]
        await e.signin()
        html = await e.get_text(f"/console/review/{review_id}")
        assert "approval mode" in html
        original = re.search(r'name="original" value="([^"]+)"', html).group(1)
        values = json.loads(original.replace("&#34;", '"'))
        assert values["ticket"] == "INC000012345678" and values["status"] == "nieuw"
        r = await e.post(f"/console/review/{review_id}/approve",
                         {**values, "original": json.dumps(values)}, allow_redirects=False)
        assert r.status == 303
        notice = e.app.store.notices.get(int(r.headers["Location"].split("/")[-1].split("?")[0]))
        # the notice the report makes (storing_nieuw), threaded into its incident
        assert notice["template"] == "notices/storing_nieuw.j2"
        assert notice["ticket"] == "INC000012345678" and notice["incident_id"]
        assert e.app.store.deliveries.pending() == 1
    finally:
        await e.client.close()
        e.app.store.close()


# --- stop a notice, pause all sending ----------------------------------------------------------


async def test_stop_sending_a_notice_is_confirmed_and_audited(env):
    for i in range(3):
        env.app.store.subscribers.add(f"+3161234567{i}", "console", "cli:test")
    notice_id = queued_notice(env)
    await env.signin()
    r = await env.post(f"/console/notices/{notice_id}/stop")
    html = await r.text()
    assert r.status == 200 and "3 berichten van deze melding" in html and "bevestigd" in html
    assert env.app.store.notices.counts(notice_id) == {"pending": 3}  # not yet
    r = await env.post(f"/console/notices/{notice_id}/stop", {"bevestigd": "ja"},
                       allow_redirects=False)
    assert r.status == 303
    assert env.app.store.notices.counts(notice_id) == {"cancelled": 3}
    [entry] = env.audit("notice.cancel")
    assert entry.actor == "anna" and entry.target == f"notice {notice_id}"
    assert entry.detail == "3 unsent deliveries cancelled"
    await env.app.dispatcher.drain()
    assert read_outbox(env.tmp) == []


async def test_pause_and_resume_all_sending(env):
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    await env.signin()
    r = await env.post("/console/pause", {"reden": "storing in test"})
    assert r.status == 200 and "Al het versturen pauzeren?" in await r.text()
    assert env.app.store.control.paused() is None
    r = await env.post("/console/pause", {"reden": "storing in test", "bevestigd": "ja"},
                       allow_redirects=False)
    assert r.status == 303
    p = env.app.store.control.paused()
    assert p.by == "anna" and p.reason == "storing in test"
    html = await env.get_text("/console/")
    assert "Het versturen is gepauzeerd" in html and "Versturen hervatten" in html
    # the dispatcher holds every delivery while paused
    queued_notice(env)
    await env.app.dispatcher.drain()
    assert read_outbox(env.tmp) == [] and env.app.store.deliveries.pending() == 1
    r = await env.post("/console/resume", {"bevestigd": "ja"}, allow_redirects=False)
    assert r.status == 303 and env.app.store.control.paused() is None
    await env.app.dispatcher.drain()
    assert len(read_outbox(env.tmp)) == 1
    assert [e.action for e in env.app.store.audit.entries(action="sending")] == [
        "sending.resume", "sending.pause"]


async def test_the_overview_shows_sending_degraded_with_its_reasons(env):
    await env.signin()
    health = env.app.dispatcher.health  # what the dispatcher tells it, send by send
    for i in range(10):
        health.note("retry", "131000 Something went wrong", delivery_id=i,
                    retry_at=time.time() + 60)
    html = await env.get_text("/console/")
    assert "verstoord sinds" in html and "131000 x10" in html, html
    assert "10 wachten op een nieuwe poging" in html


# --- numbers masked unless revealed --------------------------------------------------------------


async def test_numbers_are_masked_and_revealing_one_is_audited(env):
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    notice_id = queued_notice(env)
    await env.signin()
    html = await env.get_text(f"/console/notices/{notice_id}")
    assert "+316****5678" in html and "+31612345678" not in html
    delivery_id = env.app.store.notices.deliveries(notice_id)[0]["id"]
    r = await env.post(f"/console/notices/{notice_id}/reveal", {"levering": str(delivery_id)})
    html = await r.text()
    assert r.status == 200 and "+31612345678" in html and "vastgelegd in het logboek" in html
    [entry] = env.audit("number.reveal")
    assert entry.actor == "anna" and entry.detail == f"delivery {delivery_id}"
    assert "+31612345678" not in (entry.detail or "") + (entry.target or "")
    # after sending, the delivery keeps no address; the number shown is the subscriber's
    await env.app.dispatcher.drain()
    html = await env.get_text(f"/console/notices/{notice_id}")
    assert "+316****5678" in html and "verstuurd" in html
    env.app.store.subscribers.remove("+31612345678")
    html = await env.get_text(f"/console/notices/{notice_id}")
    assert "gewist" in html


# --- templates -------------------------------------------------------------------------------


async def test_template_preview_check_save_versions_and_restore(env):
    name = "notices/storing_nieuw.j2"
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    queued_notice(env)  # a real report to try the template on
    await env.signin()
    shipped = (env.app.cfg.render.templates_dir / name).read_text()
    edited_file = env.app.cfg.render.edited_dir / name
    # a broken draft: the error with its line, as `bridge check` gives it; not saved
    broken = "Regel een\n{{ r.places|lijst }\n"
    r = await env.post(f"/console/templates/{name}/preview", {"bron": broken},
                       headers={"X-CSRF-Token": env.csrf})
    html = await r.text()
    assert f"{name}:2: syntax error" in html and "kan niet bewaard worden" in html
    r = await env.post(f"/console/templates/{name}/save", {"bron": broken, "actie": "bewaren"})
    assert r.status == 400 and "Niet bewaard" in await r.text()
    assert not edited_file.exists()
    # an undefined variable fails at render time: refused too
    r = await env.post(f"/console/templates/{name}/save",
                       {"bron": "{{ bestaat_niet }}", "actie": "bewaren"})
    assert r.status == 400 and not edited_file.exists()
    # a good draft: previewed against the real mail and the samples, then saved
    good = "*Storing* in {{ plaatsen }} ({{ ref }}); proef {{ org.name }}"
    r = await env.post(f"/console/templates/{name}/preview", {"bron": good},
                       headers={"X-CSRF-Token": env.csrf})
    html = await r.text()
    assert "Geen fouten gevonden" in html and "<strong>Storing</strong> in Amersfoort" in html
    assert "melding 1 (INC000012345678)" in html and "voorbeeld storing nieuw" in html
    r = await env.post(f"/console/templates/{name}/save", {"bron": good, "actie": "bewaren"},
                       allow_redirects=False)
    assert r.status == 303
    assert edited_file.read_text() == good
    assert (env.app.cfg.render.templates_dir / name).read_text() == shipped  # never written
    # the daemon's renderer uses it at the next render, without a restart
    from bridge.checks import sample_reports

    report = [s for s in sample_reports() if (s.kind, s.status) == ("storing", "nieuw")][0]
    assert "proef CBG Connect" in env.app.renderer.render_notice(report).text
    [v] = env.app.store.template_versions.of(name)
    assert v.source == shipped and v.note == "shipped" and v.saved_by == "anna"
    [entry] = env.audit("template.save")
    assert entry.target == name
    # restore the shipped version: saved again, the edited text kept as a version
    r = await env.post(f"/console/templates/{name}/restore", {"versie": str(v.id)},
                       allow_redirects=False)
    assert r.status == 303 and edited_file.read_text() == shipped
    assert [x.source for x in env.app.store.template_versions.of(name)] == [good, shipped]
    assert "proef" not in env.app.renderer.render_notice(report).text
    # back to the shipped file altogether
    r = await env.post(f"/console/templates/{name}/revert", allow_redirects=False)
    assert r.status == 303 and not edited_file.exists()
    assert [e.action for e in env.app.store.audit.entries(action="template")] == [
        "template.revert", "template.restore", "template.save"]


async def test_a_mail_template_is_edited_and_used_by_mail_back(env):
    from bridge.mailout.texts import MailTexts

    name = "mail/receipt_rejected.j2"
    await env.signin()
    good = "Afgewezen door de bridge: {{ uitleg }} (proef)"
    r = await env.post(f"/console/templates/{name}/save", {"bron": good, "actie": "bewaren"},
                       allow_redirects=False)
    assert r.status == 303
    text = MailTexts(env.app.renderer).render("receipt_rejected.j2", {"uitleg": "x"})
    assert text == "Afgewezen door de bridge: x (proef)"
    r = await env.post(f"/console/templates/{name}/save",
                       {"bron": "{{ uitleg }", "actie": "bewaren"})
    assert r.status == 400 and f"{name}:1: syntax error" in await r.text()


# --- own messages ------------------------------------------------------------------------------


async def test_send_a_message_yourself(env):
    for i in range(2):
        env.app.store.subscribers.add(f"+3161234567{i}", "console", "cli:test")
    await env.signin()
    r = await env.post("/console/send/preview", {"tekst": "  *Let op*: onderhoud vannacht \n\n\n"},
                       headers={"X-CSRF-Token": env.csrf})
    html = await r.text()
    assert "<strong>Let op</strong>: onderhoud vannacht" in html and "2 abonnees" in html
    r = await env.post("/console/send", {"tekst": "*Let op*: onderhoud vannacht"})
    html = await r.text()
    assert "Dit bericht naar 2 abonnees versturen?" in html
    assert env.app.store.notices.count() == 0
    r = await env.post("/console/send", {"tekst": "*Let op*: onderhoud vannacht",
                                         "bevestigd": "ja"}, allow_redirects=False)
    assert r.status == 303
    [n] = env.app.store.notices.recent()
    assert n["text"] == "*Let op*: onderhoud vannacht" and n["kind"] == "bericht"
    assert n["template"] == "notices/bericht.j2" and n["recipients"] == 2
    [entry] = env.audit("message.send")
    assert entry.actor == "anna" and "to 2 subscribers" in entry.detail
    await env.app.dispatcher.drain()
    assert [m["text"] for m in read_outbox(env.tmp)] == ["*Let op*: onderhoud vannacht"] * 2
    r = await env.post("/console/send", {"tekst": "   ", "bevestigd": "ja"})
    assert r.status == 400


# --- subscribers ------------------------------------------------------------------------------


async def test_subscribers_import_search_chart_and_remove(env):
    await env.signin()
    data = FormData()
    data.add_field("csrf", env.csrf)
    data.add_field("reden", "lijst van vóór 2026")
    data.add_field("bestand", "06-12345678\n# comment\n0800-1234567\nhallo\n+31 6 1234 5679\n",
                   filename="lijst.txt", content_type="text/plain")
    r = await env.client.post("/console/subscribers/import", data=data)
    html = await r.text()
    assert r.status == 200, html
    assert "Toegevoegd: 2" in html and "ongeldig: 2" in html
    assert "06-12345678" in html and "toegevoegd" in html and "ongeldig" in html
    assert env.app.store.subscribers.count() == 2
    [entry] = env.audit("subscriber.import")
    assert entry.target == "lijst.txt" and "added 2" in entry.detail
    assert "lijst van vóór 2026" in entry.detail
    sub = env.app.store.subscribers.get("+31612345678")
    assert sub.consent_ref == "import:lijst.txt" and sub.consent_note == "lijst van vóór 2026"
    # the chart counts today's two subscribes
    days = env.app.store.tally.per_day(30, "Europe/Amsterdam")
    assert days[-1][1:] == (2, 0)
    html = await env.get_text("/console/subscribers")
    assert "Abonnees: 2" in html and "2 aangemeld" in html
    # search
    html = await env.get_text("/console/subscribers?nummer=06%2012345678")
    assert "+31612345678" in html and "Afmelden en wissen" in html
    html = await env.get_text("/console/subscribers?nummer=0612000000")
    assert "geen abonnee" in html
    # remove: confirmed, then erased, counted, audited (masked)
    r = await env.post("/console/subscribers/remove", {"nummer": "+31612345678"})
    assert "afmelden?" in await r.text()
    assert env.app.store.subscribers.count() == 2
    r = await env.post("/console/subscribers/remove", {"nummer": "+31612345678",
                                                       "bevestigd": "ja"},
                       allow_redirects=False)
    assert r.status == 303 and env.app.store.subscribers.get("+31612345678") is None
    assert env.app.store.tally.per_day(1, "Europe/Amsterdam")[-1][1:] == (2, 1)
    [entry] = env.audit("subscriber.remove")
    assert entry.target == "+316****5678"
    # a dry run changes nothing
    data = FormData()
    data.add_field("csrf", env.csrf)
    data.add_field("proberen", "ja")
    data.add_field("bestand", b"0612345670\n", filename="proef.csv")
    r = await env.client.post("/console/subscribers/import", data=data)
    assert "zou toegevoegd worden" in await r.text()
    assert env.app.store.subscribers.count() == 1


# --- the audit log and live updates ---------------------------------------------------------


async def test_audit_page_lists_who_did_what(env):
    await env.signin()
    await env.post("/console/pause", {"bevestigd": "ja", "reden": "test"})
    html = await env.get_text("/console/audit")
    assert "versturen gepauzeerd" in html and "anna" in html and "aangemeld" in html
    html = await env.get_text("/console/audit?actie=sending")
    assert "versturen gepauzeerd" in html and "aangemeld</td>" not in html


async def test_the_event_stream_sends_the_overviews_live_parts(env):
    await env.signin()
    r = await env.client.get("/console/events?pagina=overview")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    seen: dict[str, str] = {}
    t = time.monotonic()
    while len(seen) < 4 and time.monotonic() - t < 5:
        line = await r.content.readline()
        if line.startswith(b"data: "):
            part = json.loads(line[6:])
            seen[part["id"]] = part["html"]
    assert {"live-health", "live-fanouts", "live-counts", "live-mails"} <= set(seen)
    assert "Abonnees" in seen["live-counts"]
    # something happens: the changed part comes without reloading
    env.app.store.subscribers.add("+31612345678", "console", "cli:test")
    review_item(env)
    t = time.monotonic()
    got = None
    while time.monotonic() - t < 10:
        line = await r.content.readline()
        if line.startswith(b"data: "):
            part = json.loads(line[6:])
            if part["id"] == "live-counts":
                got = part["html"]
                break
    assert got is not None and "/console/review\">1</a>" in got
    r.close()
