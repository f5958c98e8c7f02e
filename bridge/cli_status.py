"""``bridge status``: the store's counts, whether the daemon runs, and how sending goes.

Registered by :mod:`bridge.cli` (``COMMANDS["status"]``). Whether the daemon runs comes
from its run lock (:mod:`bridge.runlock`: a daemon killed with SIGKILL shows as not
running at once); how sending goes from the status the daemon writes every few seconds
(:mod:`bridge.sendhealth`), in one line::

    sending:         DEGRADED: 96 % of 100 sends not accepted in the last 60 s: 131000 x96
                     (since 2026-11-29T15:02:11+01:00); rate 80/s, queue 1234, throttled 0,
                     retrying 88

(one line on screen). ``--json`` prints the same as one JSON document (``sending`` holds
state, reason, since, rate, queue, throttled and retrying).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

# seconds without a status from a running daemon before its last one is not trusted: four
# of its heartbeats (bridge.app.HEARTBEAT, 5 s)
STALE_AFTER = 20.0


def local_time(t: float | None, cfg=None) -> str:
    """A stored time (Unix seconds) as local time: in ``organisation.timezone`` when the
    config is given (Europe/Amsterdam), else the machine's zone; "-" for none."""
    if not t:
        return "-"
    when = datetime.fromtimestamp(t, timezone.utc)
    if cfg is not None:
        from zoneinfo import ZoneInfo

        return when.astimezone(ZoneInfo(cfg.organisation.timezone)).isoformat(timespec="seconds")
    return when.astimezone().isoformat(timespec="seconds")


def sending_doc(daemon: dict | None, pause: dict | None, queue: int) -> dict:
    """How sending goes, from the daemon's last status (``daemon``: :meth:`App.daemon_status`),
    the operator's pause (a dict of :class:`bridge.store.control.Pause`, or None) and the
    queue in the store now. ``state``: ok, degraded, paused, stopped (no daemon runs) or
    unknown (a daemon runs but wrote no sending status yet, or none for STALE_AFTER
    seconds: its loop is stuck or its store cannot take the write)."""
    sent = (daemon or {}).get("sending") or {}
    running = bool(daemon and daemon.get("running"))
    age = time.time() - ((daemon or {}).get("updated_at") or time.time())
    if running and sent and age > STALE_AFTER:
        sent = {"state": "unknown", "reason": (
            f"no status from the running daemon for {age:.0f} s (its loop is stuck, or its"
            f" store cannot be written); its last said {sent.get('state')}; see /healthz"
            " and the log"), "throttled": sent.get("throttled", 0),
            "retrying": sent.get("retrying", 0)}
    doc = {"state": sent.get("state", "unknown") if running else "stopped",
           "reason": sent.get("reason") if running else "the daemon is not running",
           "since": sent.get("since") if running else None,
           "rate": sent.get("rate") if running else None,
           "queue": queue, "throttled": sent.get("throttled", 0) if running else 0,
           "retrying": sent.get("retrying", 0) if running else 0}
    if pause is not None and doc["state"] != "paused":
        # the operator's pause is in the store now; the daemon's status may be older
        who = f"paused by {pause['by']}" + (f": {pause['reason']}" if pause.get("reason") else "")
        doc.update(state="paused", reason=who + (" (the daemon is not running)"
                                                 if not running else ""),
                   since=pause.get("since"))
    return doc


def status_line(s: dict, cfg=None) -> str:
    """The one line of ``bridge status`` about sending (``s``: :func:`sending_doc`)."""
    state = s["state"]
    head = state.upper() if state in ("degraded", "paused") else state
    reason = s.get("reason") or ""
    if reason.startswith("paused by "):  # the operator's pause: "PAUSED by anna: ..."
        line = f"{head} {reason[len('paused '):]}"
    else:
        line = head + (f": {reason}" if reason else "")
    if s.get("since") and state in ("degraded", "paused"):
        line += f" (since {local_time(s['since'], cfg)})"
    rate = f"rate {s['rate']:g}/s, " if s.get("rate") is not None else ""
    return (f"{line}; {rate}queue {s['queue']}, throttled {s['throttled']},"
            f" retrying {s['retrying']}")


def cmd_status(cfg, args) -> int:
    """Print the status (``--json``: one JSON document); exit 0."""
    from bridge.app import App

    app = App(cfg)
    st = app.store
    pause = st.control.paused()
    daemon = app.daemon_status()
    doc = {
        "subscribers": st.subscribers.count(),
        "open_incidents": st.incidents.open_count(),
        "deliveries": st.deliveries.counts(),
        "review_queue": len(st.mails.reviews("open")),
        "mails": st.mails.counts(),
        "daemon": daemon,
        "sending_paused": pause.__dict__ if pause else None,
    }
    doc["sending"] = sending_doc(daemon, doc["sending_paused"], st.deliveries.pending())
    # Wishes to stop from an id that matched no subscriber: the person got a reply; an
    # operator may have to remove them by hand (their WARNING log lines say when).
    unmatched, unmatched_at = st.subscribers.unmatched_optouts()
    doc["unmatched_optouts"] = {"count": unmatched, "last_at": unmatched_at}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, default=str))
        return 0
    ts = local_time
    print(f"sending:         {status_line(doc['sending'], cfg)}")
    print(f"subscribers:     {doc['subscribers']}")
    print(f"open incidents:  {doc['open_incidents']}")
    print("deliveries:      " + (", ".join(f"{k} {v}" for k, v in sorted(doc["deliveries"].items()))
                                 or "none"))
    print(f"review queue:    {doc['review_queue']}")
    if doc["sending_paused"]:
        p = doc["sending_paused"]
        print(f"paused:          by {p['by']} since {ts(p['since'], cfg)}"
              + (f" ({p['reason']})" if p["reason"] else "") + "; bridge resume sends again")
    print(f"unmatched opt-outs: {unmatched}" + (f" (last {ts(unmatched_at, cfg)}; see the WARNING"
                                               " lines of bridge.inbound)" if unmatched else ""))
    print("mails:           " + (", ".join(f"{k} {v}" for k, v in sorted(doc["mails"].items()))
                                 or "none"))
    if daemon is None:
        print("daemon:          never ran on this store")
    else:
        state = "running" if daemon.get("running") else "not running"
        note = f"; {daemon['note']}" if daemon.get("note") else ""
        print(f"daemon:          {state} (status of {ts(daemon.get('updated_at'), cfg)}{note})")
        for name, part in (daemon.get("parts") or {}).items():
            print(f"  {name}: " + ", ".join(
                f"{k}={ts(v, cfg) if k.endswith('_at') and isinstance(v, (int, float)) else v}"
                for k, v in part.items()))
    return 0
