"""The Dutch texts of receipts and alerts: Jinja templates in ``templates/mail/``, rendered
in the project's sandbox (:meth:`bridge.core.render.Renderer.render_string`: the same
filters, limits on time and size), and checked by ``bridge check``.

Each template's first comment lists its variables. Alert templates (``alert_*.j2``) and
``test.j2`` start with the subject line, then a blank line, then the body; a receipt's
subject is always "Re: " and the forwarded mail's subject (threading), so receipt templates
are body only. A template that is missing or fails never loses the mail: a plain built-in
text with the same facts goes instead, and the log says why.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from bridge.core.render import RenderError, Renderer

log = logging.getLogger("bridge.mailout")

FOLDER = "mail"
SUBJECT_FIRST = ("alert_", "test")  # templates whose first line is the subject


def _sample_contexts() -> dict[str, list[dict[str, Any]]]:
    """For ``bridge check``: every template against realistic values (and the edge ones:
    no notice, no link, no reasons)."""
    t = datetime(2026, 11, 28, 8, 51, tzinfo=timezone.utc)
    notice = {"id": 12, "tekst": "*Storing internet en bellen* in Amersfoort sinds za 28 nov"
              " 09:42.\nVerwacht herstel: 14:00.\n\n— CBG Connect (ref. INC000012345678)",
              "abonnees": 1834, "verstuurd_op": t}
    review = {"id": 7, "reden": "no ticket and no status found in the mail", "sinds": t}
    receipt = {"onderwerp": "FW: Storingsmelding KPN: Internet en VoIP - Amersfoort - Nieuw",
               "ontvangen": t, "reden": "new storing INC000012345678 (nieuw)", "uitleg": "",
               "ticket": "INC000012345678", "melding": None, "controle": None, "link": ""}
    reasons = [{"reden": "131026 Message undeliverable", "aantal": 31},
               {"reden": "gave up after 8 attempts: 131000 Something went wrong", "aantal": 2}]
    return {
        "receipt_queued.j2": [{**receipt, "melding": notice}],
        "receipt_duplicate.j2": [{**receipt, "melding": notice,
                                  "reden": "same Message-ID or bytes as mail 3",
                                  "uitleg": "Deze mail is al eerder binnengekomen."},
                                 {**receipt, "reden": "same bytes as an earlier mail"}],
        "receipt_review.j2": [{**receipt, "controle": review, "reden": review["reden"],
                               "uitleg": "In de mail staat geen ticketnummer.",
                               "link": "https://bridge.example.nl/console/review/7"},
                              {**receipt, "controle": review, "reden": review["reden"]}],
        "receipt_rejected.j2": [{**receipt, "reden": "forwarder x@y sent no forwarded KPN mail",
                                 "uitleg": "In je mail zat geen doorgestuurde KPN-mail."}],
        "followup_approved.j2": [{**receipt, "melding": notice, "controle": review}],
        "followup_rejected.j2": [{**receipt, "controle": review, "reden": "geen echte storing"},
                                 {**receipt, "controle": review, "reden": ""}],
        "followup_failures.j2": [{**receipt, "melding": notice, "mislukt": 33,
                                  "redenen": reasons}],
        "alert_paused.j2": [{"kanaal": "cloud", "reden": "190 Access token has expired",
                             "sinds": t, "soort": s, "code": "190", "wachtend": 1834}
                            for s in ("token", "policy", "broker", "config", "other")],
        "alert_resumed.j2": [{"kanaal": "cloud", "was": "190 Access token has expired",
                              "sinds": t, "duur": "25 minuten", "wachtend": 12}],
        "alert_flapping.j2": [{"kanaal": "mqtt", "keer": 5, "vanaf": t, "gepauzeerd": g,
                               "reden": "mqtt: broker unreachable" if g else ""}
                              for g in (True, False)],
        "alert_degraded.j2": [{"kanaal": "cloud", "sinds": t, "duur": "12 minuten",
                               "reden": "96 % of 412 sends not accepted in the last 60 s:"
                                        " 130429 x380, HTTP 500 x16", "wachtend": 1834,
                               "wissels": w} for w in (0, 3)],
        "alert_sending_ok.j2": [{"kanaal": "cloud", "was": "96 % of 412 sends not accepted",
                                 "sinds": t, "duur": "25 minuten", "wachtend": 12}],
        "alert_review.j2": [{"items": [{**review, "link": l}], "nieuw": 1, "wachttijd": 30}
                            for l in ("https://bridge.example.nl/console/review/7", "")],
        "alert_fanout.j2": [{"meldingen": [{"id": 12, "abonnees": 1834, "mislukt": 400,
                                            "aandeel": "21,8", "redenen": reasons}],
                             "grens": "10"}],
        "alert_stopping.j2": [{"reden": "task dispatcher keeps crashing: OSError: disk I/O error",
                               "sinds": t}],
        "test.j2": [{"relay": "smtp.example.nl:587 (starttls, AUTH as bridge)", "tijd": t}],
    }


TEMPLATES = tuple(_sample_contexts())


class MailTexts:
    """Renders the mail templates of ``renderer.templates_dir / "mail"``."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self.folder = Path(renderer.templates_dir) / FOLDER

    def source(self, name: str) -> tuple[str, str]:
        """``(source, path)`` of template ``name`` as the renderer's loader has it (an edited
        copy in the editable layer wins, see bridge.templates). Raises FileNotFoundError."""
        from jinja2 import TemplateNotFound

        env = self.renderer.env
        try:
            source, filename, _ = env.loader.get_source(env, f"{FOLDER}/{name}")  # type: ignore[union-attr]
        except TemplateNotFound:
            raise FileNotFoundError(str(self.folder / name)) from None
        return source, filename or str(self.folder / name)

    def render(self, name: str, ctx: Mapping[str, Any]) -> str:
        """The text of template ``name`` (e.g. ``receipt_queued.j2``). Raises
        :class:`RenderError` (a template problem) or :class:`OSError` (missing file)."""
        source, _ = self.source(name)
        if not any(m in source for m in ("{{", "{%", "{#")):
            return source.strip()  # plain text: render_string would read it as an expression
        return self.renderer.render_string(source, ctx)

    def letter(self, name: str, ctx: Mapping[str, Any],
               subject: str | None = None) -> tuple[str, str]:
        """``(subject, body)`` of template ``name``; never raises: on any failure a plain
        built-in text with the same facts (logged). ``subject`` is given for receipts; for
        alerts it is the template's first line."""
        try:
            text = self.render(name, ctx)
            if name.startswith(SUBJECT_FIRST):
                first, _, body = text.partition("\n")
                if not first.strip() or not body.strip():
                    raise RenderError("the first line must be the subject, then the text")
                return subject or first.strip(), body.strip()
            if not text:
                raise RenderError("template produced no text")
            return subject or name, text
        except (RenderError, OSError, UnicodeDecodeError) as e:
            log.error("mail template %s/%s failed (%s); sending a plain built-in text",
                      FOLDER, name, e)
            return subject or f"{self.renderer.org.name} storingsbridge: {name}", \
                fallback_text(name, ctx)

    def check(self) -> list[str]:
        """Problems as ``path:line: message`` (as ``bridge check`` prints them): a missing
        template, a syntax error, a render that fails against the sample values."""
        from jinja2 import TemplateSyntaxError

        problems: list[str] = []
        if not self.folder.is_dir():
            return [f"{self.folder}:0: folder missing (mail back needs its templates)"]
        for name, contexts in _sample_contexts().items():
            path = self.folder / name
            try:
                source, path = self.source(name)  # type: ignore[assignment]
            except FileNotFoundError:
                problems.append(f"{path}:0: missing (a plain built-in text would go instead)")
                continue
            except OSError as e:
                problems.append(f"{path}:0: cannot read: {e.strerror or e}")
                continue
            try:
                self.renderer.env.parse(source)
            except TemplateSyntaxError as e:
                problems.append(f"{path}:{e.lineno}: syntax error: {e.message}")
                continue
            for i, ctx in enumerate(contexts, 1):
                try:
                    text = self.render(name, ctx)
                except RenderError as e:
                    problems.append(f"{path}:{_line(e)}: sample {i}: {e}")
                    continue
                if name.startswith(SUBJECT_FIRST):
                    first, _, body = text.partition("\n")
                    if not first.strip() or not body.strip():
                        problems.append(f"{path}:1: sample {i}: the first line must be the"
                                        " subject, followed by the text")
                elif not text:
                    problems.append(f"{path}:1: warning: sample {i}: renders to an empty text")
        return problems


def _line(e: BaseException) -> int:
    """The template line a render error came from (1 when unknown)."""
    for exc in (e.__cause__, e):
        if exc is None or exc.__traceback__ is None:
            continue
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
                 if f.filename == "<template>" and f.lineno]
        if lines:
            return lines[-1]
    return 1


def fallback_text(name: str, ctx: Mapping[str, Any]) -> str:
    """A plain Dutch text with the facts of ``ctx``, for when template ``name`` fails."""
    lines = [f"(De tekst {FOLDER}/{name} kon niet worden gemaakt; dit zijn de gegevens.)", ""]
    for k, v in ctx.items():
        if k == "org" or v in (None, "", [], ()):
            continue
        if isinstance(v, datetime):
            v = v.isoformat(timespec="minutes")
        elif isinstance(v, timedelta):
            v = f"{int(v.total_seconds() // 60)} minuten"
        lines.append(f"{k}: {v}")
    return "\n".join(lines)
