"""Command line of the subscriber list: ``bridge subscribers add|import|remove|count|list|show``.

Registered by :mod:`bridge.cli` (:func:`add_parsers`, :data:`COMMANDS`). :func:`recipient`
reads a number or id as an operator types it (also for ``bridge inbound``).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from bridge.cli_status import local_time as _ts


def add_parsers(sub, common) -> None:
    """Add the commands to the ``bridge`` parser's subparsers."""
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


# A business-scoped user id as the Cloud API gives it (e.g. "NL.1502576394655843").
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def recipient(raw: str) -> str:
    """A number in any usual form as E.164, ``user:<business-scoped id>``, or a linked id
    (``lid:<digits>`` or ``<digits>@lid``); else CliError."""
    from bridge.cli import CliError
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
    from bridge.app import App
    from bridge.core.phone import mask

    if args.action == "import":
        return cmd_import(cfg, args)
    app = App(cfg)
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
        number = recipient(args.number)
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
    numbers = [recipient(n) for n in args.numbers]  # all valid, or nothing changes
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
    from bridge.cli import CliError
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
    from bridge.app import App
    from bridge.cli import CliError
    from bridge.core.importing import NumberListError
    from bridge.importer import WelcomeRefused, eta, import_list, welcome_problem

    app = App(cfg)
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


COMMANDS = {"subscribers": cmd_subscribers}
