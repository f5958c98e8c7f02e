"""What the supervisor (:mod:`bridge.app`) runs besides its own tasks: the daemon's parts.

A part is an intake, the web server or mail back: one object with a long-running
:meth:`Part.run`, built from its config table by its module's ``build(settings, app)``
(the optional parts: :data:`bridge.config.OPTIONAL_PARTS`, each module a
:class:`PartModule`). The supervisor, for every part:

1. ``await part.start()`` before any task runs: binds what listens (the web server's port),
   so a port in use stops the start-up at once (``bridge run`` exits 78);
2. runs ``part.run(stop)`` under its supervision (restarted after a crash), in the
   foreground (``background = False``: the daemon waits for it to return after ``stop`` is
   set, e.g. an intake finishing the mail in hand, mail back sending what is due) or in the
   background (``background = True``: cancelled once the dispatcher has finished, e.g. the
   web server, which must answer while the last sends go out);
3. ``await part.stop()`` when the start-up fails after the part was started (idempotent).

:class:`BasePart` gives the defaults: a foreground part with nothing to bind or release.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bridge.app import App
    from bridge.config import Section, SettingsTable

__all__ = ["BasePart", "Part", "PartModule"]


class Part(Protocol):
    """One part of the daemon (see the module doc)."""

    # True: cancelled after the dispatcher has finished; False: awaited until it returns.
    background: bool

    async def start(self) -> None:
        """Bind what must be bound before the daemon's tasks run (a listening port).
        Raises OSError (a port in use) or :class:`bridge.config.ConfigError`: the daemon
        does not start."""
        ...

    async def run(self, stop: asyncio.Event) -> None:
        """The part's work until ``stop`` is set (foreground parts return then; background
        parts are cancelled). Restarted by the supervisor after a crash."""
        ...

    async def stop(self) -> None:
        """Release what :meth:`start` bound (idempotent)."""
        ...

    def describe(self) -> dict[str, Any]:
        """State for ``bridge status`` and the daemon's heartbeat (JSON-able)."""
        ...


class BasePart:
    """Defaults for :class:`Part`: a foreground part with nothing to bind or release."""

    background: bool = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {}


class PartModule(Protocol):
    """A module of an optional part (``[imap]``, ``[web]``, ``[mail_out]``)."""

    def parse_config(self, sec: Section, base: Path) -> SettingsTable:
        """The part's config table -> its settings; raises ConfigError naming the key."""
        ...

    def build(self, settings: SettingsTable, app: App) -> Part:
        """The part for ``settings``; ``app`` is the :class:`bridge.app.App`. Raises
        :class:`bridge.config.ConfigError` when a secret the part needs is not set."""
        ...
