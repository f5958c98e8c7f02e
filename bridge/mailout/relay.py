"""The SMTP conversation with the relay (aiosmtplib), reduced to one answer per message.

aiosmtplib is a maintained asyncio SMTP client (RFC 5321, ESMTP, STARTTLS per RFC 3207,
implicit TLS per RFC 8314, AUTH PLAIN/LOGIN/CRAM-MD5 per RFC 4954) that runs in our event
loop; see docs/architecture.md.

An answer is ``permanent`` only when the relay refused the message itself with a 5xx reply
(RFC 5321 section 4.2.1: do not repeat); everything else (no connection, a timeout, a 4xx,
a refused login, no STARTTLS) is passing: the message stays queued and is tried again, so
a relay that is down, or a password being changed, delays mail and loses none.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from typing import Sequence

import aiosmtplib

from bridge.mailout.settings import MailOutSettings


@dataclass(frozen=True)
class RelayAnswer:
    """What became of one message: ``text`` is one line, e.g. ``250 2.0.0 Ok: queued as
    4Fx`` or ``connect: [Errno 111] Connection refused``."""

    ok: bool
    text: str
    permanent: bool = False
    code: int | None = None


class RelayError(Exception):
    """The conversation failed before a message could be sent (connect, TLS, AUTH)."""

    def __init__(self, answer: RelayAnswer):
        super().__init__(answer.text)
        self.answer = answer


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:300]


def answer_of(e: BaseException, step: str) -> RelayAnswer:
    """The answer an exception from ``step`` (connect, starttls, login, send) stands for."""
    if isinstance(e, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in e.recipients]
        text = "; ".join(f"{r.recipient}: {r.code} {_one_line(r.message)}" for r in e.recipients)
        return RelayAnswer(False, f"recipients refused: {text}",
                           permanent=bool(codes) and all(c >= 500 for c in codes),
                           code=codes[0] if codes else None)
    if isinstance(e, aiosmtplib.SMTPResponseException):
        permanent = step == "send" and e.code >= 500
        return RelayAnswer(False, f"{step}: {e.code} {_one_line(e.message)}", permanent, e.code)
    if isinstance(e, aiosmtplib.SMTPException):
        return RelayAnswer(False, f"{step}: {_one_line(e)}")
    if isinstance(e, OSError):
        return RelayAnswer(False, f"{step}: {_one_line(e.strerror or e)}")
    return RelayAnswer(False, f"{step}: {type(e).__name__}: {_one_line(e)}")


class Relay:
    """Connections to the configured relay; ``password`` from ``password_env``."""

    def __init__(self, settings: MailOutSettings, password: str | None = None):
        self.settings = settings
        self.password = password

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.tls == "none":
            return None
        cafile = str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None
        return ssl.create_default_context(cafile=cafile)

    async def connect(self) -> aiosmtplib.SMTP:
        """An open, secured and logged-in session; raises :class:`RelayError`."""
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host, port=s.relay_port, timeout=s.timeout,
            use_tls=s.tls == "implicit", start_tls=False, tls_context=self._tls_context(),
            local_hostname=s.from_addr.rpartition("@")[2])
        step = "connect"
        try:
            await smtp.connect()
            if s.tls == "starttls":
                step = "starttls"
                await smtp.starttls()
            if s.username:
                step = "login"
                await smtp.login(s.username, self.password or "")
        except Exception as e:
            smtp.close()
            raise RelayError(answer_of(e, step)) from None
        except BaseException:  # cancelled (a stop)
            smtp.close()
            raise
        return smtp

    async def send(self, smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str],
                   data: bytes) -> RelayAnswer:
        """Send one message in an open session (MAIL, RCPT, DATA). Recipients refused
        while others were taken are named in the answer; the message counts as sent."""
        try:
            refused, message = await smtp.sendmail(sender, list(recipients), data)
        except Exception as e:
            return answer_of(e, "send")
        text = f"250 {_one_line(message)}"
        if refused:
            text += "; refused: " + ", ".join(f"{r} ({v.code})" for r, v in refused.items())
        return RelayAnswer(True, text, code=250)

    @staticmethod
    async def close(smtp: aiosmtplib.SMTP) -> None:
        """QUIT, or drop the connection when the relay does not answer."""
        try:
            await smtp.quit()
        except Exception:
            smtp.close()

    async def send_now(self, sender: str, recipients: Sequence[str],
                       data: bytes) -> RelayAnswer:
        """One message in a session of its own (``bridge mail test``): connect, TLS, AUTH,
        send, QUIT; every failure is an answer, never an exception."""
        try:
            smtp = await self.connect()
        except RelayError as e:
            return e.answer
        try:
            return await self.send(smtp, sender, recipients, data)
        finally:
            with contextlib.suppress(Exception):
                await self.close(smtp)
