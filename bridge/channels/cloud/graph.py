"""Meta's Graph API over HTTP: the client, its answers, and the error classes.

Sending: ``POST {base_url}/{api_version}/{phone_number_id}/messages`` with a bearer token,
over one shared ``aiohttp.ClientSession`` (HTTP/1.1, keep-alive, at most
``max_connections``). Every answer is reduced to a :class:`Reply`; errors are classified by
Meta's ``error.code`` (never the HTTP status), see :func:`classify` and
https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes.

Why aiohttp's client and not httpx (which the channel used before): at 1,000 messages a
second the request path is most of the channel's CPU, and httpx's client layer (request
and header models, the cookie jar it fills from every answer, its response stream) cost
about 0.2 ms per request on top of the aiohttp transport it ran over, more than the
transport itself (docs/cloud-api.md, "Tests and benchmark").

An answer without Meta's JSON (an HTML page or an empty body from a proxy or Meta's edge)
has no code; it is judged by its HTTP status (RFC 9110 15): 408, 429 and 5xx are transient
(``Reply.network`` says what came, ``Reply.retry_after`` honours a ``Retry-After`` header),
any other 4xx fails for that message with a clear error. A request that runs past
``timeout`` (or cannot connect) is transient too.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
import certifi
from yarl import URL

from bridge import __version__
from bridge.channels.cloud.settings import CloudSettings, TemplateMap

# -- error classes (by error.code) ------------------------------------------------------------
TRANSIENT = frozenset({130429, 131000, 131016, 131057, 1, 2, 4, 80007})
PAIR_RATE = 131056  # too many messages to one recipient
# Transient codes that say the sender as a whole is over a limit (Meta, "Throughput" and
# "Rate limits": 130429 Cloud API throughput, 80007 WABA rate limit, 4 application rate
# limit): the dispatcher lowers its global rate. HTTP 429 without a JSON error counts too.
GLOBAL_RATE_LIMIT = frozenset({130429, 80007, 4})
UNDELIVERABLE = 131026
REENGAGE = 131047  # more than 24 h since the recipient wrote: only a template may go
TEMPLATE = frozenset({132000, 132001, 132012, 132018})
PAUSE = frozenset({190, 0, 3, 10, 368, 131031})

ErrorClass = Literal["transient", "pair_rate", "unreachable", "reengage", "template", "pause",
                     "permanent"]


def classify(code: int | None) -> ErrorClass:
    """The class of a Graph API / webhook error code.

    transient (try again later), pair_rate (back off per recipient), unreachable (not a
    WhatsApp user), reengage (outside the 24-hour window), template (the template is
    rejected), pause (token or account policy: nothing can be sent); anything else
    (including no code) is "permanent" for that message.
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


@dataclass
class Reply:
    """One Graph API answer, reduced to what we act on: a message id (``wamid``; "" when
    accepted without one), or Meta's error ``code`` and ``title``, or ``network`` trouble
    worth a retry (a timeout, a connection error, or an answer without Meta's JSON whose
    status is 408, 429 or 5xx; for an HTTP answer it says which, e.g. "HTTP 503 without
    JSON (text/html)"). Without a code and without ``network``, an error answer
    (``http`` 4xx) fails for good, ``title`` saying why. ``retry_after``: seconds the
    answer's ``Retry-After`` header asks us to wait (None: none sent)."""

    wamid: str | None = None
    code: int | None = None
    title: str = ""
    http: int = 0
    network: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.code is None and self.network is None and 200 <= self.http < 300


RETRY_AFTER_MAX = 3600.0  # seconds: a longer Retry-After is cut to this


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header value (RFC 9110 10.2.3: delay-seconds or an HTTP-date) in
    seconds from now, at least 0 and at most :data:`RETRY_AFTER_MAX`; None when absent or
    unreadable."""
    if not value or not value.strip():
        return None
    v = value.strip()
    if v.isdigit():
        return min(float(v), RETRY_AFTER_MAX)
    try:
        when = parsedate_to_datetime(v).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), RETRY_AFTER_MAX)


def _transient_status(status: int) -> bool:
    """HTTP statuses worth a retry when the answer has no error code of Meta's: 408
    Request Timeout, 429 Too Many Requests and every 5xx (RFC 9110 15.5.9, RFC 6585 4,
    RFC 9110 15.6)."""
    return status in (408, 429) or status >= 500


def _body_kind(r: "_Answer") -> str:
    """"text/html", "an empty body", ... for the error text of an answer without JSON."""
    if not r.content.strip():
        return "an empty body"
    return (r.headers.get("content-type") or "unknown content").split(";")[0].strip()


# -- payloads -----------------------------------------------------------------------------------
def addressee(to: str) -> dict[str, str]:
    if to.startswith("user:"):
        return {"recipient": to[5:]}  # a business-scoped user id (BSUID)
    return {"to": to if to.startswith("+") else "+" + to}


def text_payload(to: str, text: str) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual",
            **addressee(to), "type": "text", "text": {"preview_url": False, "body": text}}


def _template(tm: TemplateMap, params: Sequence[str]) -> dict[str, object]:
    template: dict[str, object] = {"name": tm.name, "language": {"code": tm.language}}
    if params:
        template["components"] = [{"type": "body", "parameters": [
            {"type": "text", "text": p} for p in params]}]
    return template


def template_payload(to: str, tm: TemplateMap, params: list[str]) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual",
            **addressee(to), "type": "template", "template": _template(tm, params)}


# The JSON body as httpx wrote it (compact, UTF-8, no NaN); one encoder for every request.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@functools.lru_cache(maxsize=64)
def _template_json(tm: TemplateMap, params: tuple[str, ...]) -> str:
    return _encode_json(_template(tm, params))


def template_body(to: str, tm: TemplateMap, params: list[str]) -> bytes:
    """``template_payload(to, tm, params)`` as the JSON request body, byte for byte, with
    the template part (the same for every recipient of a notice) encoded once."""
    return ('{"messaging_product":"whatsapp","recipient_type":"individual",'
            + _encode_json(addressee(to))[1:-1] + ',"type":"template","template":'
            + _template_json(tm, tuple(params)) + "}").encode()


# -- the token ------------------------------------------------------------------------------------
class Token:
    """The access token, from ``token_file`` or the ``token_env`` environment variable,
    read again at most once a second (a renewed token file is picked up without a
    restart; the dispatcher asks for the token with every send)."""

    def __init__(self, settings: CloudSettings):
        self._settings = settings
        self._cached: str | None = None
        self._read_at = -1e9

    def get(self) -> str | None:
        t = time.monotonic()
        if t - self._read_at <= 1.0:
            return self._cached
        self._read_at = t
        s = self._settings
        if s.token_file:
            try:
                self._cached = s.token_file.read_text().strip() or None
            except OSError:
                self._cached = None
        else:
            self._cached = os.environ.get(s.token_env) or None
        return self._cached

    def missing(self) -> str:
        """Why there is no token, for the pause reason."""
        s = self._settings
        where = f"file {s.token_file}" if s.token_file else f"environment variable {s.token_env}"
        return f"token: {where} is not set"


# -- the client -----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Answer:
    """One HTTP answer read in full: its status, headers (case-insensitive names) and body;
    ``json()`` raises ValueError when the body is not JSON."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


