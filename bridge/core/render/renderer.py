"""The renderer: an outage report or a reply name -> a short Dutch WhatsApp text, from the
templates, safely.

Pure except for what its Jinja loader reads: the templates' sources come from the
:class:`jinja2.BaseLoader` the shell hands in (``bridge/templates.py`` builds it over
``[render] templates_dir``); this module names no file. Only when no loader is given does
:class:`Renderer` make a :class:`jinja2.FileSystemLoader` over ``templates_dir`` itself, a
convenience for tests, benches and scripts (see docs/architecture.md, "What the core may
read"). Every render runs in the :class:`~.sandbox.LimitedSandbox` under a
:class:`~.sandbox.Deadline`; a failing template falls back to the built-in text
(:mod:`.texts`) and :class:`Rendered` says so.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
)

from bridge.core.models import Organisation, OutageReport
from bridge.core.render.filters import (
    DEFAULT_TZ,
    dag,
    datum,
    diensten,
    duur,
    kort,
    lijst,
    moment,
    normalise,
    shorten,
    tijd,
    venster,
    wa,
)
from bridge.core.render.sandbox import Deadline, LimitedSandbox, RenderLimitError, guard_filter
from bridge.core.render.texts import (
    MODEM,
    actual_end,
    changed_facts,
    collapse,
    default_notice_text,
    default_reply_text,
    expected_end,
    passed_end,
    postcode_list,
    reference_moment,
    where_phrase,
)

__all__ = ["RenderError", "Rendered", "Renderer"]

log = logging.getLogger("bridge.core.render")  # the name log lines have always carried


class RenderError(Exception):
    """A template could not be rendered (raised by :meth:`Renderer.render_string`)."""


@dataclass(frozen=True)
class Rendered:
    """A rendered text and how it came about."""

    text: str
    template: str  # template name tried, e.g. "notices/storing_nieuw.j2"
    fallback: bool  # True: the text is a built-in default, not from the template
    error: str | None  # short reason for the fallback
    truncated: bool  # True: cut to max_length


_NAME_RE = re.compile(r"^[a-z0-9_]+$")
_SAMPLE_REPLY_CONTEXT = {"subscribe_sentence": "Aanmelden storingsberichten"}


def _short_reason(exc: BaseException, where: tuple[str, int] | None = None) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    if len(reason) > 200:
        reason = reason[:199] + "…"
    if where:
        reason += f" ({where[0]}:{where[1]})"
    return reason


class Renderer:
    """Renders notices and replies from templates in ``templates_dir``, safely.

    ``templates_dir``: the folder the templates come from, as named in messages (the problems
    :meth:`check` reports, fallback reasons); the renderer does not read it itself.
    ``loader``: the Jinja loader that reads the templates (names such as
    ``notices/storing_nieuw.j2``), built by the shell (``bridge.templates.template_loader``).
    Without one, a :class:`jinja2.FileSystemLoader` over ``templates_dir`` is made here (for
    tests, benches and scripts; the daemon always passes its loader).
    ``max_length``: notices/replies longer than this are cut at a word boundary ("…").
    ``time_limit``: CPU seconds one render may take before it is stopped.
    ``max_output``: characters one render may produce before it is stopped.
    """

    def __init__(
        self,
        templates_dir: Path | str,
        org: Organisation,
        max_length: int = 700,
        time_limit: float = 0.5,
        max_output: int = 65536,
        *,
        loader: BaseLoader | None = None,
    ) -> None:
        self.templates_dir = Path(templates_dir)
        if loader is None:
            loader = FileSystemLoader(str(self.templates_dir))
        self.org = org
        self.max_length = max_length
        self.time_limit = time_limit
        self.max_output = max_output
        self.tz = org.timezone or DEFAULT_TZ
        self.env = LimitedSandbox(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=True,
            max_output=max_output,
        )
        tz = self.tz
        own: dict[str, Callable] = {
            "datum": lambda v: datum(v, tz),
            "tijd": lambda v: tijd(v, tz),
            "dag": lambda v: dag(v, tz),
            "moment": lambda v, ref=None: moment(v, ref, tz),
            "venster": lambda v, end=None: venster(v, end, tz),
            "lijst": lijst,
            "diensten": diensten,
            "wa": wa,
            "kort": kort,
            "duur": duur,
        }
        self.env.filters.update(own)
        for name, func in list(self.env.filters.items()):
            self.env.filters[name] = guard_filter(self.env, name, func)
        self._string_cache: dict[str, Any] = {}

    # -- public API -------------------------------------------------------------------

    def notice_template_name(self, report: OutageReport) -> str:
        """``notices/{kind}_{status}.j2`` when the loader has it, else ``notices/fallback.j2``."""
        kind, status = report.kind or "", report.status or ""
        if _NAME_RE.match(kind) and _NAME_RE.match(status):
            name = f"notices/{kind}_{status}.j2"
            if self._has_template(name):
                return name
        return "notices/fallback.j2"

    def notice_context(
        self, report: OutageReport, previous: OutageReport | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The variables a notice template sees (see the package docstring), as of ``now``
        (aware; None: as of when the mail was sent)."""
        return {
            "org": self.org,
            "r": report,
            "previous": previous,
            "nu": reference_moment(report, now),
            "verwacht": expected_end(report, now),
            "verlopen": passed_end(report, now),
            "plaatsen": wa(lijst(report.places)),
            "postcodes": postcode_list(report),
            "waar": where_phrase(report),
            "diensten": lijst(diensten(report.services)),
            "omschrijving": wa(collapse(report.description)),
            "ref": wa(report.ticket or ""),
            "verzonden": report.sent_at or report.start,
            "wijzigingen": changed_facts(report, previous),
            "modem_tip": bool(MODEM.search(report.description or "")),
            "onderbreking": duur(report.downtime_minutes) if report.downtime_minutes else "",
            "hersteld": actual_end(report),
        }

    def render_notice(
        self, report: OutageReport, *, previous: OutageReport | None = None,
        now: datetime | None = None,
    ) -> Rendered:
        """The WhatsApp notice for ``report``, written as of ``now`` (a timezone-aware
        datetime the shell passes in: when the notice is made; None: as of when the mail was
        sent). Never raises for template problems."""
        name = self.notice_template_name(report)
        try:
            text = self._render_file(name, self.notice_context(report, previous, now))
            if not text:
                raise RenderError("template produced no text")
        except Exception as exc:  # noqa: BLE001 - any template failure falls back
            reason = self._reason(exc)
            log.warning("notice template %s failed, using built-in text: %s", name, reason)
            text = self.fallback_text(report, previous=previous, now=now)
            return self._finish(text, name, fallback=True, error=reason)
        return self._finish(text, name, fallback=False, error=None)

    def render_reply(self, name: str, **ctx: Any) -> Rendered:
        """Reply ``replies/{name}.j2`` with ``org`` and ``ctx``; built-in default on failure."""
        template = f"replies/{name}.j2"
        try:
            if not _NAME_RE.match(name):
                raise RenderError(f"invalid reply name {name!r}")
            text = self._render_file(template, {**ctx, "org": self.org})
            if not text:
                raise RenderError("template produced no text")
        except Exception as exc:  # noqa: BLE001
            reason = self._reason(exc)
            log.warning("reply template %s failed, using built-in text: %s", template, reason)
            text = default_reply_text(name, self.org, **ctx)
            if text is None:
                reason += f"; no built-in reply {name!r}, sent help instead"
                text = default_reply_text("help", self.org, **ctx) or ""
            return self._finish(text, template, fallback=True, error=reason)
        return self._finish(text, template, fallback=False, error=None)

    def render_string(self, expr_or_template: str, context: Mapping[str, Any]) -> str:
        """Render a source string in the same sandbox, with the same limits.

        A string containing ``{{``, ``{%`` or ``{#`` is a template; anything else is a single
        Jinja expression (``r.places|lijst``; a literal needs quotes: ``'tekst'``). ``org`` is
        in the context unless given. The result is normalised, not cut to ``max_length``.
        Raises :class:`RenderError` on any failure.
        """
        ctx = {"org": self.org, **context}
        try:
            compiled = self._string_cache.get(expr_or_template)
            is_template = any(t in expr_or_template for t in ("{{", "{%", "{#"))
            if compiled is None:
                if is_template:
                    compiled = self.env.from_string(expr_or_template)
                else:
                    compiled = self.env.compile_expression(
                        expr_or_template, undefined_to_none=False
                    )
                if len(self._string_cache) > 256:
                    self._string_cache.clear()
                self._string_cache[expr_or_template] = compiled
            if is_template:
                text = self._run(compiled, ctx)
            else:
                with Deadline(self.env, self.time_limit):
                    value = compiled(**ctx)
                    text = "" if value is None else str(value)
                if len(text) > self.max_output:
                    raise RenderLimitError(
                        f"output exceeds {self.max_output} characters"
                    )
        except RenderError:
            raise
        except Exception as exc:
            raise RenderError(_short_reason(exc)) from exc
        return normalise(text)

    def fallback_text(self, report: OutageReport, previous: OutageReport | None = None,
                      now: datetime | None = None) -> str:
        """The built-in default notice text (Python, no template), as of ``now``, already
        cut to max_length."""
        text, _ = shorten(default_notice_text(report, self.org, previous, now),
                          self.max_length)
        return text

    def check(self, samples: list[OutageReport]) -> list[str]:
        """Compile and trial-render every template; return problems as ``path:line: message``.

        Each notice template is rendered against the samples of its kind and status
        (``fallback.j2`` against all; a template no sample matches against the samples with
        kind and status replaced, or a built-in example when there are no samples), with and
        without the previous sample of the same ticket; each reply with a sample context.
        Renders longer than ``max_length`` are reported as warnings. The templates are those
        the loader lists under ``notices/`` and ``replies/``; a folder with none is reported.
        """
        problems: list[str] = []
        listed = sorted(self.env.list_templates())
        for sub in ("notices", "replies"):
            names = [n for n in listed if n.startswith(f"{sub}/") and n.endswith(".j2")
                     and "/" not in n[len(sub) + 1:]]
            if not names:
                problems.append(f"{self.templates_dir / sub}:0: folder missing or empty")
                continue
            for name in names:
                # Named as the loader names the file (its path), else as under templates_dir.
                path = str(self.templates_dir / name)
                try:
                    tmpl = self.env.get_template(name)
                except TemplateSyntaxError as exc:
                    path = exc.filename or path
                    problems.append(f"{path}:{exc.lineno}: syntax error: {exc.message}")
                    continue
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{path}:1: cannot load: {_short_reason(exc)}")
                    continue
                path = tmpl.filename or path
                if sub == "notices":
                    cases = self._notice_cases(PurePosixPath(name).stem, samples)
                else:
                    cases = [("sample context", {**_SAMPLE_REPLY_CONTEXT, "org": self.org})]
                for label, ctx in cases:
                    guard_where: list[tuple[str, int] | None] = []
                    try:
                        text = normalise(self._run(tmpl, ctx, guard_where))
                    except Exception as exc:  # noqa: BLE001
                        line = self._template_line(exc, path)
                        if line is None and guard_where and guard_where[0]:
                            line = guard_where[0][1]
                        problems.append(f"{path}:{line or 1}: {label}: {_short_reason(exc)}")
                        continue
                    if len(text) > self.max_length:
                        problems.append(
                            f"{path}:1: warning: {label}: {len(text)} characters, more than "
                            f"max_length {self.max_length}; the text would be cut"
                        )
                    elif not text:
                        problems.append(f"{path}:1: warning: {label}: renders to an empty text")
        return problems

    # -- internals --------------------------------------------------------------------

    def _notice_cases(
        self, stem: str, samples: list[OutageReport]
    ) -> list[tuple[str, dict[str, Any]]]:
        reports = list(samples) or [_example_report()]
        if stem == "fallback":
            chosen = list(enumerate(reports))
            relabel = None
        else:
            kind, _, status = stem.partition("_")
            chosen = [(i, s) for i, s in enumerate(reports) if s.kind == kind and s.status == status]
            relabel = None
            if not chosen:
                relabel = f" as {kind}_{status}"
                chosen = [
                    (i, dataclasses.replace(s, kind=kind, status=status))  # type: ignore[arg-type]
                    for i, s in enumerate(reports)
                ]
        cases = []
        for i, report in chosen:
            label = f"sample {i + 1} ({report.ticket or collapse(report.subject)[:40]}){relabel or ''}"
            cases.append((label, self.notice_context(report, None)))
            prev = next(
                (
                    s
                    for s in reversed(reports[:i])
                    if s.ticket and s.ticket == report.ticket
                ),
                None,
            )
            if prev is not None:
                cases.append((label + " with previous", self.notice_context(report, prev)))
        return cases

    def _has_template(self, name: str) -> bool:
        """Whether the loader has template ``name``. Loading it here also warms Jinja's cache
        for the render that follows; one that is there but broken counts (its render falls
        back and says why)."""
        try:
            self.env.get_template(name)
        except TemplateNotFound:
            return False
        except Exception:  # noqa: BLE001 - present but broken
            return True
        return True

    def _render_file(self, name: str, ctx: dict[str, Any]) -> str:
        tmpl = self.env.get_template(name)
        return normalise(self._run(tmpl, ctx))

    def _run(
        self, tmpl: Any, ctx: Mapping[str, Any], where: list | None = None
    ) -> str:
        """Render ``tmpl`` with the time and output limits; raise on any failure."""
        parts: list[str] = []
        size = 0
        gen = tmpl.generate(ctx)
        guard = Deadline(self.env, self.time_limit)
        try:
            with guard:
                for chunk in gen:
                    size += len(chunk)
                    if size > self.max_output:
                        raise RenderLimitError(
                            f"output exceeds {self.max_output} characters"
                        )
                    parts.append(chunk)
        except RenderLimitError as exc:
            if where is not None:
                where.append(guard.template_line())
            loc = guard.template_line()
            if loc and not getattr(exc, "where", None):
                exc.where = loc  # type: ignore[attr-defined]
            raise
        finally:
            gen.close()
        return "".join(parts)

    def _template_line(self, exc: BaseException, filename: str | None = None) -> int | None:
        if isinstance(exc, TemplateSyntaxError) and exc.lineno:
            if filename is None or exc.filename == filename:
                return exc.lineno
        frames = traceback.extract_tb(exc.__traceback__)
        for fr in reversed(frames):
            if filename is None:
                if fr.filename.startswith(str(self.templates_dir)) or fr.filename == "<template>":
                    return fr.lineno
            elif fr.filename == filename:
                return fr.lineno
        where = getattr(exc, "where", None)
        if where and (filename is None or where[0] == filename):
            return where[1]
        return None

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, TemplateNotFound):
            return f"template not found: {exc.name}"
        line = self._template_line(exc)
        where = None
        if line is not None:
            fname = getattr(exc, "filename", None)
            if not fname:
                for fr in reversed(traceback.extract_tb(exc.__traceback__)):
                    if fr.lineno == line:
                        fname = fr.filename
                        break
            if not fname and getattr(exc, "where", None):
                fname = exc.where[0]  # type: ignore[attr-defined]
            if fname:
                try:
                    fname = str(Path(fname).relative_to(self.templates_dir))
                except ValueError:
                    pass
            where = (fname or "?", line)
        return _short_reason(exc, where)

    def _finish(self, text: str, template: str, *, fallback: bool, error: str | None) -> Rendered:
        text = normalise(text)
        text, truncated = shorten(text, self.max_length)
        return Rendered(text=text, template=template, fallback=fallback, error=error, truncated=truncated)


def _example_report() -> OutageReport:
    """A made-up report for :meth:`Renderer.check` when no samples are given."""
    start = datetime(2026, 11, 28, 8, 42, tzinfo=timezone.utc)
    return OutageReport(
        ticket="INC000000000001",
        kind="storing",
        status="nieuw",
        subject="Voorbeeld",
        services=("internet", "voip"),
        places=("Voorbeeldstad", "Dorp"),
        postcodes=("1234",),
        start=start,
        end=start + timedelta(hours=5),
        end_expected=True,
        downtime_minutes=120,
        description="Voorbeeldomschrijving. Mogelijk moet het modem opnieuw worden opgestart.",
        sent_at=start + timedelta(minutes=3),
    )
