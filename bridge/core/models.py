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
    # The header fields of a mail's real headers (the outer mail, an attached original) as
    # (lower-case name, unfolded value) in order, bounded in number and length; read by
    # core.automatic (Auto-Submitted, Precedence, X-Autoreply, Return-Path, ...). Empty for an
    # inline forward, whose header lines are only text.
    headers: tuple[tuple[str, str], ...] = ()
    # The report-type of a multipart/report (RFC 6522) in the mail's own MIME tree, lower
    # case: "delivery-status" (a DSN, RFC 3464), "disposition-notification" (an MDN, RFC
    # 8098), ...; also set when a message/delivery-status or message/disposition-notification
    # part stands on its own. None for any other mail.
    report_type: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True)
class CalendarFacts:
    """One event of an iCalendar (RFC 5545) part, as carriers send maintenance windows,
    with the maintenance-notification BCOP's ``X-MAINTNOTE-*`` properties when present.

    Datetimes are timezone-aware UTC. ``status`` is a report status (``aangekondigd``,
    ``geannuleerd``, ``update``, ``opgelost``) or None; ``ticket`` is the BCOP's
    MAINTENANCE-ID, else the event's UID; ``sequence`` (RFC 5545 SEQUENCE) orders revisions
    of one UID.
    """

    start: datetime | None = None
    end: datetime | None = None
    summary: str = ""
    location: str = ""
    status: Status | None = None
    ticket: str | None = None
    uid: str | None = None
    sequence: int | None = None
    method: str | None = None  # the calendar's METHOD (REQUEST, CANCEL, PUBLISH), upper case
    provider: str = ""  # X-MAINTNOTE-PROVIDER
    account: str = ""  # X-MAINTNOTE-ACCOUNT
    impact: str = ""  # X-MAINTNOTE-IMPACT (NO-IMPACT, REDUCED-REDUNDANCY, DEGRADED, OUTAGE)
    objects: tuple[str, ...] = ()  # X-MAINTNOTE-OBJECT-ID values
    maintenance: bool = False  # the event carries X-MAINTNOTE-* properties (BCOP)
    events: int = 1  # VEVENTs in the calendar (the first one with a start is read)


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
    # Why the body gave no text a report can be read from (only an image, encrypted S/MIME,
    # an unreadable winmail.dat, an empty body, ...), in words an operator understands; None
    # when there is text. Such a mail goes to review, never to a notice from its subject.
    unreadable: str | None = None
    # Where decoding had to guess or repair ("body charset guessed as utf-8 (declared
    # iso-8859-1)"); stored with the mail's outcome reason.
    notes: tuple[str, ...] = ()
    # What an iCalendar (text/calendar) part of the report's mail says, or None.
    calendar: "CalendarFacts | None" = None

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
    # The iCalendar SEQUENCE of the mail's maintenance event (RFC 5545 3.8.7.4): a higher one
    # is a later revision of the same event, whatever the mails' dates say
    sequence: int | None = None
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
            # only when there is one: reports without a calendar keep their JSON shape
            **({"sequence": self.sequence} if self.sequence is not None else {}),
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
            sequence=d.get("sequence"),
            customer_signals=tuple(d.get("customer_signals", ())),
        )


@dataclass(frozen=True)
class Organisation:
    """Who the notices are from. Always from config, never hard-coded."""

    name: str = "CBG Connect"
    support_email: str = "support@cbgconnect.nl"
    whatsapp_number: str = "085 48 69 699"
    timezone: str = "Europe/Amsterdam"


# What an inbound message asks for (see bridge.core.inbound.interpret):
# - subscribe / unsubscribe: a clear wish (a keyword, the opt-in sentence, an opt-out in
#   the person's own words);
# - confirm_stop: probably a wish to stop, not certain: answered with the question
#   "Wil je geen storingsberichten meer? Stuur STOP.";
# - yes: a bare "ja" / "ja graag": the answer to the last question the bridge asked;
# - help: a request for help or a question about subscribing;
# - other: anything else (outage reports, thanks, chit-chat).
InboundClass = Literal["subscribe", "unsubscribe", "confirm_stop", "yes", "help", "other"]

