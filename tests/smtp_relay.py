"""A real SMTP relay on loopback for mail-back tests: aiosmtpd in its own thread, optionally
with STARTTLS (a self-signed certificate made with openssl) and AUTH, recording what it
accepts. It can be stopped and started again on the same port (a relay that goes away).

    relay = SmtpRelay(tls=True, auth=("bridge", "geheim")).start()
    ... relay.port, relay.cert (the CA file for the client), relay.messages ...
    relay.stop()
"""

from __future__ import annotations

import email
import logging
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from email import policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from dovecot import self_signed
from helpers import free_port

# aiosmtpd sets its own deprecated Session.login_data after every AUTH and warns about it
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
logging.getLogger("mail.log").addFilter(
    lambda r: "Session.login_data is deprecated" not in r.getMessage())


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(  # type: ignore[return-value]
            self.data, policy=policy.default)

    @property
    def body(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")


class _Handler:
    def __init__(self, relay: "SmtpRelay"):
        self.relay = relay

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = self.relay.refuse.get(address.lower())
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.relay._record(Received(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or envelope.content),
            tls=session.ssl is not None,
            login=session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword) else None))
        return "250 2.0.0 Ok: queued as T" + str(len(self.relay.messages))


class SmtpRelay:
    def __init__(self, *, tls: bool = False, auth: tuple[str, str] | None = None,
                 port: int | None = None, cert_dir: Path | None = None):
        self.port = port or free_port()
        self.auth = auth
        self.tls = tls
        self.cert: Path | None = None
        self._ctx = None
        if tls:
            import tempfile

            d = cert_dir or Path(tempfile.mkdtemp(prefix="bridge-relay-"))
            self.cert, key = self_signed(d)
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ctx.load_cert_chain(str(self.cert), str(key))
        self.messages: list[Received] = []
        self.refuse: dict[str, str] = {}  # recipient -> the reply to its RCPT (e.g. "550 ...")
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def _record(self, r: Received) -> None:
        with self._lock:
            self.messages.append(r)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and self.auth and \
                (auth_data.login.decode(), auth_data.password.decode()) == self.auth:
            return AuthResult(success=True, auth_data=auth_data)
        self.auth_failures += 1
        return AuthResult(success=False, handled=False)

    def start(self) -> "SmtpRelay":
        kwargs: dict = {}
        if self.tls:
            kwargs.update(tls_context=self._ctx, require_starttls=True)
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                      ready_timeout=10, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait(self, n: int = 1, timeout: float = 20.0) -> list[Received]:
        """Block until ``n`` messages arrived; returns them all (raises on timeout)."""
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            with self._lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise TimeoutError(f"relay: {len(self.messages)} of {n} messages after {timeout} s")

    def config(self, *, operators: tuple[str, ...] = ("beheer@cbgconnect.example",),
               extra: str = "") -> str:
        """A ``[mail_out]`` table for this relay (password in BRIDGE_TEST_RELAY_PASSWORD)."""
        lines = ["[mail_out]", 'host = "127.0.0.1"' if not self.tls else 'host = "localhost"',
                 f"port = {self.port}", f'tls = "{"starttls" if self.tls else "none"}"',
                 'from = "storingsbridge@cbgconnect.example"', 'from_name = "Storingsbridge"',
                 "operators = [" + ", ".join(f'"{o}"' for o in operators) + "]", "timeout = 5"]
        if self.cert:
            lines.append(f'tls_ca_file = "{self.cert}"')
        if self.auth:
            lines += [f'username = "{self.auth[0]}"', 'password_env = "BRIDGE_TEST_RELAY_PASSWORD"']
        return "\n".join(lines) + "\n" + extra
