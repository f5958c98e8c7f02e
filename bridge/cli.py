"""Command line: argument parsing only; each command calls into the app or a module below.

Every command takes ``--config PATH`` (default ./config.toml), before or after the command,
and on failure exits non-zero with a one-line reason on stderr.

Exit status: 0 done; 1 a one-line failure (or, for ``bridge run``, a task that kept
crashing); 2 an internal error (a bug); 78 (EX_CONFIG) ``bridge run`` could not start: a
config error, a missing secret, a port in use, another daemon on the store (systemd:
``RestartPreventExitStatus=78``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bridge import __version__


EX_CONFIG = 78  # sysexits.h: a configuration error; systemd need not restart


class CliError(Exception):
    """A failure to report as one line, with exit status ``code`` (1 by default)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("--config", default="config.toml", metavar="PATH",
                     help="config file (default: ./config.toml)")
    # The commands' copy of --config has no default of its own: given before the command it
    # would otherwise be overwritten by the command's default ("--config X run" ignored X).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: ./config.toml)")

    p = argparse.ArgumentParser(prog="bridge", parents=[top],
                                description="KPN outage mails in, Dutch WhatsApp notices out.")
    p.add_argument("--version", action="version", version=f"storingsbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="run the daemon")
    now_help = ("decide as of this moment, ISO 8601 (2026-11-28T10:00; without an offset in"
                " organisation.timezone) instead of the clock: to replay an old mail")
    s = sub.add_parser("ingest", parents=[common], help="take mail files as if they had arrived")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--json", action="store_true", help="JSON lines output")
    s.add_argument("--now", metavar="WHEN", help=now_help)
    s = sub.add_parser("preview", parents=[common], help="print the notice a mail would produce")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--now", metavar="WHEN", help=now_help)
    s = sub.add_parser("demo-mail", parents=[common],
                       help="print a sample KPN outage mail dated now (to try the bridge)")
    s.add_argument("--ticket", metavar="ID", help="ticket id (default: one from the clock)")
    sub.add_parser("dispatch", parents=[common], help="send every due delivery now, then exit")
    sub.add_parser("check", parents=[common], help="validate config and templates")
    s = sub.add_parser("status", parents=[common], help="subscribers, incidents, deliveries")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("subscribers", parents=[common], help="manage subscribers")
    ssub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ssub.add_parser("add", parents=[common], help="subscribe numbers (or user:<id>)")
    a.add_argument("numbers", nargs="+", metavar="NUMBER")
    a = ssub.add_parser("remove", parents=[common], help="unsubscribe and erase numbers")
    a.add_argument("numbers", nargs="+", metavar="NUMBER")
    ssub.add_parser("count", parents=[common], help="print the number of subscribers")
    a = ssub.add_parser("list", parents=[common], help="list subscribers (numbers masked)")
    a.add_argument("--unmasked", action="store_true", help="show full numbers")
    a = ssub.add_parser("show", parents=[common], help="everything stored about a number")
    a.add_argument("number", metavar="NUMBER")

    s = sub.add_parser("review", parents=[common], help="the review queue")
    rsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rsub.add_parser("list", parents=[common], help="open review items (--all: also decided)")
    a.add_argument("--all", action="store_true", help="also decided items")
    for name, text in (("show", "the mail, its report and the exact text approve would send"),
                       ("approve", "send the item's fallback notice to every subscriber"),
                       ("reject", "drop the item; nothing is sent")):
        a = rsub.add_parser(name, parents=[common], help=text)
        a.add_argument("id", type=int, metavar="ID")

    s = sub.add_parser("inbound", parents=[common],
                       help="handle one inbound message as if it came on the console channel")
    s.add_argument("number", metavar="NUMBER")
    s.add_argument("text", metavar="TEXT")
    s.add_argument("--id", dest="message_id", metavar="MESSAGE_ID")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bridge import logs
    from bridge.config import ConfigError, load
    from bridge.store import StoreError

    try:
        cfg = load(args.config)
        logs.setup(cfg.log_level if args.command == "run" else "WARNING")
        return COMMANDS[args.command](cfg, args)
    except (ConfigError, StoreError, CliError) as e:
        print(f"bridge: {e}", file=sys.stderr)
        if isinstance(e, CliError):
            return e.code
        return EX_CONFIG if args.command == "run" else 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line, with the traceback only when asked
        import os
        import traceback

        if os.environ.get("BRIDGE_DEBUG"):
            traceback.print_exc()
        print(f"bridge: internal error: {type(e).__name__}: {e} (BRIDGE_DEBUG=1 shows where)",
              file=sys.stderr)
        return 2


def _app(cfg):
    from bridge.app import App

    return App(cfg)


# -- commands -------------------------------------------------------------------------------------
def cmd_run(cfg, args) -> int:
    """The daemon. Anything that stops it from starting (a config error, a missing secret,
    a port in use, another daemon on the store, a store it cannot open) exits 78, so
    systemd does not restart it in a loop; a task that kept crashing exits 1."""
    from bridge.config import ConfigError
    from bridge.outbox import DispatcherBusy
    from bridge.store import StoreError

    try:
        return asyncio.run(_app(cfg).run())
    except (ConfigError, StoreError, DispatcherBusy) as e:
        raise CliError(str(e), EX_CONFIG) from None
    except OSError as e:
        raise CliError(f"cannot start: {e.strerror or e}", EX_CONFIG) from None


def _now(cfg, value: str | None) -> datetime | None:
    """``--now``: an ISO 8601 moment, naive = in organisation.timezone; None when not given."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(f"--now: not an ISO 8601 date and time: {value!r}"
                       " (e.g. 2026-11-28T10:00 or 2026-11-28T10:00+01:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(cfg.organisation.timezone))
    return when.astimezone(timezone.utc)


def cmd_ingest(cfg, args) -> int:
    from bridge.store import RawMail

    now = _now(cfg, args.now)
    app = _app(cfg)
    failed = False
    for f in args.files:
        try:
            data = Path(f).read_bytes()
        except OSError as e:
            failed = True
            _emit(args.json, {"file": f, "outcome": "error", "reason": e.strerror, "incident": None},
                  f"{f}: error: {e.strerror}")
            continue
        mail_id = app.store.mails.add(RawMail(data=data, source="cli", source_ref=Path(f).name))
        o = app.pipeline.process(mail_id, now=now)
        _emit(args.json, {"file": f, "outcome": o.outcome, "reason": o.reason,
                          "incident": o.incident_id, "notice": o.notice_id, "queued": o.queued,
                          "mail": mail_id, "ticket": o.ticket},
              f"{f}: {o.outcome}: {o.reason}")
    return 1 if failed else 0


def _emit(as_json: bool, doc: dict, line: str) -> None:
    print(json.dumps(doc, ensure_ascii=False) if as_json else line)


def cmd_preview(cfg, args) -> int:
    """The notice text and exit 0; or, for a mail ingest would not turn into a notice, one
    line ``would be rejected: <reason>`` / ``would go to review: <reason>`` and exit 1."""
    from bridge.pipeline import Pipeline, make_renderer

    now = _now(cfg, args.now)
    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise CliError(f"{args.file}: {e.strerror}") from None
    pipeline = Pipeline(cfg, None, make_renderer(cfg))  # type: ignore[arg-type]
    p = pipeline.preview(data, now=now)
    if p.outcome == "notice":
        print(p.text)
        return 0
    what = "would go to review" if p.outcome == "review" else "would be rejected"
    print(f"{what}: {p.reason}")
    return 1


def cmd_demo_mail(cfg, args) -> int:
    """A KPN-style outage mail dated now, on stdout (bytes), for trying the bridge."""
    from bridge.demo import demo_mail

    sys.stdout.buffer.write(demo_mail(datetime.now(timezone.utc), cfg.organisation.timezone,
                                      ticket=args.ticket))
    sys.stdout.flush()
    return 0


def cmd_dispatch(cfg, args) -> int:
    """Send what is due, print the counts; exit 0 only when everything that was due is
    handled (sent, failed for good, stale, superseded or cancelled). A paused channel, or
    deliveries that were due and still wait (e.g. for a retry), is a one-line failure."""
    from bridge.outbox import DispatcherBusy

    app = _app(cfg)
    d = app.dispatcher
    try:
        d.acquire()
    except DispatcherBusy as e:
        raise CliError(str(e)) from None
    try:
        due = _waiting_ids(app.store, due_by=time.time())
        counters, paused = asyncio.run(_drain_with_channel(app, d))
        left = len(due & _waiting_ids(app.store))
    finally:
        d.release()
    print(f"sent {counters.sent}, failed {counters.failed}, retried {counters.retried},"
          f" stale {counters.stale}, waiting {app.store.deliveries.pending()}")
    if paused:
        raise CliError(f"the channel is paused ({paused}); {left} due deliveries not sent")
    if left:
        raise CliError(f"{left} due deliveries not sent yet (they wait for a retry;"
                       " bridge status shows them)")
    return 0


def _waiting_ids(store, due_by: float | None = None) -> set[int]:
    """Ids of deliveries not yet handled (pending or being sent), optionally only those due."""
    sql = "SELECT id FROM deliveries WHERE state IN ('pending','sending')"
    rows = (store.db.execute(sql + " AND due_at <= ?", (due_by,)) if due_by is not None
            else store.db.execute(sql))
    return {r[0] for r in rows}


async def _drain_with_channel(app, d):
    """Open the channel's connection (MQTT, Cloud API probes) while draining the outbox.
    Returns the counters and why the channel was paused at the end (None: it was not)."""
    import contextlib

    ch = app.channel
    runner = asyncio.create_task(ch.run(), name="channel")
    try:
        t = time.monotonic()
        while ch.paused and time.monotonic() - t < 10 and not runner.done():
            await asyncio.sleep(0.05)
        counters = await d.drain()
        return counters, ch.paused
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner


def cmd_check(cfg, args) -> int:
    from bridge.checks import check_all, secret_problems

    problems = secret_problems(cfg) + check_all(cfg)
    for p in problems:
        print(p)
    errors = [p for p in problems if not p.startswith("warning") and ": warning:" not in p]
    if errors:
        warnings = len(problems) - len(errors)
        raise CliError(f"{len(errors)} problem(s) found"
                       + (f" and {warnings} warning(s)" if warnings else ""))
    print(f"ok: {cfg.path}, templates in {cfg.render.templates_dir}")
    return 0


def cmd_status(cfg, args) -> int:
    app = _app(cfg)
    st = app.store
    doc = {
        "subscribers": st.subscribers.count(),
        "open_incidents": st.incidents.open_count(),
        "deliveries": st.deliveries.counts(),
        "review_queue": len(st.mails.reviews("open")),
        "mails": st.mails.counts(),
        "daemon": app.daemon_status(),
    }
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, default=str))
        return 0
    print(f"subscribers:     {doc['subscribers']}")
    print(f"open incidents:  {doc['open_incidents']}")
    print("deliveries:      " + (", ".join(f"{k} {v}" for k, v in sorted(doc["deliveries"].items()))
                                 or "none"))
    print(f"review queue:    {doc['review_queue']}")
    print("mails:           " + (", ".join(f"{k} {v}" for k, v in sorted(doc["mails"].items()))
                                 or "none"))
    daemon = doc["daemon"]
    if daemon is None:
        print("daemon:          never ran on this store")
    else:
        state = "running" if daemon.get("running") else "not running"
        print(f"daemon:          {state} (status of {_ts(daemon.get('updated_at'))})")
        for name, part in (daemon.get("parts") or {}).items():
            print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in part.items()))
    return 0


# A business-scoped user id as the Cloud API gives it (e.g. "NL.1502576394655843").
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _recipient(raw: str) -> str:
    """A number in any usual form as E.164, or ``user:<business-scoped id>``; else CliError."""
    from bridge.core.phone import PhoneError, normalise

    if raw.startswith("user:"):
        if not _USER_ID.fullmatch(raw[5:]):
            raise CliError("not a valid user id: after 'user:' give the business-scoped id,"
                           " letters, digits, '.', '_' or '-' without spaces"
                           " (e.g. user:NL.1502576394655843)")
        return raw
    try:
        return normalise(raw, "NL")
    except PhoneError as e:
        raise CliError(str(e)) from None


def cmd_subscribers(cfg, args) -> int:
    from bridge.core.phone import mask

    app = _app(cfg)
    subs = app.store.subscribers
    if args.action == "count":
        print(subs.count())
        return 0
    if args.action == "list":
        for s in subs.iter():
            print(f"{s.number if args.unmasked else mask(s.number)}\t{s.channel}\t"
                  f"since {_ts(s.consent_at)}")
        return 0

    if args.action == "show":
        number = _recipient(args.number)
        s = subs.get(number)
        if s is None:
            print(f"{mask(number)}: nothing stored about this number")
            return 0
        pending = app.store.db.scalar(
            "SELECT count(*) FROM deliveries WHERE subscriber_id=? AND state IN ('pending','sending')",
            (s.id,))
        doc = {"number": s.number, "channel": s.channel, "consent_at": _ts(s.consent_at),
               "consent_message_id": s.consent_ref, "last_message_at": _ts(s.last_inbound_at),
               "unreachable_reports_in_a_row": s.unreachable, "pending_messages": pending}
        for k, v in doc.items():
            print(f"{k}: {v}")
        return 0
    numbers = [_recipient(n) for n in args.numbers]  # all valid, or nothing changes
    for number in numbers:
        if args.action == "add":
            _, created = subs.add(number, cfg.channel.type, f"cli:added {_ts(time.time())}")
            print(f"{mask(number)}: {'added' if created else 'already subscribed'}")
        else:
            removed = subs.remove(number)
            print(f"{mask(number)}: {'removed' if removed else 'not subscribed'}")
    if args.action == "remove":
        app.store.db.scrub()
    return 0


def cmd_review(cfg, args) -> int:
    app = _app(cfg)
    mails = app.store.mails
    if args.action == "list":
        items = mails.reviews(None if args.all else "open")
        if not items:
            print("review queue is empty")
        for r in items:
            print(f"{r['id']}\t{r['state']}\t{_ts(r['created_at'])}\t{r['envelope_from'] or ''}\t"
                  f"{r['reason']}")
        return 0
    if args.action == "show":
        r = mails.review(args.id)
        if r is None:
            raise CliError(f"no review item {args.id}")
        m = mails.get(r["raw_mail_id"])
        print(f"review {r['id']} ({r['state']}): {r['reason']}")
        if m is None or m.data is None:
            print("(the mail is no longer stored)")
            return 0
        mail, report, error, notice = app.pipeline.review_preview(m.data)
        print(f"from: {mail.outer.from_addr}\nsubject: {mail.effective.subject}")
        if report is None:
            print(f"report: none ({error})")
        else:
            print(f"report: {json.dumps(report.to_json(), ensure_ascii=False)}")
        print("--- text ---")
        print(mail.text[:4000])
        if r["state"] == "open":
            print("--- notice (exactly what approve sends) ---")
            print(notice.text)
        return 0
    try:
        if args.action == "approve":
            o = app.pipeline.approve(args.id)
            print(f"review {args.id}: approved; notice {o.notice_id} queued for {o.queued} subscribers")
        else:
            app.pipeline.reject(args.id)
            print(f"review {args.id}: rejected")
    except LookupError as e:
        raise CliError(str(e.args[0])) from None
    return 0


def cmd_inbound(cfg, args) -> int:
    from bridge.core.models import InboundMessage

    number = _recipient(args.number)
    app = _app(cfg)
    now = datetime.now(timezone.utc)
    msg = InboundMessage(channel=cfg.channel.type, sender=number, text=args.text,
                         message_id=args.message_id or f"cli-{now.timestamp():.6f}",
                         received_at=now)
    result = app.inbound.handle(msg)
    if result.reply:
        print(result.reply)
    elif result.effect == "duplicate":
        print("(message id seen before: nothing done)")
    else:
        print("(no reply: the same reply went to this number recently)")
    return 0


def _ts(t: float | None) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).astimezone().isoformat(timespec="seconds")


COMMANDS = {
    "run": cmd_run,
    "ingest": cmd_ingest,
    "preview": cmd_preview,
    "demo-mail": cmd_demo_mail,
    "dispatch": cmd_dispatch,
    "check": cmd_check,
    "status": cmd_status,
    "subscribers": cmd_subscribers,
    "review": cmd_review,
    "inbound": cmd_inbound,
}
