"""SMTP intake (aiosmtpd) on the daemon's own event loop.

Replies that mean what they say, each as early as it can be known:

* MAIL FROM / RCPT TO: 553 5.6.7 for an address with 8-bit bytes without the SMTPUTF8
  parameter, or that is not valid UTF-8 with it (RFC 6531 3.4, 3.7.4); 550 for a sender
  that is not on the allow-list or an unknown recipient.
* DATA: 550 5.5.2 for a mail with bare LF line endings (a LF without CR before it, RFC 5321
  2.3.8), whatever its length, and the connection is closed: as hardened MTAs do since SMTP
  smuggling (Postfix ``smtpd_forbid_bare_newline``). aiosmtpd itself only ends DATA at
  CRLF.CRLF, but reads a bare-LF mail as one long line: "500 Line too long" over 1,000
  bytes, accepted under. 550 5.6.0 for a mail without exactly one From header (RFC 5322
  3.6), which the pipeline could only reject after a 250. 552 for a mail over
  ``smtp.max_size``, 451 when the store cannot take the mail, and **250 only after the
  mail is committed** (fsync'd) to the store. Processing happens after the 250.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from bridge.config import ConfigError, SmtpConfig, secret
from bridge.core.mail import header_problem
from bridge.core.models import RawMail
from bridge.core.senders import SenderRules, envelope_allowed
from bridge.part import BasePart
from bridge.port import IntakePort, StoreUnavailable

log = logging.getLogger("bridge.intake.smtp")

BARE_LF_REPLY = ("550 5.5.2 Message refused: bare LF line endings (every line must end with"
                 " CRLF, RFC 5321 2.3.8)")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# The end of DATA as any client may write it: CRLF.CRLF, or with bare LFs (LF.LF, LF.CRLF)
_END_OF_DATA = re.compile(rb"\n\.\r?\n")


def _address_problem(address: str, options: list[str], what: str) -> str | None:
    """A 553 reply for an envelope address with 8-bit bytes (RFC 6531): without SMTPUTF8
    only ASCII is allowed; with it, UTF-8 (aiosmtpd keeps other bytes as surrogates)."""
    if address.isascii():
        return None
    if "SMTPUTF8" not in (o.upper() for o in options):
        return (f"553 5.6.7 Non-ASCII addresses not permitted for that {what} without"
                " SMTPUTF8")
    if any("\udc80" <= c <= "\udcff" for c in address):
        return f"553 5.6.7 The {what} address is not valid UTF-8"
    return None


class BareLfWatch:
    """Watches the bytes of one DATA phase for a bare LF, up to the end of the data.

    :meth:`feed` takes each chunk as it arrives and returns True when the data has ended
    (CRLF.CRLF, or a bare-LF end such as LF.CRLF) after a bare LF was seen: the caller then
    refuses the mail. After a clean end it watches no further (what follows are commands).
    """

    def __init__(self) -> None:
        self._tail = b"\r\n"  # the DATA command line ended with CRLF
        self.seen = False
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        if self.done:
            return False
        buf = self._tail + chunk
        start = len(self._tail)
        end = _END_OF_DATA.search(buf, max(start - 4, 0))
        stop = end.end() if end else len(buf)
        if not self.seen and _BARE_LF.search(buf, max(start - 1, 0), stop):
            self.seen = True
        if end is not None:
            self.done = True
            return self.seen
        self._tail = buf[-4:]
        return False


class Handler:
    def __init__(self, cfg: SmtpConfig, senders: SenderRules, port: IntakePort):
        self.cfg = cfg
        self.senders = senders
        self.port = port
        self.accepted = 0
        self.refused = 0
        self.deferred = 0  # answered 451: the store could not commit (the sender tries again)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        problem = _address_problem(address or "", mail_options, "sender")
        if problem:
            self.refused += 1
            log.warning("smtp: refused MAIL FROM %a from %s: %s", address,
                        session.peer[0] if session.peer else "?", problem)
            return problem
        if self.cfg.check_envelope_sender and not envelope_allowed(address or "", self.senders):
            self.refused += 1
            log.warning("smtp: refused MAIL FROM <%s> from %s: sender not on the allow-list",
                        address, session.peer[0] if session.peer else "?")
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        problem = _address_problem(address or "", rcpt_options, "recipient")
        if problem:
            self.refused += 1
            log.warning("smtp: refused RCPT TO %a: %s", address, problem)
            return problem
        if self.cfg.recipients and address.lower() not in self.cfg.recipients:
            self.refused += 1
            log.warning("smtp: refused RCPT TO <%s>: unknown recipient", address)
            return "550 5.1.1 Unknown recipient"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if _BARE_LF.search(data):  # sent before our 354 (the watch sees the rest)
            self.refused += 1
            log.warning("smtp: refused a mail from <%s>: bare LF line endings",
                        envelope.mail_from)
            return BARE_LF_REPLY
        problem = header_problem(data)
        if problem:
            self.refused += 1
            log.warning("smtp: refused a mail from <%s> (%d bytes): %s", envelope.mail_from,
                        len(data), problem)
            return f"550 5.6.0 Message refused: {problem}"
        try:
            mail_id = self.port.store_mail(RawMail(data=data, source="smtp",
                                                   envelope_from=envelope.mail_from))
        except StoreUnavailable as e:
            self.deferred += 1
            # A full store is logged once a minute by the store's health (with a count of
            # the mails refused): one quiet line per mail here, not a wall of errors.
            log.log(logging.INFO if e.problem else logging.WARNING,
                    "smtp: could not store a mail from <%s> (%d bytes): %s; answered 451",
                    envelope.mail_from, len(data), e.problem or e)
            return "451 4.3.0 Local storage error, try again later"
        except Exception:  # any bug: never a 250 without a commit
            self.deferred += 1
            log.exception("smtp: could not store a mail from <%s> (%d bytes); answered 451",
                          envelope.mail_from, len(data))
            return "451 4.3.0 Local storage error, try again later"
        self.accepted += 1
        log.info("smtp: mail %d from <%s> stored (%d bytes)", mail_id, envelope.mail_from, len(data))
        return f"250 2.0.0 OK queued as {mail_id}"


def _authenticator(cfg: SmtpConfig):
    user = secret(cfg.auth_username_env, "smtp.auth_username_env").encode()
    password = secret(cfg.auth_password_env, "smtp.auth_password_env").encode()

    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and hmac.compare_digest(auth_data.login, user)
              and hmac.compare_digest(auth_data.password, password))
        if not ok:
            log.warning("smtp: failed %s login from %s", mechanism,
                        session.peer[0] if session.peer else "?")
        # handled=False: aiosmtpd then answers 535 itself (its default, True, answers nothing)
        return AuthResult(success=ok, handled=False)

    return check


class _SMTP(SMTP):
    """aiosmtpd's SMTP server that refuses bare LF in DATA at any length (see the module
    docstring): the bytes of the DATA phase are watched as they arrive (asyncio's
    ``data_received``), and at the end of a mail with a bare LF the 550 is written and the
    connection closed, before aiosmtpd would answer "500 Line too long" or accept it."""

    def __init__(self, *args, on_bare_lf=None, **kw):
        super().__init__(*args, **kw)
        self._watch: BareLfWatch | None = None
        self._on_bare_lf = on_bare_lf

    async def smtp_DATA(self, arg):
        self._watch = BareLfWatch()
        try:
            await super().smtp_DATA(arg)
        finally:
            self._watch = None

    def data_received(self, data: bytes) -> None:
        watch = self._watch
        if watch is not None and watch.feed(data) and self.transport is not None:
            self._watch = None
            if self._on_bare_lf is not None:
                self._on_bare_lf(self.session.peer if self.session else None)
            self.transport.write(BARE_LF_REPLY.encode() + b"\r\n")
            self.transport.close()
            return
        super().data_received(data)


class SmtpIntake(BasePart):
    def __init__(self, cfg: SmtpConfig, senders: SenderRules, port: IntakePort):
        self.cfg = cfg
        self.handler = Handler(cfg, senders, port)
        self.server: asyncio.base_events.Server | None = None
        self.port: int | None = None

    def _factory(self):
        kw: dict = {}
        if self.cfg.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            for key, path in (("tls_cert", self.cfg.tls_cert), ("tls_key", self.cfg.tls_key)):
                if not path or not path.is_file():
                    raise ConfigError(f"smtp.{key}: file not found: {path}")
            try:
                ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"smtp.tls_cert: cannot load {self.cfg.tls_cert} with "
                                  f"{self.cfg.tls_key}: {e}") from None
            kw["tls_context"] = ctx
            kw["require_starttls"] = self.cfg.require_starttls
        if self.cfg.auth_username_env:
            kw["authenticator"] = _authenticator(self.cfg)
            kw["auth_required"] = True
            kw["auth_require_tls"] = bool(self.cfg.tls_cert)
        return lambda: _SMTP(self.handler, data_size_limit=self.cfg.max_size,
                             enable_SMTPUTF8=True, hostname="storingsbridge",
                             ident="storingsbridge", on_bare_lf=self._bare_lf, **kw)

    def _bare_lf(self, peer) -> None:
        self.handler.refused += 1
        log.warning("smtp: refused a mail from %s: bare LF line endings (550, connection"
                    " closed)", peer[0] if peer else "?")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._factory(), host=self.cfg.host, port=self.cfg.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("smtp: listening on %s:%d", self.cfg.host, self.port)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve (the server runs from :meth:`start`) until ``stop``; then stop accepting."""
        await stop.wait()
        await self.stop()

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            log.info("smtp: stopped")

    def describe(self) -> dict:
        return {"listening": self.server is not None, "port": self.port,
                "accepted": self.handler.accepted, "refused": self.handler.refused,
                "deferred": self.handler.deferred}