def tls_context() -> ssl.SSLContext:
    """How Meta's certificate is verified, as the httpx client did: against the CA file
    or directory ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` names, else certifi's bundle."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


class GraphClient:
    """The Graph API calls the channel makes; never raises for network or API errors."""

    def __init__(self, settings: CloudSettings):
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._messages_url = URL(settings.messages_url)  # parsed once, not per send
        self.requests = 0

    def _http(self) -> aiohttp.ClientSession:
        """The shared session, made on first use (inside the running event loop):
        keep-alive connections, at most ``max_connections``; ``timeout`` seconds per
        request, ``min(5, timeout)`` to connect; no cookies (the Graph API sets none we
        need); TLS verified as :func:`tls_context` says; redirects are not followed; no
        proxy (as before: httpx ignored proxy variables once it was given a transport)."""
        if self._session is None:
            s = self._settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.max_connections, keepalive_timeout=30.0,
                                               ssl=tls_context()),
                timeout=aiohttp.ClientTimeout(total=s.timeout, sock_connect=min(5.0, s.timeout)),
                headers={"User-Agent": f"storingsbridge/{__version__}"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def send_message(self, token: str,
                     payload: dict[str, object] | bytes) -> Coroutine[Any, Any, Reply]:
        """``POST .../messages`` with ``payload`` (a dict, or its JSON body already
        encoded); await the result (no coroutine layer of its own: it runs per send)."""
        return self._call("POST", self._messages_url, token, payload)

    async def probe(self, token: str) -> Reply:
        """One cheap authenticated ``GET`` of the phone number (``?fields=id``)."""
        return await self._call("GET", self._settings.probe_url + "?fields=id", token)

    async def _call(self, method: str, url: str | URL, token: str,
                    payload: dict[str, object] | bytes | None = None) -> Reply:
        self.requests += 1
        headers = {"Authorization": f"Bearer {token}"}
        body = None
        if payload is not None:
            body = payload if isinstance(payload, bytes) else _encode_json(payload).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with self._http().request(method, url, data=body, headers=headers,
                                            allow_redirects=False) as resp:
                r = _Answer(resp.status, resp.headers, await resp.read())
        except TimeoutError as e:  # asyncio's, and aiohttp's own timeouts derive from it
            return Reply(network=f"timeout ({type(e).__name__}), {self._settings.timeout:g} s")
        except (aiohttp.ClientError, OSError) as e:
            return Reply(network=f"{type(e).__name__}: {e}")
        status = r.status_code
        wait = retry_after(r.headers.get("retry-after")) if status >= 400 else None
        try:
            data = r.json()
        except ValueError:
            data = None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), int):
            title = str(err.get("error_user_title") or err.get("message") or err.get("type") or "")
            return Reply(code=err["code"], title=title, http=status, retry_after=wait)
        if status >= 400 or not isinstance(data, dict) or err is not None:
            # No error code of Meta's (an HTML page, an empty body, JSON without a code):
            # judged by the HTTP status.
            what = (f"HTTP {status} without JSON ({_body_kind(r)})" if not isinstance(data, dict)
                    else f"HTTP {status} without an error code")
            if _transient_status(status):
                return Reply(http=status, title=what, network=what, retry_after=wait)
            if status >= 400:  # refused for good: 400, 401, 403, 404, 413, ...
                return Reply(http=status, title=f"{what}: refused, not retried")
            return Reply(http=status, title=what)  # 2xx/3xx without JSON: not known to be sent
        wamid = None
        msgs = data.get("messages")
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
            wamid = msgs[0].get("id")
        return Reply(wamid=wamid or "", http=r.status_code)

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
