"""How a mail is read: bytes -> core.mail -> core.report (+ core.calendar), and the renderer
as configured.

    raw bytes -> core.mail.not_a_mail / parse_mail -> core.report.extract_report
        (+ core.calendar.complete_report) -> :class:`Analysis`

:func:`analyse` is the one way a mail is read: by processing (:mod:`bridge.pipeline`),
``bridge preview``, the review queue (:mod:`bridge.review`) and the console's mail pages.
Pure and possibly slow; the daemon runs it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import Config
from bridge.core.calendar import complete_report
from bridge.core.mail import MailError, not_a_mail, parse_mail
from bridge.core.models import OutageReport, ParsedMail
from bridge.core.render import Renderer
from bridge.core.report import extract_report
from bridge.templates import template_loader


def read_mail(data: bytes, cfg: Config) -> ParsedMail:
    """parse_mail as configured: which forwards are followed (the sender rules) and the
    charsets decoding may guess among."""
    return parse_mail(data, tz=cfg.parser.timezone, senders=cfg.senders,
                      charsets=cfg.mail.charsets)


def read_report(mail: ParsedMail, cfg: Config) -> OutageReport:
    """extract_report, with what the mail's iCalendar part adds (core.calendar)."""
    return complete_report(extract_report(mail, cfg.parser), mail.calendar)


def decoding_note(mail: ParsedMail) -> str:
    """"; decoding: ..." for an outcome reason when decoding had to guess, else ""."""
    return f"; decoding: {'; '.join(mail.notes)}" if mail.notes else ""


@dataclass(frozen=True)
class Analysis:
    """One mail read by the core: :func:`parse_mail`, then :func:`extract_report`, each
    with its result or its error. ``mail`` is None when the bytes are not a readable mail
    (``mail_error`` says why); ``report`` is None when extraction failed (``report_error``:
    the exception, a bug, which processing sends to review)."""

    mail: ParsedMail | None
    report: OutageReport | None = None
    mail_error: MailError | None = None
    report_error: Exception | None = None

    @property
    def error_text(self) -> str | None:
        """``Type: message`` of the extraction error, or None."""
        e = self.report_error
        return f"{type(e).__name__}: {e}" if e is not None else None


def analyse(data: bytes, cfg: Config) -> Analysis:
    """The one way a mail is read: by processing, ``bridge preview`` and the review queue.

    Pure and possibly slow (MIME walk, HTML to text, report extraction): the daemon runs it
    in a worker thread. Never raises for the mail's content; see :class:`Analysis`. Bytes
    that are not a mail at all (:func:`bridge.core.mail.not_a_mail`: an empty file, a PDF,
    random bytes) have no ``mail`` and the reason as ``mail_error``."""
    problem = not_a_mail(data)
    if problem:
        return Analysis(None, mail_error=MailError(problem))
    try:
        mail = read_mail(data, cfg)
    except MailError as e:
        return Analysis(None, mail_error=e)
    try:
        return Analysis(mail, read_report(mail, cfg))
    except Exception as e:  # noqa: BLE001 - processing decides (review), with the error
        return Analysis(mail, report_error=e)


def make_renderer(cfg: Config) -> Renderer:
    return Renderer(cfg.render.templates_dir, cfg.organisation,
                    max_length=cfg.render.max_length, time_limit=cfg.render.time_limit,
                    loader=template_loader(cfg.render.templates_dir, cfg.render.edited_dir))

