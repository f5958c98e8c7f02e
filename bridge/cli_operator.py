"""Command line of the operator console's work: ``bridge users``, ``bridge notices``,
``bridge pause`` and ``bridge resume``.

Registered by :mod:`bridge.cli` in one block (:func:`add_parsers`, :data:`COMMANDS`). Every
change is written to the audit log as ``cli:<os user>``, beside the console's entries.
"""

from __future__ import annotations

import getpass
import sys


def add_parsers(sub, common) -> None:
    """Add the commands to the ``bridge`` parser's subparsers."""
    s = sub.add_parser("users", parents=[common], help="console accounts")
    us = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = us.add_parser("add", parents=[common],
                      help="make an account: the password is typed twice (or, when standard"
                           " input is not a terminal, its first line)")
    a.add_argument("name", metavar="NAME")
    us.add_parser("list", parents=[common], help="the accounts, their last sign-in")
    a = us.add_parser("remove", parents=[common], help="delete an account (signs it out)")
    a.add_argument("name", metavar="NAME")
    a = us.add_parser("passwd", parents=[common],
                      help="set a new password (signs the account out everywhere)")
    a.add_argument("name", metavar="NAME")

    s = sub.add_parser("notices", parents=[common], help="what was sent to whom")
    ns = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = ns.add_parser("list", parents=[common], help="the last notices with delivery counts")
    a.add_argument("--limit", type=int, default=20, metavar="N")
    a = ns.add_parser("show", parents=[common],
                      help="a notice: its text, deliveries by state, failures by reason")
    a.add_argument("id", type=int, metavar="ID")
    a = ns.add_parser("cancel", parents=[common],
                      help="stop sending a notice: its unsent deliveries are cancelled")
    a.add_argument("id", type=int, metavar="ID")

    a = sub.add_parser("pause", parents=[common],
                       help="pause all sending (the daemon keeps deliveries waiting)")
    a.add_argument("reason", nargs="?", default="", metavar="REASON")
    sub.add_parser("resume", parents=[common], help="resume sending after bridge pause")


def actor() -> str:
    """Who runs this command, for the audit log: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (containers): still an entry
        return "cli"


def _store(cfg):
    from bridge.store import Store

    return Store.open(cfg.store.path)


def read_password(prompt: str = "Password") -> str:
    """Twice at a terminal (they must match); else the first line of standard input."""
    from bridge.cli import CliError

    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass(f"{prompt}: ")
        second = getpass.getpass(f"{prompt} (again): ")
        if first != second:
            raise CliError("the passwords differ; nothing changed")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise CliError("no password: type it at a terminal, or give it as the first line"
                       " of standard input")
    return line.rstrip("\r\n")


def cmd_users(cfg, args) -> int:
    from bridge.accounts import AccountError, Accounts, check_name
    from bridge.cli import CliError, _ts

    store = _store(cfg)
    try:
        accounts = Accounts(store)
        if args.action == "list":
            users = store.users.list()
            if not users:
                print("no accounts (bridge users add NAME)")
            else:
                print("name\tcreated\tlast sign-in\tsessions")
            for u in users:
                print(f"{u.name}\t{_ts(u.created_at, cfg)}\t{_ts(u.last_login_at, cfg)}\t"
                      f"{store.users.sessions_of(u.id)}")
            return 0
        try:
            name = check_name(args.name)
        except AccountError as e:
            raise CliError(str(e)) from None
        if args.action == "remove":
            if not store.users.remove(name):
                raise CliError(f"no user {name}")
            store.audit.record(actor(), "user.remove", f"user {name}")
            print(f"user {name}: removed")
            return 0
        if args.action == "add" and store.users.get(name) is not None:
            raise CliError(f"user {name} exists already (bridge users passwd {name})")
        if args.action == "passwd" and store.users.get(name) is None:
            raise CliError(f"no user {name}")
        password = read_password()
        try:
            if args.action == "add":
                accounts.add(name, password)
            else:
                accounts.set_password(name, password)
        except (AccountError, ValueError) as e:
            raise CliError(str(e)) from None
        store.audit.record(actor(), f"user.{args.action}", f"user {name}")
        print(f"user {name}: {'added' if args.action == 'add' else 'password changed'}")
        if args.action == "add" and cfg.web is not None and cfg.web.console:
            print(f"sign in at {cfg.web.console_url}")
        return 0
    finally:
        store.close()


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def cmd_notices(cfg, args) -> int:
    from bridge.cli import CliError, _ts

    store = _store(cfg)
    try:
        n = store.notices
        if args.action == "list":
            rows = n.recent(max(1, args.limit))
            if not rows:
                print("no notices")
                return 0
            print("id\tcreated\tkind\tticket\trecipients\tdeliveries")
            for r in rows:
                what = r["kind"] + (f" {r['status']}" if r["status"] else "")
                print(f"{r['id']}\t{_ts(r['created_at'], cfg)}\t{what}\t{r['ticket'] or '-'}\t"
                      f"{r['recipients']}\t{_counts_line(n.counts(r['id']))}")
            return 0
        notice = n.get(args.id)
        if notice is None:
            raise CliError(f"no notice {args.id}")
        if args.action == "cancel":
            cancelled = n.cancel(args.id)
            store.audit.record(actor(), "notice.cancel", f"notice {args.id}",
                               f"{cancelled} unsent deliveries cancelled")
            print(f"notice {args.id}: {cancelled} unsent deliveries cancelled")
            return 0
        counts = n.counts(args.id)
        print(f"notice {notice['id']} ({notice['kind']}"
              + (f" {notice['status']}" if notice["status"] else "") + ")"
              + (f", incident {notice['incident_id']} ({notice['ticket']})"
                 if notice["incident_id"] else "")
              + (f", mail {notice['raw_mail_id']}" if notice["raw_mail_id"] else ""))
        print(f"created: {_ts(notice['created_at'], cfg)}; template {notice['template']}"
              + (" (built-in text: the template failed)" if notice["fallback"] else ""))
        print(f"recipients: {notice['recipients']}")
        print(f"deliveries: {_counts_line(counts)}")
        failures = n.failures(args.id)
        if failures:
            print("failures by reason:")
            for reason, count in failures:
                print(f"  {count} x {reason}")
        print("--- text ---")
        print(notice["text"])
        return 0
    finally:
        store.close()


def cmd_pause(cfg, args) -> int:
    from bridge.cli import _ts

    store = _store(cfg)
    try:
        before = store.control.paused()
        p = store.control.pause(actor(), args.reason)
        if before is not None:
            print(f"sending was already paused ({p.describe()}, since {_ts(p.since, cfg)})")
            return 0
        store.audit.record(actor(), "sending.pause", "all sending", args.reason or None)
        waiting = store.deliveries.pending()
        print(f"sending paused; {waiting} deliveries wait (bridge resume sends them)")
        return 0
    finally:
        store.close()


def cmd_resume(cfg, args) -> int:
    store = _store(cfg)
    try:
        p = store.control.resume()
        if p is None:
            print("sending was not paused")
            return 0
        store.audit.record(actor(), "sending.resume", "all sending", f"was {p.describe()}")
        print(f"sending resumed ({p.describe()} lifted); {store.deliveries.pending()}"
              " deliveries wait")
        return 0
    finally:
        store.close()


COMMANDS = {"users": cmd_users, "notices": cmd_notices, "pause": cmd_pause,
            "resume": cmd_resume}

__all__ = ["COMMANDS", "actor", "add_parsers", "read_password"]
