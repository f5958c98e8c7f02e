"""A fake WhatsApp Cloud API (Graph API) as a real HTTP server on loopback.

Every request is checked against the documented shapes (samples in
../shared/samples/whatsapp/): the bearer token, ``messaging_product``, ``recipient_type``,
``to`` in E.164 with "+" (or ``recipient`` with a business-scoped user id), ``type`` text
or template, ``template.name`` / ``language.code`` / body parameters of type text without
newlines, tabs or runs of more than four spaces, at most 1,024 characters. A request that
does not fit is recorded in :attr:`FakeGraph.problems` and answered with error 100.

Scripting, per recipient (a queue; when empty the send succeeds):

    fake.script("+31611111111", 131056, 131056)      # two pair-rate errors, then ok
    fake.script("+31622222222", ("delay", 0.5))       # answer after 0.5 s
    fake.script("+31644444444", ("raw", 503, "text/html", "<html>...</html>",
                                 {"Retry-After": "3"}))  # an answer without JSON
    fake.script("+31655555555", ("hang", 4.5))        # this answer takes 4.5 s (then ok)
    fake.load_script("w04.json")                      # {number: [[action...], ...]}
    fake.window_closed.add("+31633333333")            # free text -> 131047
    fake.token = "new-token"                          # the old token now gets 190
    fake.templates = {"storing_nieuw": 3}             # known templates: name -> parameters
    fake.fail_all = 131000                            # every send: this error (None: as usual)

Throughput, for every recipient (Meta's "Throughput": error 130429, HTTP 429, above it):

    fake.bucket(10)            # a token bucket: 10 messages/s, bursts of 10; above: 130429
    fake.storm(180)            # every send for the next 180 s: 130429
    fake.accepted_to["+31611111111"]   # messages accepted per recipient (duplicates)

A refused send takes no token. ``fake.throttled`` counts the 130429 answers of both.

In a test: ``async with FakeGraph() as fake: ... fake.base_url``. For benchmarks, run it in
its own process: ``python tests/fake_graph.py --port 0 --latency 0.05`` prints
``listening on <port>`` and serves until killed (``--quiet``: no request log kept;
``--bucket 10``: the token bucket above).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PHONE_NUMBER_ID = "106540352242922"
API_VERSION = "v23.0"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")

TITLES = {
    0: "AuthException", 1: "API Unknown", 2: "API Service", 3: "API Method", 4: "API Too Many Calls",
    10: "Permission Denied", 100: "Invalid parameter", 190: "Access token has expired",
    368: "Temporarily blocked for policies violations", 80007: "Rate limit issues",
    130429: "Rate limit hit", 131000: "Something went wrong", 131016: "Service unavailable",
    131026: "Message undeliverable", 131031: "Account has been locked",
    131047: "Re-engagement message", 131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode", 132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation", 132012: "Parameter format does not match format in the created template",
    132018: "There was an issue with the parameters in your template",
}
# Deliberately not always 400: the channel must classify by error.code, never by status.
HTTP_STATUS = {190: 401, 0: 401, 130429: 429, 131000: 500, 131016: 503, 4: 429}


def error_body(code: int, details: str | None = None) -> dict:
    title = TITLES.get(code, "Error")
    body: dict[str, Any] = {"message": f"(#{code}) {title}", "type": "OAuthException",
                            "code": code, "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUw"}
    if code == 190:
        body["message"] = "Error validating access token: Session has expired."
        body["error_subcode"] = 463
    else:
        body["error_data"] = {"messaging_product": "whatsapp", "details": details or title}
    return {"error": body}


@dataclass
class Request:
    method: str
    path: str
    to: str | None
    body: dict | None
    auth: str | None
    at: float
    answer: str = ""  # "ok wamid..." or the error code


@dataclass
class FakeGraph:
    token: str = "test-token"
    latency: float = 0.0
    phone_number_id: str = PHONE_NUMBER_ID
    api_version: str = API_VERSION
    record: bool = True
    port: int = 0
    templates: dict[str, int] | None = None  # known templates (name -> parameter count)
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    window_closed: set[str] = field(default_factory=set)
    count: int = 0
    # while set, every send is answered with this error code (e.g. 131000: HTTP 500, a
    # storm of errors), after any scripted answers for the recipient; None: as usual
    fail_all: int | None = None
    throttled: int = 0  # 130429 answers of the bucket and the storm
    accepted_to: collections.Counter = field(default_factory=collections.Counter)
    _bucket: tuple[float, float] | None = None  # (rate /s, burst)
    _tokens: float = 0.0
    _stamp: float = 0.0
    _storm_until: float = 0.0  # monotonic
    _scripts: dict[str, list] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # -- scripting ------------------------------------------------------------------------------
    def script(self, to: str, *actions: Any) -> None:
        """Queue answers for ``to``: an int is an error code, ("delay", s) waits, "ok" sends."""
        self._scripts.setdefault(to, []).extend(actions)

    def bucket(self, rate: float | None, burst: float | None = None) -> None:
        """Accept at most ``rate`` messages/s (bursts of ``burst``, default one second's
        worth); above it answer 130429 (HTTP 429). None: no limit."""
        if rate is None:
            self._bucket = None
            return
        b = burst if burst is not None else max(1.0, rate)
        self._bucket, self._tokens, self._stamp = (rate, b), b, time.monotonic()

    def storm(self, seconds: float) -> None:
        """Answer every send with 130429 for the next ``seconds`` (0: end the storm now)."""
        self._storm_until = time.monotonic() + seconds

    @property
    def storming(self) -> bool:
        return time.monotonic() < self._storm_until

    def _over_limit(self) -> bool:
        """Take a token from the bucket; True when there is none (or a storm is on)."""
        if self.storming:
            return True
        if self._bucket is None:
            return False
        rate, burst = self._bucket
        t = time.monotonic()
        self._tokens = min(burst, self._tokens + (t - self._stamp) * rate)
        self._stamp = t
        if self._tokens < 1:
            return True
        self._tokens -= 1
        return False

    def load_script(self, path) -> None:
        """Queue the answers of a JSON file ``{number: [action, ...]}``, each action a list
        as :meth:`script` takes it as a tuple (``["raw", 429, "text/html", "..."]``,
        ``["hang", 4.5]``)."""
        with open(path, encoding="utf-8") as f:
            for to, actions in json.load(f).items():
                self.script(to, *(tuple(a) if isinstance(a, list) else a for a in actions))

    def sends(self, to: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and (to is None or r.to == to)]

    def accepted(self) -> list[Request]:
        return [r for r in self.sends() if r.answer.startswith("ok")]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- server ---------------------------------------------------------------------------------
    async def start(self) -> "FakeGraph":
        app = web.Application()
        app.router.add_post(f"/{self.api_version}/{self.phone_number_id}/messages", self._messages)
        app.router.add_get(f"/{self.api_version}/{self.phone_number_id}", self._phone)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeGraph":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- handlers -------------------------------------------------------------------------------
    def _auth_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _reply(self, req: Request | None, code: int, details: str | None = None) -> web.Response:
        if req is not None:
            req.answer = str(code)
        return web.json_response(error_body(code, details), status=HTTP_STATUS.get(code, 400))

    async def _unknown(self, request: web.Request) -> web.Response:
        self.problems.append(f"unknown endpoint {request.method} {request.path}")
        return web.json_response(error_body(100, "Unknown path"), status=400)

    async def _phone(self, request: web.Request) -> web.Response:
        req = Request("GET", request.path, None, None, request.headers.get("Authorization"),
                      time.time())
        if self.record:
            self.requests.append(req)
        if not self._auth_ok(request):
            return self._reply(req, 190)
        req.answer = "ok"
        return web.json_response({"id": self.phone_number_id})

    async def _messages(self, request: web.Request) -> web.Response:
        self.count += 1
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        to = None
        if isinstance(body, dict):
            to = body.get("to") or (f"user:{body['recipient']}" if body.get("recipient") else None)
        req = Request("POST", request.path, to, body, request.headers.get("Authorization"),
                      time.time())
        if self.record:
            self.requests.append(req)
        if self.latency:
            await asyncio.sleep(self.latency)
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            self.problems.append(f"Content-Type {request.headers.get('Content-Type')!r}")
        if not self._auth_ok(request):
            if not (request.headers.get("Authorization") or "").startswith("Bearer "):
                self.problems.append("no bearer Authorization header")
            return self._reply(req, 190)
        why = self.validate(body)
        if why:
            self.problems.append(why)
            return self._reply(req, 100, why)
        assert to is not None
        queue = self._scripts.get(to)
        while queue:
            action = queue.pop(0)
            if isinstance(action, tuple) and action[0] == "delay":
                await asyncio.sleep(action[1])
                continue
            if isinstance(action, tuple) and action[0] == "hang":
                req.answer = "hang"  # the client gives up first when its timeout is shorter
                await asyncio.sleep(action[1])
                break
            if isinstance(action, tuple) and action[0] == "raw":
                _, status, ctype, text, *headers = action
                req.answer = f"raw {status}"
                return web.Response(status=status, body=text.encode("utf-8"),
                                    headers={"Content-Type": ctype, **(headers[0] if headers
                                                                       else {})})
            if isinstance(action, int):
                return self._reply(req, action)
            break  # "ok"
        if self.fail_all is not None:
            return self._reply(req, self.fail_all)
        if self._over_limit():
            self.throttled += 1
            return self._reply(req, 130429)
        if body["type"] == "text" and to in self.window_closed:
            return self._reply(req, 131047, "Message failed to send because more than 24 hours"
                                            " have passed since the customer last replied.")
        if body["type"] == "template" and self.templates is not None:
            t = body["template"]
            if t["name"] not in self.templates:
                return self._reply(req, 132001)
            params = [p for c in t.get("components", []) for p in c.get("parameters", [])]
            if len(params) != self.templates[t["name"]]:
                return self._reply(req, 132000)
        wamid = f"wamid.FAKE{next(self._ids):08d}"
        self.accepted_to[to] += 1
        req.answer = ("hang " if req.answer == "hang" else "ok ") + wamid
        contact = {"input": to, "wa_id": to[1:]} if to.startswith("+") else {
            "input": to[5:], "user_id": to[5:]}
        return web.json_response({"messaging_product": "whatsapp", "contacts": [contact],
                                  "messages": [{"id": wamid}]})

    # -- the documented shapes ----------------------------------------------------------------------
    @staticmethod
    def validate(body: Any) -> str | None:
        """Why ``body`` is not a valid send request, or None."""
        if not isinstance(body, dict):
            return "body is not a JSON object"
        if body.get("messaging_product") != "whatsapp":
            return "messaging_product must be 'whatsapp'"
        if body.get("recipient_type") != "individual":
            return "recipient_type must be 'individual'"
        to, recipient = body.get("to"), body.get("recipient")
        if to is not None:
            if not isinstance(to, str) or not E164.match(to):
                return f"to must be E.164 with '+', got {to!r}"
        elif not isinstance(recipient, str) or not recipient:
            return "neither to nor recipient"
        kind = body.get("type")
        allowed = {"messaging_product", "recipient_type", "to", "recipient", "type", kind}
        extra = set(body) - allowed
        if extra:
            return f"unexpected keys {sorted(extra)}"
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, dict) or set(text) - {"body", "preview_url"}:
                return "text must be {body, preview_url}"
            b = text.get("body")
            if not isinstance(b, str) or not b.strip() or len(b) > 4096:
                return "text.body must be 1-4096 characters"
            if "preview_url" in text and not isinstance(text["preview_url"], bool):
                return "text.preview_url must be a boolean"
            return None
        if kind == "template":
            t = body.get("template")
            if not isinstance(t, dict):
                return "template must be an object"
            if not isinstance(t.get("name"), str) or not TEMPLATE_NAME.match(t["name"]):
                return f"template.name invalid: {t.get('name')!r}"
            lang = t.get("language")
            if not isinstance(lang, dict) or not isinstance(lang.get("code"), str) or not lang["code"]:
                return "template.language.code missing"
            comps = t.get("components", [])
            if not isinstance(comps, list):
                return "template.components must be a list"
            for c in comps:
                if not isinstance(c, dict) or c.get("type") != "body":
                    return f"component type must be 'body', got {c!r}"
                params = c.get("parameters")
                if not isinstance(params, list) or not params:
                    return "body parameters must be a non-empty list"
                for p in params:
                    if not isinstance(p, dict) or p.get("type") != "text" or set(p) != {"type", "text"}:
                        return f"parameter must be {{type: text, text}}, got {p!r}"
                    s = p["text"]
                    if not isinstance(s, str) or not s.strip():
                        return "parameter text empty"
                    if "\n" in s or "\t" in s or "\r" in s:
                        return f"parameter with a newline or tab: {s!r}"
                    if "     " in s:
                        return f"parameter with more than four spaces in a row: {s!r}"
                    if len(s) > 1024:
                        return f"parameter longer than 1024 characters ({len(s)})"
            return None
        return f"type must be text or template, got {kind!r}"


async def _serve(port: int, latency: float, token: str, quiet: bool,
                 bucket: float | None = None) -> None:
    fake = FakeGraph(token=token, latency=latency, port=port, record=not quiet)
    fake.bucket(bucket)
    await fake.start()
    print(f"listening on {fake.port}", flush=True)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        await fake.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="fake WhatsApp Cloud API for benchmarks")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--token", default="bench-token")
    p.add_argument("--quiet", action="store_true", help="keep no request log")
    p.add_argument("--bucket", type=float, default=None,
                   help="accept at most this many messages/s (130429 above it)")
    args = p.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_serve(args.port, args.latency, args.token, args.quiet, args.bucket))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
