"""Mail back: receipts to the support staff who forward KPN mails, and alerts to the
operators when sending stops (issue 13; docs/mailout.md).

An optional part (``[mail_out]``, see :data:`bridge.config.OPTIONAL_PARTS`)::

    settings.py   [mail_out] -> MailOutSettings; validate() against the intake addresses
    headers.py    pure: the header facts of a received mail
    receipts.py   pure: who gets a receipt (RFC 3834, no backscatter, no loops)
    reasons.py    pure: the pipeline's reasons in plain Dutch
    compose.py    pure: our Message-IDs (keyed) and RFC 5322 bytes
    alerts.py     pure: when to mail the operator (one mail per condition and change)
    texts.py      templates/mail/*.j2 in the sandbox; `bridge check`
    back.py       events -> composed mails in the durable queue (any process)
    relay.py      the SMTP conversation (aiosmtplib)
    service.py    the daemon's part: the sender task and the alerts
"""

from __future__ import annotations

from typing import Any

from bridge.mailout.settings import MailOutSettings, parse_config, validate

__all__ = ["MailOutSettings", "parse_config", "validate", "build", "send_test"]


def build(settings: MailOutSettings, app: Any):
    """The daemon's part (:class:`~bridge.mailout.service.MailOutPart`); ``app.mailback``
    is the :class:`~bridge.mailout.back.MailBack` the App made for its events."""
    from bridge.mailout.service import MailOutPart

    return MailOutPart(settings, app, app.mailback)


def send_test(cfg: Any, settings: MailOutSettings, address: str, renderer: Any,
              message_id_key: bytes) -> tuple[bool, str]:
    """``bridge mail test ADDRESS``: one test mail through the relay, now (not queued).
    Returns (sent, one line: the relay and the SMTP conversation's last answer).
    Raises :class:`bridge.config.ConfigError` when the password's variable is not set."""
    import asyncio
    import secrets
    from datetime import datetime, timezone

    from bridge.config import secret
    from bridge.mailout.compose import Letter, compose, make_message_id
    from bridge.mailout.relay import Relay
    from bridge.mailout.texts import MailTexts

    password = secret(settings.password_env, "mail_out.password_env") \
        if settings.password_env else None
    relay = Relay(settings, password)
    now = datetime.now(timezone.utc)
    subject, body = MailTexts(renderer).letter(
        "test.j2", {"org": renderer.org, "relay": settings.describe_relay(), "tijd": now})
    domain = settings.from_addr.rpartition("@")[2]
    letter = Letter(from_addr=settings.from_addr,
                    from_name=settings.from_name or renderer.org.name, to=(address,),
                    subject=subject, body=body, date=now, auto_submitted="auto-generated",
                    message_id=make_message_id(message_id_key, secrets.token_hex(8), domain))
    sender = "" if settings.null_sender else settings.from_addr
    answer = asyncio.run(relay.send_now(sender, [address], compose(letter)))
    return answer.ok, f"{address} via {settings.describe_relay()}: {answer.text}"
