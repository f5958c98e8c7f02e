"""SMTP answers that mean what they say, over raw sockets against the real intake (aiosmtpd
with the store behind it): 8-bit envelope addresses, bare LF line endings at any length
(SMTP smuggling), mails without a From header. Each is refused with a 5xx when it can be
known, and nothing is stored; a proper mail still gets its 250."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from bridge.config import load
from bridge.intake.smtp import BareLfWatch, SmtpIntake
from bridge.mailroom import Mailroom
from bridge.store import Store
from bridge.store.db import Database
from helpers import write_config

KPN = b"storingsmeldingen@wholesale.kpn.example"


def mail(lines: list[str], eol: bytes = b"\r\n") -> bytes:
    return eol.join(x.encode() for x in lines) + eol


HEAD = ["From: KPN <storingsmeldingen@wholesale.kpn.example>", "To: noc@cbgconnect.example",
        "Subject: Storingsmelding KPN: Internet - Ede (INC000077700001) - Nieuw",
        "Message-ID: <answers-1@kpn.example>", ""]
BODY = ["Ticketnummer: INC000077700001", "Status: Nieuw", "Getroffen gebied: Ede"]


class Client:
    """A plain socket SMTP client that sends exactly the bytes it is given."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        assert self.reply().startswith("220")

    def reply(self) -> str:
        """One (possibly multi-line) reply, as text; "" when the server closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return "\n".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, line: bytes) -> str:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def envelope(self, sender: bytes = KPN, options: bytes = b"") -> None:
        assert self.cmd(b"EHLO client.example").startswith("250")
        assert self.cmd(b"MAIL FROM:<" + sender + b">" + options).startswith("250")
        assert self.cmd(b"RCPT TO:<noc@localhost>").startswith("250")
        assert self.cmd(b"DATA").startswith("354")

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def intake(tmp_path):
    cfg = load(write_config(tmp_path, smtp=True, smtp_port=0))
    store = Store(Database(tmp_path / "bridge.db"))
    smtp = SmtpIntake(cfg.smtp, cfg.senders, Mailroom(store))
    await smtp.start()
    smtp.stored = lambda: store.db.scalar("SELECT COUNT(*) FROM raw_mails")  # type: ignore[attr-defined]
    yield smtp
    await smtp.stop()
    store.close()


async def run(fn, *args):
    return await asyncio.to_thread(fn, *args)


# --- a proper mail (the control) --------------------------------------------------------------


async def test_a_proper_mail_gets_250_and_is_stored(intake):
    def client():
        c = Client(intake.port)
        c.envelope()
        c.sock.sendall(mail(HEAD + BODY) + b".\r\n")
        return c.reply()

    assert (await run(client)).startswith("250 2.0.0 OK queued as")
    assert intake.stored() == 1


async def test_crlf_split_between_chunks_is_no_bare_lf(intake):
    """A CR at the end of one TCP segment and its LF at the start of the next is a CRLF."""
    def client():
        c = Client(intake.port)
        c.envelope()
        data = mail(HEAD + BODY) + b".\r\n"
        for i in range(0, len(data), 7):
            piece = data[i:i + 7]
            c.sock.sendall(piece)
            if piece.endswith(b"\r"):
                time.sleep(0.02)  # the LF arrives in a later read
        return c.reply()

    assert (await run(client)).startswith("250"), "a split CRLF was taken for a bare LF"
    assert intake.stored() == 1


# --- 8-bit envelope addresses (RFC 6531) -------------------------------------------------------


async def test_8bit_sender_without_smtputf8_gets_553_at_mail_from(intake):
    def client():
        c = Client(intake.port)
        c.cmd(b"EHLO client.example")
        answer = c.cmd(b"MAIL FROM:<st\xf6ring@kpn.example>")
        then = c.cmd(b"MAIL FROM:<" + KPN + b">")  # the session goes on
        return answer, then

    answer, then = await run(client)
    assert answer.startswith("553 5.6.7"), answer
    assert "SMTPUTF8" in answer
    assert then.startswith("250")
    assert intake.stored() == 0


async def test_8bit_sender_that_is_not_utf8_gets_553_even_with_smtputf8(intake):
    def client():
        c = Client(intake.port)
        c.cmd(b"EHLO client.example")
        return c.cmd(b"MAIL FROM:<st\xf6ring@kpn.example> SMTPUTF8")

    answer = await run(client)
    assert answer.startswith("553 5.6.7") and "UTF-8" in answer, answer


async def test_utf8_sender_with_smtputf8_is_accepted_and_stored(intake):
    def client():
        c = Client(intake.port)
        c.envelope("störing@kpn.example".encode(), b" SMTPUTF8")
        c.sock.sendall(mail(HEAD + BODY) + b".\r\n")
        return c.reply()

    assert (await run(client)).startswith("250"), "a valid SMTPUTF8 sender must not give 451"
    assert intake.stored() == 1


async def test_8bit_recipient_without_smtputf8_gets_553(intake):
    def client():
        c = Client(intake.port)
        c.cmd(b"EHLO client.example")
        assert c.cmd(b"MAIL FROM:<" + KPN + b">").startswith("250")
        return c.cmd(b"RCPT TO:<st\xf6ringen@cbgconnect.example>")

    answer = await run(client)
    assert answer.startswith("553 5.6.7") and "recipient" in answer, answer


# --- bare LF, at any length --------------------------------------------------------------------


def _bare_lf(port: int, data: bytes) -> tuple[str, bool]:
    c = Client(port)
    c.envelope()
    c.sock.sendall(data)
    answer = c.reply()
    return answer, c.closed()


@pytest.mark.parametrize("size", ["short", "long"])
async def test_bare_lf_mail_is_refused_with_a_reply_naming_bare_lf(intake, size):
    """Under 1,000 bytes aiosmtpd accepted it, over 1,000 it said "500 Line too long"."""
    body = BODY + (["Omschrijving: " + "kabel " * 10] * (40 if size == "long" else 1))
    data = mail(HEAD + body, eol=b"\n")
    assert (len(data) > 1000) == (size == "long") and max(map(len, data.split(b"\n"))) < 100
    answer, closed = await run(_bare_lf, intake.port, data + b"\r\n.\r\n")
    assert answer.startswith("550 5.5.2") and "bare LF" in answer, answer
    assert closed
    assert intake.stored() == 0


@pytest.mark.parametrize("end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n"])
async def test_a_bare_lf_end_of_data_gets_the_answer_at_once(intake, end):
    """A client that ends the mail with LF.LF waits for an answer: it gets one, no hang."""
    data = mail(HEAD + BODY, eol=b"\n").rstrip(b"\n") + end
    answer, closed = await run(_bare_lf, intake.port, data)
    assert "bare LF" in answer and answer.startswith("5"), answer
    assert closed


async def test_smuggled_commands_after_a_bare_lf_end_are_never_run(intake):
    """SMTP smuggling: <LF>.<CRLF> then a second MAIL FROM inside the same DATA."""
    smuggled = (mail(HEAD + BODY) + b"Testing\n.\r\nMAIL FROM:<" + KPN + b">\r\n"
                b"RCPT TO:<noc@localhost>\r\nDATA\r\n" + mail(HEAD + ["smuggled"]) + b".\r\n")
    answer, closed = await run(_bare_lf, intake.port, smuggled)
    assert answer.startswith("550 5.5.2"), answer
    assert closed
    assert intake.stored() == 0


async def test_a_long_crlf_line_is_still_line_too_long(intake):
    """Only bare LF changed: a real line over 1,000 bytes keeps aiosmtpd's 500."""
    def client():
        c = Client(intake.port)
        c.envelope()
        c.sock.sendall(mail(HEAD + BODY + ["x" * 1200]) + b".\r\n")
        return c.reply()

    assert (await run(client)).startswith("500"), "a long CRLF line"
    assert intake.stored() == 0


def test_watch_sees_bare_lf_and_the_end_across_chunks():
    w = BareLfWatch()
    assert not w.feed(b"From: a@b\r")
    assert not w.feed(b"\nSubject: x\r\n\r\nok\r\n.")  # CR|LF split: no bare LF
    assert w.feed(b"\r\n") is False and w.done and not w.seen
    w = BareLfWatch()
    assert not w.feed(b"line one\nline two\r\n\r")
    assert w.feed(b"\n.\r\n") and w.seen


# --- a mail without a From header --------------------------------------------------------------


@pytest.mark.parametrize("head, why", [
    ([h for h in HEAD if not h.startswith("From:")], "no From header"),
    (["From: a@kpn.example"] + HEAD, "2 From headers"),
    ([""], "no From header"),  # not a mail at all: no header block
])
async def test_a_mail_without_exactly_one_from_gets_550_at_end_of_data(intake, head, why):
    def client():
        c = Client(intake.port)
        c.envelope()
        c.sock.sendall(mail(head + BODY) + b".\r\n")
        return c.reply(), c.cmd(b"NOOP")

    answer, then = await run(client)
    assert answer.startswith("550 5.6.0") and why in answer, answer
    assert then.startswith("250")  # the session goes on
    assert intake.stored() == 0
