"""When to mail the operator: one mail per condition and change, flapping summarised (pure).

Two sorts of condition:

- a *state* (``channel``: paused or not; ``sending``: degraded for more than
  ``degraded_alert_minutes``; ``review``: items waiting too long) is mailed when what the
  operator was last told differs from what is true now: raised ("paused: why"), and, for
  the channel and sending, cleared once ("resumed", "ok again"). For ``review`` a newly overdue item is news
  too; the queue emptying is not mailed.
- an *event* (``fanout``: a fan-out with too many failures; ``stopping``: the daemon stops
  because a task kept crashing) is mailed when it happens.

At most :attr:`Policy.per_window` mails per condition go out in any :attr:`Policy.window`
seconds (``stopping`` is never held back: the daemon is going). What happens beyond that is
held, and one summary goes out when the window allows again: how often the state changed
and what is true now, or the events held. A condition that flaps (paused, resumed, paused
...) thus gives "paused", "resumed", then a summary per window, never a mail per change.

Everything here is a function of (state, input, now): the shell keeps the state (in the
store, so a restart does not tell the operator again what they know) and sends the mails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

STATES = {"channel": True, "sending": True, "review": False}  # state condition -> is clearing it news?
EVENTS = ("fanout", "stopping")
NEVER_HELD = ("stopping",)


@dataclass(frozen=True)
class Policy:
    window: float = 1800.0  # seconds
    per_window: int = 2


@dataclass(frozen=True)
class Condition:
    """What is true of one condition, and what the operator was told (all JSON-able)."""

    active: bool = False
    detail: tuple[str, ...] = ()  # the reason (channel), or the overdue item ids (review)
    since: float = 0.0  # when the current state began
    prev_since: float = 0.0  # when the state before it began
    told_active: bool = False
    told_detail: tuple[str, ...] = ()
    mails: tuple[float, ...] = ()  # when mails about it went out (within the window)
    flips: int = 0  # state changes since the last mail
    flips_since: float = 0.0  # the first of them
    held: tuple[Mapping[str, Any], ...] = ()  # events not mailed yet (their facts)


@dataclass(frozen=True)
class Alert:
    """One mail to send. ``kind``: ``raised``, ``cleared``, ``summary`` (a state that
    changed more than once since the last mail: ``flips`` times since ``flips_since``),
    ``event`` (``events`` holds one fact dict) or ``events`` (held ones)."""

    key: str
    kind: str
    active: bool = False
    detail: tuple[str, ...] = ()
    since: float = 0.0
    prev_since: float = 0.0  # when the state before began (a pause: how long it lasted)
    was: tuple[str, ...] = ()  # what the operator was told before (e.g. the pause reason)
    flips: int = 0
    flips_since: float = 0.0
    events: tuple[Mapping[str, Any], ...] = ()
    new: tuple[str, ...] = ()  # review: the items overdue since the last mail


Conditions = Mapping[str, Condition]


def _room(c: Condition, now: float, p: Policy) -> tuple[Condition, bool]:
    c = replace(c, mails=tuple(t for t in c.mails if now - t < p.window))
    return c, len(c.mails) < p.per_window


def _news(key: str, c: Condition) -> bool:
    if c.active != c.told_active:
        return c.active or STATES[key]
    return c.active and key == "review" and bool(set(c.detail) - set(c.told_detail))


def _mail_state(key: str, c: Condition, now: float) -> tuple[Condition, Alert]:
    if c.flips >= 2:
        kind = "summary"
    elif c.active:
        kind = "raised"
    else:
        kind = "cleared"
    alert = Alert(key, kind, c.active, c.detail, c.since, prev_since=c.prev_since,
                  was=c.told_detail, flips=c.flips,
                  flips_since=c.flips_since,
                  new=tuple(i for i in c.detail if i not in c.told_detail))
    return replace(c, told_active=c.active, told_detail=c.detail, mails=c.mails + (now,),
                   flips=0, flips_since=0.0), alert


def observe(states: Conditions, key: str, active: bool, detail: tuple[str, ...], now: float,
            policy: Policy) -> tuple[dict[str, Condition], list[Alert]]:
    """A state condition is (still) ``active`` with ``detail``; returns the new states and
    the mails to send now. Observing the same thing again changes nothing."""
    if key not in STATES:
        raise ValueError(f"not a state condition: {key!r}")
    out = dict(states)
    c = out.get(key, Condition())
    if active == c.active and detail == c.detail:
        return out, []
    if active != c.active:
        c = replace(c, active=active, detail=detail, since=now, prev_since=c.since,
                    flips=c.flips + 1, flips_since=c.flips_since or now)
    else:
        c = replace(c, detail=detail)  # e.g. another pause reason: not a change of state
    if not active and not STATES[key]:
        # Clearing this condition is no news (a review queue worked off): what the
        # operator was told resets quietly, so the next occurrence is mailed again.
        c = replace(c, told_active=False, told_detail=(), flips=0, flips_since=0.0)
    if not (_news(key, c) or c.flips >= 2):
        out[key] = c  # back to what the operator knows, without flapping
        return out, []
    c, room = _room(c, now, policy)
    alerts: list[Alert] = []
    if room:
        c, alert = _mail_state(key, c, now)
        alerts.append(alert)
    out[key] = c
    return out, alerts


def occurred(states: Conditions, key: str, facts: Mapping[str, Any], now: float,
             policy: Policy) -> tuple[dict[str, Condition], list[Alert]]:
    """An event condition happened (``facts`` for the mail); mailed now, or held for a
    summary when this condition already had its mails in the window."""
    if key not in EVENTS:
        raise ValueError(f"not an event condition: {key!r}")
    out = dict(states)
    c, room = _room(out.get(key, Condition()), now, policy)
    if room or key in NEVER_HELD:
        out[key] = replace(c, mails=c.mails + (now,))
        return out, [Alert(key, "event", events=(dict(facts),))]
    out[key] = replace(c, held=c.held + (dict(facts),))
    return out, []


def tick(states: Conditions, now: float, policy: Policy) -> tuple[dict[str, Condition],
                                                                  list[Alert]]:
    """Send what was held once the window allows: a state's summary (it changed while the
    mails were used up), or the events held."""
    out = dict(states)
    alerts: list[Alert] = []
    for key, c in states.items():
        if key in EVENTS:
            if not c.held:
                continue
            c, room = _room(c, now, policy)
            if room:
                alerts.append(Alert(key, "events", events=c.held))
                c = replace(c, held=(), mails=c.mails + (now,))
            out[key] = c
        elif _news(key, c) or c.flips >= 2:
            c, room = _room(c, now, policy)
            if room:
                c, alert = _mail_state(key, c, now)
                alerts.append(alert)
            out[key] = c
    return out, alerts


def next_due(states: Conditions, policy: Policy) -> float | None:
    """When :func:`tick` may have something to send (None: nothing held)."""
    due = [min(c.mails) + policy.window for key, c in states.items() if c.mails and
           (c.held or (key in STATES and (_news(key, c) or c.flips >= 2)))]
    return min(due) if due else None


# -- persistence ---------------------------------------------------------------------------------
def to_json(states: Conditions) -> dict:
    return {k: {"active": c.active, "detail": list(c.detail), "since": c.since,
                "prev_since": c.prev_since,
                "told_active": c.told_active, "told_detail": list(c.told_detail),
                "mails": list(c.mails), "flips": c.flips, "flips_since": c.flips_since,
                "held": [dict(h) for h in c.held]} for k, c in states.items()}


def from_json(doc: Mapping[str, Any]) -> dict[str, Condition]:
    """The states saved by :func:`to_json`; unknown keys and bad entries are dropped."""
    out: dict[str, Condition] = {}
    for k, d in (doc or {}).items():
        if k not in STATES and k not in EVENTS or not isinstance(d, dict):
            continue
        try:
            out[k] = Condition(
                active=bool(d.get("active")), detail=tuple(map(str, d.get("detail", ()))),
                since=float(d.get("since", 0)), prev_since=float(d.get("prev_since", 0)),
                told_active=bool(d.get("told_active")),
                told_detail=tuple(map(str, d.get("told_detail", ()))),
                mails=tuple(float(t) for t in d.get("mails", ())),
                flips=int(d.get("flips", 0)), flips_since=float(d.get("flips_since", 0)),
                held=tuple(dict(h) for h in d.get("held", ()) if isinstance(h, dict)))
        except (TypeError, ValueError):
            continue
    return out


@dataclass(frozen=True)
class ChannelTrouble:
    """What sort of pause a reason describes, for the advice in the alert."""

    sort: str  # token, policy, broker, config, other
    code: str | None = None


def pause_sort(channel: str, reason: str) -> ChannelTrouble:
    """Classify a channel's pause reason (as the channels word them): the Cloud API's error
    codes (190 and 0: token; 10, 368, 131031: policy or account; 3: permission), the MQTT
    broker or gateway gone, a missing secret."""
    r = (reason or "").strip()
    code = r.split()[0] if r and r.split()[0].isdigit() else None
    low = r.lower()
    if "token" in low or code in ("190", "0"):
        return ChannelTrouble("token", code)
    if code in ("3", "10", "368", "131031") or "policy" in low or "locked" in low:
        return ChannelTrouble("policy", code)
    if channel == "mqtt" or "broker" in low or "mqtt" in low or "gateway" in low:
        return ChannelTrouble("broker", code)
    if "not set" in low or "environment variable" in low:
        return ChannelTrouble("config", code)
    return ChannelTrouble("other", code)

