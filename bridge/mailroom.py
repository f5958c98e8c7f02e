"""The application's side of :class:`bridge.port.IntakePort`: where intakes hand in mails.

One :class:`Mailroom` per App. It commits each mail durably before the intake acknowledges
it, wakes the mail processor, and lets an intake wait for outcomes (the IMAP intake moves a
mail only once it has one) on an event the processor sets, not by polling the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from typing import Callable, Sequence

from bridge.core.models import RawMail
from bridge.port import StoreUnavailable
from bridge.store import Store, StoreError, write_problem

# Mails processed by another process (`bridge ingest`) give no event here: look again
# this often (seconds) while waiting for outcomes.
OTHER_PROCESS_POLL = 0.5


class Mailroom:
    """Implements :class:`bridge.port.IntakePort` over the store.

    ``on_stored(mail_id)`` is called after each commit (the App wakes its processor);
    ``on_unwritable(problem, edge)`` when the store refused a mail because it cannot be
    written now (:class:`bridge.storehealth.StoreHealth.unwritable`); the processor calls
    :meth:`outcome_given` after each mail it finishes.
    """

    def __init__(self, store: Store, on_stored: Callable[[int], None] | None = None,
                 on_unwritable: Callable[[str, str], None] | None = None):
        self._store = store
        self._on_stored = on_stored
        self._on_unwritable = on_unwritable
        self._outcome_event: asyncio.Event | None = None

    def store_mail(self, mail: RawMail, *, state: tuple[str, str] | None = None) -> int:
        try:
            with self._store.tx(durable=True):
                mail_id = self._store.mails.add(mail)
                if state is not None:
                    self._store.state.set(*state)
        except (StoreError, sqlite3.Error) as e:
            raise self._unavailable(e, mail.source) from e
        if self._on_stored is not None:
            self._on_stored(mail_id)
        return mail_id

    def stored_mail_id(self, source_ref: str) -> int | None:
        stored = self._store.mails.by_source_ref(source_ref)
        return stored.id if stored is not None else None

    def state_get(self, key: str) -> str | None:
        return self._store.state.get(key)

    def state_set(self, key: str, value: str) -> None:
        try:
            self._store.state.set(key, value)
        except (StoreError, sqlite3.Error) as e:
            raise self._unavailable(e, "intake") from e

    def _unavailable(self, e: BaseException, edge: str) -> StoreUnavailable:
        problem = write_problem(e)
        if problem is not None and self._on_unwritable is not None:
            self._on_unwritable(problem, edge)
        return StoreUnavailable(str(e), problem)

    async def wait_outcomes(self, mail_ids: Sequence[int],
                            timeout: float) -> dict[int, str | None]:
        deadline = time.monotonic() + timeout
        ids = list(mail_ids)
        while True:
            if self._outcome_event is None:
                self._outcome_event = asyncio.Event()
            event = self._outcome_event
            known = self._store.mails.outcomes(ids)
            out = {i: known.get(i, "gone") for i in ids}
            left = deadline - time.monotonic()
            if all(v is not None for v in out.values()) or left <= 0:
                return out
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, OTHER_PROCESS_POLL))

    def outcome_given(self) -> None:
        """The processor finished a mail: wake everyone waiting for outcomes."""
        event, self._outcome_event = self._outcome_event, None
        if event is not None:
            event.set()
