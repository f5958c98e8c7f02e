"""Command line of mail taken in by hand: ``bridge ingest`` (files stored and processed as
mails that arrived), ``bridge preview`` (what ingest would do, nothing written) and
``bridge demo-mail`` (a sample KPN outage mail to try the bridge).

Registered by :mod:`bridge.cli` (:func:`add_parsers`, :data:`COMMANDS`). ``--now`` lets
ingest and preview decide as of another moment than the clock (:func:`parse_now`).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path


def add_parsers(sub, common) -> None:
    """Add the commands to the ``bridge`` parser's subparsers."""
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


def parse_now(cfg, value: str | None) -> datetime | None:
    """``--now``: an ISO 8601 moment, naive = in organisation.timezone; None when not given."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo

    from bridge.cli import CliError

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
    from bridge.analysis import analyse
    from bridge.app import App
    from bridge.store import RawMail

    now = parse_now(cfg, args.now)
    app = App(cfg)
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
        # Stored and decided in one transaction: a running daemon, which processes every
        # mail stored without an outcome, never takes this one and decides it as of its own
        # clock instead of --now. The pure reading is done before the write lock is taken.
        analysis = analyse(data, cfg)
        with app.store.tx(durable=True):
            mail_id = app.store.mails.add(RawMail(data=data, source="cli",
                                                  source_ref=Path(f).name))
            o = app.pipeline.process(mail_id, analysis, now=now)
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
    from bridge.analysis import make_renderer
    from bridge.cli import CliError
    from bridge.pipeline import Pipeline
    from bridge.store import Store, StoreError

    now = parse_now(cfg, args.now)
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


COMMANDS = {"ingest": cmd_ingest, "preview": cmd_preview, "demo-mail": cmd_demo_mail}
