"""Bringing the ISP's existing list in: ``bridge subscribers import FILE|-``.

Reads the list (:func:`bridge.core.importing.read_numbers`), adds every valid number that
is not subscribed yet in one durable transaction, with a consent proof that records the
import (``consent_ref`` "import:<file name>", the time, ``consent_note`` the operator's
reason), and optionally queues one welcome message per added subscriber through the
outbox (:func:`queue_welcome`). Nothing here logs a number: the per-line outcomes are for
the operator's own terminal (the CLI prints them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge.core.importing import ImportLine, read_numbers
from bridge.core.replies import builtin_reply, with_stop_hint

__all__ = ["Outcome", "ImportResult", "WelcomeRefused", "import_list", "welcome_interval",
           "welcome_problem", "WELCOME"]

# The reply template (templates/replies/welcome.j2). Welcome deliveries are stored with
# reply_name "welcome"; the outbox hands the channel "replies/welcome.j2" (Outgoing.template),
# so a channel that needs an approved template for a first, business-initiated message
# (the Cloud API: Meta, "Send messages") sends the one mapped for it.
WELCOME = "welcome"
WORDING = "import by the operator (bridge subscribers import)"


class WelcomeRefused(Exception):
    """``welcome=True`` on a channel that cannot send the welcome to people who have not
    written (the message says why and what to configure); nothing was imported."""


def welcome_problem(app) -> str | None:
    """Why the channel in use cannot send the welcome to people who have not written (the
    Cloud API without ``[channel.cloud.templates.welcome]``), or None."""
    return app.channel.initiate_problem(WELCOME)


@dataclass(frozen=True)
class Outcome:
    line: ImportLine
    result: str  # "added", "already subscribed", "invalid"
    detail: str = ""  # the reason (invalid), a warning, or "same number as line N"


@dataclass
class ImportResult:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: int = 0  # blank, comment and header lines
    welcome: int = 0  # welcome messages queued
    welcome_hours: float = 0.0  # until the last one is due

    def count(self, result: str) -> int:
        return sum(1 for o in self.outcomes if o.result == result)


def import_list(app, text: str, source: str, *, column: str | None = None,
                reason: str | None = None, dry_run: bool = False,
                welcome: bool = False) -> ImportResult:
    """Import the numbers in ``text`` (from the file named ``source``; "-" for stdin).

    Valid numbers are added even when other lines are invalid. A number already held by a
    subscriber (as number, or linked to a person) is "already subscribed", as is a number
    that occurs twice in the file (the second time). ``dry_run``: decide every line, change
    nothing. Raises :class:`bridge.core.importing.NumberListError` for a file that is no
    list of numbers, :class:`WelcomeRefused` for ``welcome`` on a channel that cannot send
    it (:func:`welcome_problem`), before anything changes."""
    if welcome:
        problem = welcome_problem(app)
        if problem:
            raise WelcomeRefused(problem)
    lines, skipped = read_numbers(text, column=column)
    result = ImportResult(skipped=skipped)
    subs = app.store.subscribers
    valid = [ln.number for ln in lines if ln.number]
    held = subs.existing(list(dict.fromkeys(valid)))
    first_line: dict[str, int] = {}
    to_add: list[str] = []
    for ln in lines:
        if ln.number is None:
            result.outcomes.append(Outcome(ln, "invalid", ln.problem or ""))
        elif ln.number in first_line:
            result.outcomes.append(Outcome(ln, "already subscribed",
                                           f"same number as line {first_line[ln.number]}"))
        elif ln.number in held:
            first_line[ln.number] = ln.line
            result.outcomes.append(Outcome(ln, "already subscribed", ""))
        else:
            first_line[ln.number] = ln.line
            to_add.append(ln.number)
            result.outcomes.append(Outcome(ln, "added", ln.warning or ""))
    if dry_run or not to_add:
        if welcome and dry_run:
            result.welcome = len(to_add)
            result.welcome_hours = len(to_add) * welcome_interval(app) / 3600
        return result
    name = "stdin" if source == "-" else Path(source).name
    with app.store.tx(durable=True):
        added = subs.import_numbers(to_add, app.cfg.channel.type, f"import:{name}",
                                    wording=WORDING, note=reason or None)
        if welcome:
            interval = welcome_interval(app)
            result.welcome = app.store.deliveries.add_paced_replies(
                added, channel=app.cfg.channel.type, text=_welcome_text(app), name=WELCOME,
                start=time.time(), interval=interval)
            result.welcome_hours = result.welcome * interval / 3600
    if result.welcome:
        app.wake_dispatcher()
    return result


def welcome_interval(app) -> float:
    """Seconds between two welcome messages: twice the channel's own pace (its max_rate
    and jitter, within dispatch.rate), so half of what the channel can send stays free for
    notices and replies while a long list trickles out."""
    ch = app.channel
    rate = app.cfg.dispatch.rate
    if ch.max_rate:
        rate = min(rate, ch.max_rate)
    per_message = 1.0 / rate + (ch.jitter or 0.0) / 2
    return 2 * max(per_message, 1e-3)


def _welcome_text(app) -> str:
    rendered = app.renderer.render_reply(WELCOME,
                                         subscribe_sentence=app.inbound.subscribe_sentence)
    text = rendered.text
    if rendered.fallback:
        text = builtin_reply(WELCOME, app.cfg.organisation) or text
    return with_stop_hint(text)


def eta(hours: float) -> str:
    """'under a minute', '3 min', '2.5 h', '4 days' for an operator."""
    if hours * 60 < 1:
        return "under a minute"
    if hours < 1:
        return f"{math.ceil(hours * 60)} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
