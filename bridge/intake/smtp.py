"""SMTP intake (aiosmtpd) on the daemon's own event loop.

Replies: 550 for a sender that is not on the allow-list or an unknown recipient, 552 for a
mail over ``smtp.max_size``, 451 when the store cannot take the mail, and **250 only after
the mail is committed** (fsync'd) to the store. Processing happens after the 250.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from bridge.config import ConfigError, SmtpConfig, secret
from bridge.core.models import RawMail
from bridge.core.senders import SenderRules, envelope_allowed
from bridge.port import IntakePort

log = logging.getLogger("bridge.intake.smtp")


class Handler:
    def __init__(self, cfg: SmtpConfig, senders: SenderRules, port: IntakePort):
        self.cfg = cfg
        self.senders = senders
        self.port = port
        self.accepted = 0
        self.refused = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.cfg.check_envelope_sender and not envelope_allowed(address or "", self.senders):
            self.refused += 1
            log.warning("smtp: refused MAIL FROM <%s> from %s: sender not on the allow-list",
                        address, session.peer[0] if session.peer else "?")
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
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
        try:
            mail_id = self.port.store_mail(RawMail(data=data, source="smtp",
                                                   envelope_from=envelope.mail_from))
        except Exception as e:  # StoreUnavailable, or any bug: never a 250 without a commit
            log.error("smtp: could not store a mail from <%s> (%d bytes): %s; answered 451",
                      envelope.mail_from, len(data), e)
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


class SmtpIntake:
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
        return lambda: SMTP(self.handler, data_size_limit=self.cfg.max_size,
                            enable_SMTPUTF8=True, hostname="storingsbridge",
                            ident="storingsbridge", **kw)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._factory(), host=self.cfg.host, port=self.cfg.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("smtp: listening on %s:%d", self.cfg.host, self.port)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            log.info("smtp: stopped")

    def describe(self) -> dict:
        return {"listening": self.server is not None, "port": self.port,
                "accepted": self.handler.accepted, "refused": self.handler.refused}
