"""Command line: argument parsing only; each command calls into the app or a module below.

The daemon's own commands (run, dispatch, check, inbound, mail test) are here; groups of
commands have a module each, registered below (``add_parsers`` and ``COMMANDS``):
:mod:`bridge.cli_ingest` (ingest, preview, demo-mail), :mod:`bridge.cli_status` (status),
:mod:`bridge.cli_subscribers` (subscribers), :mod:`bridge.cli_review` (review) and
:mod:`bridge.cli_operator` (users, notices, pause, resume).

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
import sys
import time
from datetime import datetime, timezone

from bridge import (__version__, cli_ingest, cli_operator, cli_review, cli_status,
                    cli_subscribers)
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
    # mail taken in by hand: ingest, preview, demo-mail (bridge.cli_ingest)
    cli_ingest.add_parsers(sub, common)
    sub.add_parser("dispatch", parents=[common], help="send every due delivery now, then exit")
    sub.add_parser("check", parents=[common], help="validate config and templates")
    s = sub.add_parser("status", parents=[common], help="subscribers, incidents, deliveries")
    s.add_argument("--json", action="store_true")

    cli_subscribers.add_parsers(sub, common)  # subscribers (bridge.cli_subscribers)
    cli_review.add_parsers(sub, common)  # review (bridge.cli_review)

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


def cmd_inbound(cfg, args) -> int:
    from bridge.cli_subscribers import recipient
    from bridge.core.models import InboundMessage

    number = recipient(args.number)
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
    from bridge.analysis import make_renderer
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
    "dispatch": cmd_dispatch,
    "check": cmd_check,
    "status": cli_status.cmd_status,
    "inbound": cmd_inbound,
    "mail": cmd_mail,
    **cli_ingest.COMMANDS,  # ingest, preview, demo-mail
    **cli_subscribers.COMMANDS,  # subscribers
    **cli_review.COMMANDS,  # review
    **cli_operator.COMMANDS,  # the operator console's: users, notices, pause, resume
}
