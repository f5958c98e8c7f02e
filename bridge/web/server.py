"""The HTTP side: ``/healthz``, ``/metrics``, and the routes the channel contributes.

An optional part (``[web]`` in the config): ``parse_config`` reads the table, ``build``
makes a :class:`WebServer`; the daemon calls its ``start`` (binds ``host:port``,
127.0.0.1:8080 by default, so a port in use stops the start-up) before its tasks run, and
``run`` serves until the supervisor cancels it after the dispatcher has finished.

aiohttp.web because a webhook must check its signature over the *raw* request bytes,
aiohttp is one dependency we already have (no separate ASGI server), and an
``AppRunner``/``TCPSite`` runs inside our own event loop and TaskGroup.

Routes:

- ``GET /healthz``: JSON with ``state`` (ok, degraded, paused), ``reason`` and ``since``
  (:mod:`bridge.sendhealth`); 503 when it needs an operator now: the store unreachable or
  not writable, the channel paused, or sending degraded for ``[health] degraded_after_s``;
  else 200 (also while an operator paused sending on purpose).
- ``GET /metrics``: Prometheus text format (see bridge.metrics).
- the channel's own (:meth:`bridge.channels.base.Channel.routes`): with the Cloud API,
  Meta's webhook ``GET``/``POST /webhook`` (unless ``webhook = false``). The server knows
  nothing of them beyond method, path and handler; a handler that raises answers 500.
- ``/console/...`` with ``console = true``: the operator console (:mod:`bridge.web.console`),
  mounted by one call in :class:`WebServer`.

The server reads the application only through :class:`bridge.port.StatusPort`; the
console, an operator's front end like the CLI, is handed the App itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bridge.channels.base import HttpRequest, HttpResponse, Route, WebOptions
from bridge.config import Section
from bridge.metrics import CONTENT_TYPE, Metrics
from bridge.part import BasePart
from bridge.port import StatusPort

log = logging.getLogger("bridge.web")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    webhook: bool = True  # mount the channel's webhook (the Cloud API's), if it has one
    verify_token_env: str = "BRIDGE_CLOUD_VERIFY_TOKEN"
    app_secret_env: str = "BRIDGE_CLOUD_APP_SECRET"
    max_body: int = 4 * 1024 * 1024  # bytes per request
    # the operator console (bridge.web.console) under /console/
    console: bool = False
    public_url: str = ""  # the address behind a reverse proxy, e.g. https://bridge.isp.nl
    session_hours: float = 12.0  # a console session ends this long after sign-in ...
    idle_minutes: float = 60.0  # ... or after this long without use

    @property
    def base_url(self) -> str:
        """Where people reach the web server: ``public_url``, else ``http://host:port``."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def console_url(self) -> str:
        """The console's address for pages, mails and the start-up line."""
        return self.base_url + "/console/"

    @property
    def options(self) -> WebOptions:
        """What the channel's routes are told."""
        return WebOptions(webhook=self.webhook, verify_token_env=self.verify_token_env,
                          app_secret_env=self.app_secret_env)


def parse_config(sec: Section, base: Path) -> WebSettings:
    d = WebSettings
    s = WebSettings(
        host=sec.str("host", d.host),
        port=sec.int("port", d.port, min=0, max=65535),
        webhook=sec.bool("webhook", d.webhook),
        verify_token_env=sec.env("verify_token_env", d.verify_token_env) or d.verify_token_env,
        app_secret_env=sec.env("app_secret_env", d.app_secret_env) or d.app_secret_env,
        max_body=sec.int("max_body", d.max_body, min=1024, max=64 * 1024 * 1024),
        console=sec.bool("console", d.console),
        public_url=sec.str("public_url", d.public_url).strip(),
        session_hours=sec.float("session_hours", d.session_hours, min=0.1, max=24 * 30),
        idle_minutes=sec.float("idle_minutes", d.idle_minutes, min=1, max=24 * 60 * 30),
    )
    if s.public_url and (not s.public_url.startswith(("http://", "https://"))
                         or any(c in s.public_url for c in " ?#")):
        raise sec.fail("public_url", "must be an address such as https://bridge.example.nl"
                                     f" (http:// or https://, no query), got {s.public_url!r}")
    sec.done()
    return s


