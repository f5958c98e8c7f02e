"""Command line: argument parsing only; each command calls into the app or a module below.

Every command takes ``--config PATH`` (default ./config.toml), before or after the command,
and on failure exits non-zero with a one-line reason on stderr.

Exit status: 0 done; 1 a one-line failure (or, for ``bridge run``, a task that kept
crashing); 2 an internal error (a bug); 64 (EX_USAGE) a usage error (an unknown command or
option, a missing argument); 78 (EX_CONFIG) ``bridge run`` could not start: a config
error, a missing secret, a port in use, another daemon on the store (systemd:
``RestartPreventExitStatus=78``); 130 interrupted; 141 the reader of the output went away
(``bridge ... | head``: quietly, as a tool killed by SIGPIPE).
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

from bridge import __version__, cli_status
from bridge.cli_status import local_time as _ts


EX_USAGE = 64  # sysexits.h: the command was used wrongly
EX_CONFIG = 78  # sysexits.h: a configuration error; systemd need not restart
EX_PIPE = 141  # 128 + SIGPIPE: the output's reader closed it (e.g. head)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as exit status 64 (EX_USAGE), not 2: 2 is a bug here."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class CliError(Exception):
    """A failure to report as one line, with exit status ``code`` (1 by default)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    top = _Parser(add_help=False)
    top.add_argument("--config", default="config.toml", metavar="PATH",
                     help="config file (default: ./config.toml)")
    # The commands' copy of --config has no default of its own: given before the command it
    # would otherwise be overwritten by the command's default ("--config X run" ignored X).
    common = _Parser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: ./config.toml)")

    p = _Parser(prog="bridge", parents=[top],
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
    a = ssub.add_parser("import", parents=[common],
                        help="bring in an existing list: one number per line, or a CSV with a"
                             " number column (the input is shown unmasked, never logged)")
    a.add_argument("file", metavar="FILE", help="the list, or - for standard input")
    a.add_argument("--column", metavar="NAME", help="the CSV column that holds the numbers")
    a.add_argument("--reason", metavar="TEXT",
                   help="recorded with each consent, e.g. 'broadcast list before 2026-12'")
    a.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    a.add_argument("--welcome", action="store_true",
                   help="queue one message per added subscriber saying how it works and how to"
                        " stop (templates/replies/welcome.j2), paced behind notices")
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
        if name == "reject":
            a.add_argument("--reason", default="", metavar="TEXT",
                           help="why (the forwarder's follow-up mail says it)")

    s = sub.add_parser("inbound", parents=[common],
                       help="handle one inbound message as if it came on the console channel")
    s.add_argument("number", metavar="NUMBER")
    s.add_argument("text", metavar="TEXT")
    s.add_argument("--id", dest="message_id", metavar="MESSAGE_ID")

    s = sub.add_parser("mail", parents=[common], help="mail back ([mail_out])")
    msub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = msub.add_parser("test", parents=[common],
                        help="send a test mail through the relay; one line with its answer")
    a.add_argument("address", metavar="ADDRESS")

    # -- the operator console's commands: users, notices, pause, resume (bridge.cli_operator)
    from bridge import cli_operator

    cli_operator.add_parsers(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bridge import logs
    from bridge.config import ConfigError, load
    from bridge.store import StoreError

    try:
        cfg = load(args.config)
        logs.setup(cfg.log_level if args.command == "run" else "WARNING")
        code = COMMANDS[args.command](cfg, args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _pipe_closed()
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


def _pipe_closed() -> int:
    """The reader of our output went away (``bridge subscribers list | head``): end
    quietly. Standard output goes to /dev/null so the interpreter's own flush at exit does
    not complain (the Python documentation's recipe for SIGPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EX_PIPE


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

    from bridge.runtime import tune_gc

    try:
        app = _app(cfg)
        tune_gc()  # after the parts are built: see bridge/runtime.py
        return asyncio.run(app.run())
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
    """Each file stored and processed as a mail that arrived; one line (or JSON line) each
    with its outcome. A file larger than ``smtp.max_size`` is refused as SMTP refuses it
    (not stored); exit 1 when a file could not be read or was refused."""
    from bridge.store import RawMail

    now = _now(cfg, args.now)
    app = _app(cfg)
    failed = False
    limit = cfg.smtp.max_size
    for f in args.files:
        try:
            size = Path(f).stat().st_size
            data = Path(f).read_bytes() if size <= limit else b""
        except OSError as e:
            failed = True
            _emit(args.json, {"file": f, "outcome": "error", "reason": e.strerror, "incident": None},
                  f"{f}: error: {e.strerror}")
            continue
        if size > limit:
            failed = True
            reason = (f"larger than smtp.max_size ({size} bytes, at most {limit}), as SMTP "
                      f"refuses it; not stored")
            _emit(args.json, {"file": f, "outcome": "rejected", "reason": reason,
                              "incident": None, "mail": None}, f"{f}: rejected: {reason}")
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
    """What ``bridge ingest`` would do with the mail now, deciding as ingest does with the
    store read (opened read-only: nothing is written or migrated; without a store yet the
    mail is judged on its own). Exit 0 and the notice text; 3 and the notice text under a
    first line that marks the built-in fallback text (a template failed: fix it, ``bridge
    check``); 1 and one line ``would be rejected|a duplicate|outdated|go to review:
    <reason>`` for a mail that would not become a notice."""
    from bridge.pipeline import Pipeline, make_renderer
    from bridge.store import Store, StoreError

    now = _now(cfg, args.now)
    try:
        size = Path(args.file).stat().st_size
        data = Path(args.file).read_bytes() if size <= cfg.smtp.max_size else b""
    except OSError as e:
        raise CliError(f"{args.file}: {e.strerror}") from None
    if size > cfg.smtp.max_size:
        print(f"would be rejected: larger than smtp.max_size ({size} bytes, at most "
              f"{cfg.smtp.max_size})")
        return 1
    store = None
    if Path(cfg.store.path).exists():
        try:
            store = Store.open_readonly(cfg.store.path)
        except StoreError as e:
            raise CliError(f"preview: {e}") from None
    try:
        pipeline = Pipeline(cfg, store, make_renderer(cfg))  # type: ignore[arg-type]
        p = pipeline.preview(data, now=now)
    finally:
        if store is not None:
            store.close()
    if p.outcome == "notice":
        if p.fallback:
            print(f"[BUILT-IN FALLBACK TEXT: {p.fallback}; customers would get the text "
                  f"below; fix the template (bridge check)]")
        print(p.text)
        return 3 if p.fallback else 0
    what = {"review": "would go to review", "duplicate": "would be a duplicate",
            "outdated": "would be outdated"}.get(p.outcome, "would be rejected")
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
    pause = app.store.control.paused()
    if pause is not None:
        raise CliError(f"sending is {pause.describe()} (since {_ts(pause.since, cfg)});"
                       " bridge resume lifts it")
    d = app.dispatcher
    try:
        d.acquire()
    except DispatcherBusy as e:
        raise CliError(str(e)) from None
    try:
        due = app.store.deliveries.waiting_ids(due_by=time.time())
        counters, paused = asyncio.run(_drain_with_channel(app, d))
        left = len(due & app.store.deliveries.waiting_ids())
    finally:
        d.release()
    print(f"sent {counters.sent}, failed {counters.failed}, retried {counters.retried},"
          f" throttled {counters.throttled}, stale {counters.stale},"
          f" waiting {app.store.deliveries.pending()}")
    if paused:
        raise CliError(f"the channel is paused ({paused}); {left} due deliveries not sent")
    if left:
        why = "the channel's rate limit" if counters.throttled else "a retry"
        raise CliError(f"{left} due deliveries not sent yet (they wait for {why};"
                       " bridge status shows them)")
    return 0


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
        await ch.close()  # its HTTP session: else "Unclosed connector" at exit


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


# A business-scoped user id as the Cloud API gives it (e.g. "NL.1502576394655843").
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _recipient(raw: str) -> str:
    """A number in any usual form as E.164, ``user:<business-scoped id>``, or a linked id
    (``lid:<digits>`` or ``<digits>@lid``); else CliError."""
    from bridge.core.phone import PhoneError, normalise, sender_id

    if raw.startswith("lid:") or raw.lower().endswith("@lid"):
        try:
            return sender_id(raw[4:] + "@lid" if raw.startswith("lid:") else raw)
        except PhoneError:
            raise CliError("not a valid linked id: give lid:<digits> or <digits>@lid") from None
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

    if args.action == "import":
        return cmd_import(cfg, args)
    app = _app(cfg)
    subs = app.store.subscribers
    if args.action == "count":
        print(subs.count())
        return 0
    if args.action == "list":
        for s in subs.iter():
            print(f"{s.number if args.unmasked else mask(s.number)}\t{s.channel}\t"
                  f"since {_ts(s.consent_at, cfg)}")
        return 0

    if args.action == "show":
        number = _recipient(args.number)
        s = subs.get(number)
        if s is None:
            print(f"{mask(number)}: nothing stored about this number")
            return 0
        pending = app.store.deliveries.waiting_for(s.id)
        doc = {"number": s.number, "ids": ", ".join(s.ids), "channel": s.channel,
               "consent_at": _ts(s.consent_at, cfg), "consent_message_id": s.consent_ref,
               "consent_wording": s.consent_wording or "-",
               "consent_note": s.consent_note or "-",
               "last_message_at": _ts(s.last_inbound_at, cfg),
               "unreachable_reports_in_a_row": s.unreachable, "pending_messages": pending}
        for k, v in doc.items():
            print(f"{k}: {v}")
        return 0
    numbers = [_recipient(n) for n in args.numbers]  # all valid, or nothing changes
    warnings = {n: _addable(n) for n in numbers} if args.action == "add" else {}
    for number in numbers:
        if args.action == "add":
            _, created = subs.add(number, cfg.channel.type, f"cli:added {_ts(time.time(), cfg)}",
                                  wording="added by the operator (bridge subscribers add)")
            warning = f"; warning: {warnings[number]}" if warnings[number] and created else ""
            print(f"{mask(number)}: {'added' if created else 'already subscribed'}{warning}")
        else:
            removed = subs.remove(number)
            print(f"{mask(number)}: {'removed' if removed else 'not subscribed'}")
    if args.action == "remove":
        app.store.db.scrub()
    return 0


def _addable(number: str) -> str | None:
    """None, or a warning for a number an operator adds (e.g. fixed-line); CliError for a
    number type that cannot have WhatsApp (0800, 0900)."""
    from bridge.core.phone import id_kind, mask, whatsapp_capable

    if id_kind(number) != "number":
        return None
    verdict, why = whatsapp_capable(number)
    if verdict == "refuse":
        raise CliError(f"{mask(number)}: {why}; nothing changed")
    return why or None


def cmd_import(cfg, args) -> int:
    """Per-line outcomes on stdout (the input unmasked: the operator's own terminal, never
    a log), a summary; exit 0 when every line was added or already there, 1 when some were
    invalid (the valid ones are added all the same)."""
    from bridge.core.importing import NumberListError
    from bridge.importer import WelcomeRefused, eta, import_list, welcome_problem

    app = _app(cfg)
    if args.welcome and (problem := welcome_problem(app)):
        raise CliError(f"--welcome: {problem}; or import without --welcome")
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as e:
        raise CliError(f"{args.file}: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # Excel's CSV on Dutch Windows
    try:
        result = import_list(app, text, args.file, column=args.column, reason=args.reason,
                             dry_run=args.dry_run, welcome=args.welcome)
    except NumberListError as e:
        raise CliError(f"{args.file}: {e}") from None
    except WelcomeRefused as e:
        raise CliError(f"--welcome: {e}") from None
    out = []
    for o in result.outcomes:
        what = "would be added" if args.dry_run and o.result == "added" else o.result
        if o.result == "invalid":
            what += f": {o.detail}"
        elif o.detail:  # a warning, or "same number as line N"
            what += f" (warning: {o.detail})" if o.result == "added" else f" ({o.detail})"
        out.append(f"line {o.line.line}: {o.line.raw}: {what}\n")
    sys.stdout.write("".join(out))
    added, there, invalid = (result.count(r) for r in ("added", "already subscribed", "invalid"))
    lead = "dry run, nothing changed: would add" if args.dry_run else "added"
    print(f"{lead} {added}, already subscribed {there}, invalid {invalid}"
          f" ({len(result.outcomes)} lines with a number, {result.skipped} blank, comment or"
          f" header lines skipped)")
    if args.welcome:
        verb = "would queue" if args.dry_run else "queued"
        print(f"welcome: {verb} {result.welcome} messages at half the channel's pace (notices"
              f" go first); the last one is due in about {eta(result.welcome_hours)}")
    return 1 if invalid else 0


def cmd_review(cfg, args) -> int:
    from bridge.cli_operator import actor
    from bridge.store.mails import header_subject

    app = _app(cfg)
    mails = app.store.mails
    if args.action == "list":
        items = mails.reviews(None if args.all else "open")
        if not items:
            print("review queue is empty")
            return 0
        print("id\tstate\twaiting since\tfrom\tsubject\treason")
        for r in items:
            print(f"{r['id']}\t{r['state']}\t{_ts(r['created_at'], cfg)}\t"
                  f"{r['envelope_from'] or '-'}\t{header_subject(r['head']) or '-'}\t{r['reason']}")
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
        draft = app.pipeline.review_draft(args.id)
        mail, report, error = draft.mail, draft.report, draft.error
        print(f"from: {mail.outer.from_addr}\nsubject: {mail.effective.subject}")
        if report is None:
            print(f"report: none ({error})")
        else:
            print(f"report: {json.dumps(report.to_json(), ensure_ascii=False)}")
        print("--- text ---")
        print(mail.text[:4000])
        if r["state"] == "open":
            print("--- notice (exactly what approve sends) ---")
            print(draft.notice.text)
        return 0
    who = actor()  # for the audit log; mail back names only the console's users
    try:
        if args.action == "approve":
            o = app.pipeline.approve(args.id)
            app.store.audit.record(who, "review.approve", f"review {args.id}",
                                   f"notice {o.notice_id} to {o.queued} subscribers")
            print(f"review {args.id}: approved; notice {o.notice_id} queued for {o.queued} subscribers")
        else:
            app.pipeline.reject(args.id, reason=args.reason or None)
            app.store.audit.record(who, "review.reject", f"review {args.id}", args.reason or None)
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


def cmd_mail(cfg, args) -> int:
    """``bridge mail test ADDRESS``: exit 0 and ``ADDRESS via RELAY: 250 ...`` when the relay
    took the test mail; else exit 1 with the step that failed and the relay's answer."""
    from bridge.mailout import send_test
    from bridge.pipeline import make_renderer
    from bridge.store import Store

    settings = cfg.mail_out
    if settings is None:
        raise CliError("mail back is off: add a [mail_out] table (docs/mailout.md)")
    address = args.address.strip()
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or any(c in address for c in " <>,;\""):
        raise CliError(f"not a mail address: {args.address!r}")
    store = Store.open(cfg.store.path)
    try:
        key = store.mailout.message_id_key()
    finally:
        store.close()
    ok, line = send_test(cfg, settings, address, make_renderer(cfg), key)
    if not ok:
        raise CliError(f"not sent: {line}")
    print(f"sent: {line}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "ingest": cmd_ingest,
    "preview": cmd_preview,
    "demo-mail": cmd_demo_mail,
    "dispatch": cmd_dispatch,
    "check": cmd_check,
    "status": cli_status.cmd_status,
    "subscribers": cmd_subscribers,
    "review": cmd_review,
    "inbound": cmd_inbound,
    "mail": cmd_mail,
}
# the operator console's commands (bridge.cli_operator): users, notices, pause, resume
from bridge.cli_operator import COMMANDS as OPERATOR_COMMANDS  # noqa: E402

COMMANDS.update(OPERATOR_COMMANDS)
