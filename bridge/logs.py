"""Logging set-up: every line goes through a formatter that masks phone numbers."""

from __future__ import annotations

import logging
import sys

from bridge.core.phone import mask_text


class MaskingFormatter(logging.Formatter):
    """Masks every phone number in the final line, tracebacks included (what parses as
    one: :func:`bridge.core.phone.mask_text`; other numbers stay readable)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiosmtpd", "mail.log", "httpx", "httpcore", "aioimaplib"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def eta(seconds: float) -> str:
    """A duration for log lines: "45 s", "12 min", "3.5 h"."""
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
