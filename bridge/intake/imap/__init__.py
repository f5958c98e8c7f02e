"""IMAP intake: each new mail in one folder of a mailbox becomes a stored raw mail, exactly once.

The package, by job:

- :mod:`.settings`: the ``[imap]`` table -> :class:`ImapSettings` (``parse_config``);
- :mod:`.commands`: UID sets and batches, modified UTF-7 folder names, quoting, response
  codes, parsing of SEARCH/FETCH/LIST answers (pure);
- :mod:`.client`: one connection over aioimaplib with deadlines of silence;
- :mod:`.failures`: kinds of failure and the per-command backoff memory;
- :mod:`.lock`: the lease that keeps a second daemon off the folder;
- :mod:`.intake`: the intake loop (:class:`ImapIntake`).

The intake reaches the application only through :class:`bridge.port.IntakePort`. See
docs/imap.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.intake.imap.commands import parse_fetch
from bridge.intake.imap.intake import ImapIntake
from bridge.intake.imap.settings import ImapSettings, parse_config
if TYPE_CHECKING:
    from bridge.app import App

__all__ = ["ImapIntake", "ImapSettings", "build", "parse_config", "parse_fetch"]


def build(settings: ImapSettings, app: App) -> ImapIntake:
    """The daemon's IMAP part (:class:`bridge.part.Part`). The intake itself gets only the
    App's :class:`bridge.port.IntakePort` (``app.mailroom``), never the App."""
    return ImapIntake(settings, app.mailroom)
