"""Command line of the review queue: ``bridge review list|show|approve|reject``.

Registered by :mod:`bridge.cli` (:func:`add_parsers`, :data:`COMMANDS`); acts through the
App's :class:`bridge.review.ReviewDesk`, as the console's review page does.
"""

from __future__ import annotations

import json

from bridge.cli_status import local_time as _ts


def add_parsers(sub, common) -> None:
    """Add the commands to the ``bridge`` parser's subparsers."""
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


def cmd_review(cfg, args) -> int:
    """``list`` the items (``--all``: also decided ones), ``show`` one with exactly what
    approve would send, ``approve`` or ``reject`` it (written to the audit log as
    ``cli:<os user>``); exit 1 with one line for an item that is not there or not open."""
    from bridge.app import App
    from bridge.cli import CliError
    from bridge.cli_operator import actor
    from bridge.store.mails import header_subject

    app = App(cfg)
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
        draft = app.review.review_draft(args.id)
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
            o = app.review.approve(args.id)
            app.store.audit.record(who, "review.approve", f"review {args.id}",
                                   f"notice {o.notice_id} to {o.queued} subscribers")
            print(f"review {args.id}: approved; notice {o.notice_id} queued for {o.queued} subscribers")
        else:
            app.review.reject(args.id, reason=args.reason or None)
            app.store.audit.record(who, "review.reject", f"review {args.id}", args.reason or None)
            print(f"review {args.id}: rejected")
    except LookupError as e:
        raise CliError(str(e.args[0])) from None
    return 0


COMMANDS = {"review": cmd_review}
