"""A sample KPN outage mail dated "now", for trying the bridge (``bridge demo-mail``).

The shipped sample mails carry fixed dates; the bridge sends a mail older than
``review.max_mail_age_hours`` to review, so a demo needs a mail written at the moment it is
sent. Its sender is in the ``kpn.example`` domain the shipped config allows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

__all__ = ["DEMO_SENDER", "demo_mail"]

DEMO_SENDER = "storingsmeldingen@wholesale.kpn.example"


def demo_mail(now: datetime, tz: str = "Europe/Amsterdam", ticket: str | None = None) -> bytes:
    """The raw bytes (CRLF line ends) of a new-outage mail sent at ``now`` (aware): started
    15 minutes before, expected to be repaired three hours after. ``ticket`` defaults to
    ``INC`` and the minute of ``now`` (a new incident each minute). Raises ``ValueError``
    for a naive ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(tz)).replace(second=0, microsecond=0)
    ticket = ticket or f"INC{local:%y%m%d%H%M}"
    start = local - timedelta(minutes=15)
    end = local + timedelta(hours=3)
    msg = EmailMessage()
    msg["From"] = f'"KPN Wholesale Storingsdienst" <{DEMO_SENDER}>'
    msg["To"] = "noc@cbgconnect.example"
    msg["Subject"] = f"Storingsmelding KPN: Internet en VoIP - Amersfoort ({ticket}) - Nieuw"
    msg["Date"] = format_datetime(local)
    msg["Message-ID"] = f"<{ticket.lower()}.{int(now.timestamp())}@wholesale.kpn.example>"
    msg.set_content(
        "Beste partner,\n\n"
        "Er is een storing vastgesteld in het KPN-netwerk.\n\n"
        f"Ticketnummer:       {ticket}\n"
        "Status:             Nieuw\n"
        "Dienst(en):         Internet, VoIP\n"
        "Getroffen gebied:   Amersfoort, Leusden\n"
        "Postcodes:          3811, 3812, 3831\n"
        f"Starttijd:          {start:%d-%m-%Y %H:%M}\n"
        f"Verwachte eindtijd: {end:%d-%m-%Y %H:%M}\n"
        "Omschrijving:       Door graafwerkzaamheden is een glasvezelkabel beschadigd.\n"
        "                    Monteurs zijn onderweg.\n\n"
        "Met vriendelijke groet,\n"
        "KPN Wholesale Servicedesk\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