def build(settings: WebSettings, app: StatusPort) -> "WebServer":
    """The web part; raises ConfigError when a secret the channel's routes need is not set."""
    return WebServer(settings, app)


class WebServer(BasePart):
    background = True  # cancelled by the supervisor after the dispatcher has finished

    def __init__(self, settings: WebSettings, source: StatusPort):
        self.settings = settings
        self.source = source
        self.metrics = Metrics(source)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.started = asyncio.Event()
        self.requests = 0  # requests to the channel's routes
        self.web = web.Application(client_max_size=settings.max_body)
        self.web.router.add_get("/healthz", self.healthz)
        self.web.router.add_get("/metrics", self.metrics_page)
        # Fail at start-up, with the variable's name, rather than at the first request.
        self.channel_routes: list[Route] = list(source.channel.routes(settings.options))
        for route in self.channel_routes:
            self.web.router.add_route(route.method, route.path, self._serve(route.handler))
        # -- the operator console ([web] console = true): its own pages under /console/
        self.console = None
        if settings.console:
            from bridge.web.console import mount

            self.console = mount(self.web, settings, source)

    def _serve(self, handler: Callable[[HttpRequest], Awaitable[HttpResponse]]
               ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            self.requests += 1
            req = HttpRequest(method=request.method, path=request.path, query=request.query,
                              headers=request.headers, body=await request.read())
            r = await handler(req)
            return web.Response(status=r.status, text=r.text, content_type=r.content_type)

        return serve

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind ``host:port`` now. The daemon calls this before its tasks start, so a port in
        use stops it at once ("cannot start: ...", exit 78) instead of crashing the
        supervised web task over and over."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.web, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.settings.host, self.settings.port
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        except OSError as e:
            await runner.cleanup()
            reason = str(e.strerror or e)
            if "address already in use" in reason.lower():
                reason = "address already in use"
            raise OSError(e.errno, f"web.port: {host}:{port}: {reason}") from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addrs = runner.addresses
        self.port = addrs[0][1] if addrs else port
        paths = sorted({r.path for r in self.channel_routes}) + ["/healthz", "/metrics"]
        if self.console is not None:
            paths.append("/console/")
        log.info("web: listening on http://%s:%d (%s)", host, self.port, ", ".join(paths))
        if self.console is not None:
            self.console.started(self.port)
        self.started.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        if self._runner is None:  # not started by the daemon, or restarted after a crash
            await self.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close the listening socket and the connections (idempotent)."""
        self.started.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def describe(self) -> dict[str, object]:
        return {"listen": f"{self.settings.host}:{self.port or self.settings.port}",
                "webhook": bool(self.channel_routes), "requests": self.requests,
                **({"console": self.console.url} if self.console is not None else {})}

    # -- health and metrics -----------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        h = self.source.health()
        s = self.source.sending(h)
        ok = not s.urgent
        body: dict[str, object] = {
            "status": "ok" if ok else "unhealthy",
            "state": s.state, "reason": s.reason, "since": s.since,
            "store": "ok" if h.store_ok else "unreachable",
            "channel": h.channel, "paused": h.paused, "uptime_s": h.uptime_s,
            "rate": s.rate, "retrying": s.retrying, "throttled": s.throttled}
        if h.store_problem:
            body["store_problem"] = h.store_problem
        if h.queue_depth is not None:
            body["queue_depth"] = h.queue_depth
        return web.json_response(body, status=200 if ok else 503,
                                 dumps=lambda o: json.dumps(o, default=str))

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
