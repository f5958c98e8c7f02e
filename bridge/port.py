"""The small declared interface through which intakes (and, below, channels) reach the
application.

An intake or a channel is handed one object that implements the protocol it needs (the
:class:`bridge.app.App` implements all of them); it never receives the store, the App or
the pipeline itself, never runs SQL, and never reaches for private attributes. Everything
an edge may ask of the application is a method here, so a newcomer reads this file to know
what an edge can do.

Errors: a method that writes raises :class:`StoreUnavailable` when the store cannot take the
write now (disk full, locked, I/O error): the edge must then not acknowledge what it holds
(SMTP 451, IMAP leaves the mail, a webhook answers 500).
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

from bridge.core.models import RawMail

__all__ = ["IntakePort", "RawMail", "StoreUnavailable"]


class StoreUnavailable(RuntimeError):
    """The store could not commit now; nothing was acknowledged and nothing is lost."""


class IntakePort(Protocol):
    """What a mail intake (SMTP, IMAP, ``bridge ingest``) may ask of the application."""

    def store_mail(self, mail: RawMail, *, state: tuple[str, str] | None = None) -> int:
        """Commit ``mail`` durably (fsync before returning) and return its raw mail id; the
        mail processor is woken. ``state`` = (key, value) is written in the same
        transaction (e.g. the IMAP intake's last UID), so the two never disagree.
        Call before acknowledging the mail to its sender (SMTP 250, IMAP MOVE).

        Raises :class:`StoreUnavailable` when the store cannot commit."""

    def stored_mail_id(self, source_ref: str) -> int | None:
        """The id of the newest raw mail stored with this ``source_ref`` (e.g.
        ``imap:<uidvalidity>:<uid>``), or None: the intake's exactly-once check."""

    def state_get(self, key: str) -> str | None:
        """The intake's own small durable state (e.g. UIDVALIDITY and last UID as JSON)."""

    def state_set(self, key: str, value: str) -> None:
        """Write the intake's state durably. Raises :class:`StoreUnavailable`."""

    async def wait_outcomes(self, mail_ids: Sequence[int],
                            timeout: float) -> Mapping[int, str | None]:
        """Wait up to ``timeout`` seconds until every mail in ``mail_ids`` has an outcome
        (``queued``, ``duplicate``, ``review``, ``rejected``), then return them; a mail
        still being processed maps to None, a mail no longer stored to ``"gone"``.
        Returns early as soon as all are known; woken by the processor, not by polling
        (mails processed by another process are noticed within half a second)."""
