"""Frozen dataclasses shared by the pure core and the shell around it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["storing", "onderhoud"]
Status = Literal["nieuw", "update", "opgelost", "geannuleerd", "aangekondigd"]

# Order in which statuses normally follow each other; used to break ties between two
# reports with the same timestamp (a later rank is the newer report).
STATUS_RANK: dict[str, int] = {
    "aangekondigd": 0,
    "nieuw": 0,
    "update": 1,
    "opgelost": 2,
    "geannuleerd": 2,
}


@dataclass(frozen=True)
class RawMail:
    """What every intake hands to the application: the bytes and where they came from."""

    data: bytes
    source: str  # smtp, imap, cli
    envelope_from: str | None = None
    source_ref: str | None = None  # e.g. "imap:<uidvalidity>:<uid>" or a file name


@dataclass(frozen=True)
class Envelope:
    """Header facts of one message (the outer mail or a forwarded original)."""

    from_addr: str  # lower-cased address only, "" when absent
    from_name: str  # display name, "" when absent
    subject: str  # unfolded, whitespace collapsed
    date: datetime | None  # timezone-aware UTC, None when absent or unparsable
    message_id: str | None  # without angle brackets
    # Authentication-Results header values, topmost (last added) first, unfolded; only of a
    # mail's real headers (the outer mail, an attached original), never of an inline forward
    auth_results: tuple[str, ...] = ()
    # From header fields of a mail's real headers: RFC 5322 allows one; a second one is a
    # classic spoof (checks and the allow-list may each read another one)
    from_count: int = 1


@dataclass(frozen=True)
class ParsedMail:
    """A raw mail reduced to what the report extractor needs.

    When the mail is a forward, ``original`` holds the forwarded message's headers and
    ``text`` is the original's body, with the forwarder's comment removed.
    """

    outer: Envelope
    original: Envelope | None
    forward: Literal["inline", "attachment"] | None
    text: str  # plain text of the (original) body, normalised newlines
    forward_comment: str = ""  # what the forwarder wrote above the forward; never sent

    @property
    def effective(self) -> Envelope:
        """The headers of the mail that carries the report (the original when forwarded)."""
        return self.original or self.outer


@dataclass(frozen=True)
class OutageReport:
    """One KPN outage or maintenance report, extracted from one mail.

    All datetimes are timezone-aware UTC. Empty tuples / None mean "not in the mail".
    """

    ticket: str | None
    kind: Kind
    status: Status | None
    subject: str
    services: tuple[str, ...] = ()  # canonical service names, e.g. ("internet", "voip")
    places: tuple[str, ...] = ()  # as written in the mail, e.g. ("Amersfoort", "Leusden")
    postcodes: tuple[str, ...] = ()  # e.g. ("3811", "3812") or ("3811 AB",)
    start: datetime | None = None
    end: datetime | None = None  # actual or expected end (see end_expected)
    end_expected: bool = False  # True: ``end`` is an expectation ("verwachte eindtijd")
    end_unknown: bool = False  # True: the mail says the (expected) end is unknown
    downtime_minutes: int | None = None  # maintenance: announced interruption length
    description: str = ""
    sent_at: datetime | None = None  # Date header of the (original) mail, UTC
    # Signs that the mail is about one end customer's line, not an area (a customer label
    # such as "Klantnaam", a phrase such as "uw melding", a street address): each as a short
    # phrase for the review reason, never the customer's data. In the JSON only when any.
    customer_signals: tuple[str, ...] = ()

    def key_facts(self) -> tuple:
        """The facts that make two reports of one incident the same update."""
        return (
            self.status,
            self.end.isoformat() if self.end else None,
            self.end_unknown,
        )

    def to_json(self) -> dict:
        """A JSON-ready dict (datetimes as ISO 8601 UTC strings); ``customer_signals`` only
        when there are any, so an area report keeps its shape."""

        def dt(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        doc = {
            "ticket": self.ticket,
            "kind": self.kind,
            "status": self.status,
            "subject": self.subject,
            "services": list(self.services),
            "places": list(self.places),
            "postcodes": list(self.postcodes),
            "start": dt(self.start),
            "end": dt(self.end),
            "end_expected": self.end_expected,
            "end_unknown": self.end_unknown,
            "downtime_minutes": self.downtime_minutes,
            "description": self.description,
            "sent_at": dt(self.sent_at),
        }
        if self.customer_signals:
            doc["customer_signals"] = list(self.customer_signals)
        return doc

    @classmethod
    def from_json(cls, d: dict) -> "OutageReport":
        def dt(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        return cls(
            ticket=d.get("ticket"),
            kind=d["kind"],
            status=d.get("status"),
            subject=d.get("subject", ""),
            services=tuple(d.get("services", ())),
            places=tuple(d.get("places", ())),
            postcodes=tuple(d.get("postcodes", ())),
            start=dt(d.get("start")),
            end=dt(d.get("end")),
            end_expected=bool(d.get("end_expected", False)),
            end_unknown=bool(d.get("end_unknown", False)),
            downtime_minutes=d.get("downtime_minutes"),
            description=d.get("description", ""),
            sent_at=dt(d.get("sent_at")),
            customer_signals=tuple(d.get("customer_signals", ())),
        )


@dataclass(frozen=True)
class Organisation:
    """Who the notices are from. Always from config, never hard-coded."""

    name: str = "CBG Connect"
    support_email: str = "support@cbgconnect.nl"
    whatsapp_number: str = "085 48 69 699"
    timezone: str = "Europe/Amsterdam"


InboundClass = Literal["subscribe", "unsubscribe", "help", "other"]


@dataclass(frozen=True)
class InboundMessage:
    """One message a person sent to the business number, on any channel."""

    channel: str
    sender: str  # E.164 ("+31612345678") or "user:<business-scoped id>" when hidden
    text: str
    message_id: str
    received_at: datetime  # UTC
    # The channel's business-scoped user id (Cloud API BSUID) when it gives one besides
    # (or instead of) the number: the same person may later write with only this id.
    user_id: str | None = None