# What kind of message a person sent. Only "text" and "media" carry text (a media
# message's caption); the others get the help reply.
MessageKind = Literal["text", "media", "voice", "contact", "location", "other"]

# The kinds of ids WhatsApp gives one person, each written with its own prefix:
# - "number": E.164, "+31612345678";
# - "bsuid": the Cloud API's business-scoped user id, "user:NL.1502576394655843";
# - "lid": whatsapp-web.js's linked id (a chat id ending in "@lid"), "lid:140000000001101".
IdKind = Literal["number", "bsuid", "lid"]


@dataclass(frozen=True)
class InboundMessage:
    """One message a person sent to the business number, on any channel.

    ``sender`` is the id to answer (E.164 "+31612345678", "user:<business-scoped id>" when
    the number is hidden, "lid:<digits>" for a whatsapp-web.js @lid sender);
    ``alternates`` are other ids the channel gave for the same person with this message
    (a number beside a BSUID, a number beside an @lid id). Every id in :attr:`ids` is
    linked to the subscriber the message matches.
    """

    channel: str
    sender: str
    text: str  # the text, or the caption of a media message; "" when it has none
    message_id: str
    received_at: datetime  # UTC
    # The channel's business-scoped user id (Cloud API BSUID) when it gives one besides
    # (or instead of) the number: the same person may later write with only this id.
    user_id: str | None = None
    alternates: tuple[str, ...] = ()
    kind: MessageKind = "text"
    media_type: str | None = None  # e.g. "image/jpeg", "ptt", "vcard": for logs only

    @property
    def ids(self) -> tuple[str, ...]:
        """Every id of the sender in this message, ``sender`` first, without repeats."""
        out = [self.sender, *self.alternates]
        if self.user_id:
            out.append("user:" + self.user_id)
        return tuple(dict.fromkeys(i for i in out if i))


@dataclass(frozen=True)
class IdentityChange:
    """WhatsApp says that one person's id changed.

    - ``kind == "number"``: a Cloud API ``system`` message of type ``user_changed_number``
      (the person moved their WhatsApp account to a new phone number);
    - ``kind == "user_id"``: type ``user_changed_user_id`` (a new business-scoped id).

    ``old`` are the ids that no longer belong to the person (they are erased), ``new``
    the ids the person has now (the first one is where messages go from now on). An id in
    both lists is kept. Source: Meta, WhatsApp Cloud API webhooks reference, messages
    object, ``system`` (``wa_id`` is the new number, ``user_id`` / ``previous_user_id``
    the business-scoped ids).
    """

    channel: str
    kind: Literal["number", "user_id"]
    old: tuple[str, ...]
    new: tuple[str, ...]
    event_id: str  # the system message's id (deduplicated like a message id)
    received_at: datetime  # UTC


@dataclass(frozen=True)
class IdPairing:
    """Two or more ids of one person seen together outside a message, e.g. a Cloud API
    status webhook with ``recipient_id`` (the number) and ``recipient_user_id`` (BSUID).
    Linked to the subscriber that holds any of them; nothing is stored for a person who is
    not subscribed."""

    channel: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Intent:
    """What :func:`bridge.core.inbound.interpret` read in one message.

    ``wording`` is the part of the message that decided, normalised (lower case, no
    punctuation), e.g. "ja ik wil storingsberichten van cbg connect ontvangen" or
    "aanmelden": stored as the proof of consent of a subscription. ``keyword`` is True
    when the message was one of the explicit keywords (STOP, aanmelden, START, help, ...)
    rather than free wording.
    """

    kind: InboundClass
    wording: str = ""
    keyword: bool = False
