"""Which approved WhatsApp template an out-of-window notice goes as, with which parameters.

``[channel.cloud.templates.<notice>]`` maps a notice template (``storing_nieuw`` =
``notices/storing_nieuw.j2``) to a WhatsApp template name, language and body parameters;
unmapped notices use the ``fallback`` entry (``fallback_template``). A reply that goes to
people who have not written (:data:`.settings.REPLY_TEMPLATES`: ``welcome`` =
``replies/welcome.j2``) goes as the template mapped under its name, never the
fallback. Each parameter is a Jinja expression rendered by the application in the
notices' sandbox (:meth:`bridge.port.ChannelPort.render_for_notice`: the notice context
plus ``tekst``, the notice text on one line; for a reply ``org`` and ``tekst`` only), then
made single-line and cut to 1,024 characters (:func:`single_line`). A template Meta rejects (132xxx) is not used for
``broken_template_hold`` seconds; notices fall back meanwhile.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

from bridge.channels.base import Outgoing
from bridge.channels.cloud.settings import (REPLY_TEMPLATES, CloudSettings, TemplateMap,
                                            reply_name, short_name)
from bridge.core.models import OutageReport
from bridge.port import ChannelPort, NoticeTemplates, SampleNotice

log = logging.getLogger(__name__)

PARAM_MAX = 1024  # characters per body parameter (Meta's limit)
_WHITESPACE = re.compile(r"\s+")


def single_line(value: str) -> str:
    """A template parameter as Meta accepts it: no newlines or tabs, no runs of more than
    four spaces (all whitespace runs become one space), not empty, at most 1,024 chars."""
    s = _WHITESPACE.sub(" ", value or "").strip()
    if not s:
        return "-"
    if len(s) > PARAM_MAX:
        s = s[: PARAM_MAX - 1].rstrip() + "…"
    return s


def render_params(port: NoticeTemplates, tm: TemplateMap, report: OutageReport | None,
                  text: str) -> list[str]:
    """The body parameters of ``tm`` for a notice; raises
    :class:`bridge.port.TemplateFailed` on a render error."""
    return [single_line(p) for p in port.render_for_notice(tm.parameters, report, text)]


class Templates:
    """Template choice for one channel: the mapping, templates Meta rejected, and the
    parameters of the notices under way (the same for all recipients of a notice)."""

    def __init__(self, settings: CloudSettings, port: ChannelPort):
        self._settings = settings
        self._port = port
        self._broken: dict[str, tuple[float, str]] = {}  # WhatsApp template -> (until, why)
        self._params_cache: dict[tuple[TemplateMap, int, str], list[str]] = {}
        self._by_wamid: dict[str, str] = {}  # recent template sends, for webhook 132xxx

    def for_reply(self, msg: Outgoing) -> TemplateMap | None:
        """The template a reply goes as (the welcome of an import, when mapped), else None:
        the reply goes as text."""
        name = reply_name(msg.template) if msg.kind == "reply" else None
        return self._settings.templates.get(name) if name in REPLY_TEMPLATES else None

    def choose(self, msg: Outgoing) -> tuple[TemplateMap, list[str]] | str:
        """The template and its parameters for an out-of-window notice or a mapped reply,
        or why there is none."""
        s = self._settings
        if msg.kind == "reply":
            tm = self.for_reply(msg)
            if tm is None:
                return f"no WhatsApp template for reply {msg.template or '(unnamed)'}"
            if self.is_broken(tm.name):
                return f"no usable WhatsApp template: {tm.name} is marked broken"
            try:
                return tm, render_params(self._port, tm, None, msg.text)
            except Exception as e:  # noqa: BLE001 - said in the delivery's error
                log.error("cloud: parameters of WhatsApp template %s failed for reply %s: %s",
                          tm.name, msg.template, e)
                return f"no usable WhatsApp template: {tm.name} parameters: {e}"
        candidates = []
        mapped = s.templates.get(short_name(msg.template))
        if mapped is not None:
            candidates.append(mapped)
        fb = s.templates.get(s.fallback_template)
        if fb is not None and fb is not mapped:
            candidates.append(fb)
        if not candidates:
            return (f"no WhatsApp template for {msg.template or 'this notice'} and no "
                    f"fallback template [channel.cloud.templates.{s.fallback_template}]")
        report: OutageReport | None = None
        parsed = False
        why = []
        for tm in candidates:
            if self.is_broken(tm.name):
                why.append(f"{tm.name} is marked broken")
                continue
            # A notice's parameters are the same for all its recipients (they depend only
            # on the notice's text and report): render them once per fan-out.
            key = (tm, msg.notice_id, msg.text) if msg.notice_id is not None else None
            params = self._params_cache.get(key) if key is not None else None
            if params is not None:
                return tm, params
            if not parsed:
                parsed = True
                report = OutageReport.from_json(msg.report) if msg.report else None
            try:
                params = render_params(self._port, tm, report, msg.text)
                if key is not None:
                    if len(self._params_cache) > 64:
                        self._params_cache.clear()
                    self._params_cache[key] = params
                return tm, params
            except Exception as e:  # noqa: BLE001 - a bad expression must not stop the notice
                log.error("cloud: parameters of WhatsApp template %s failed for notice %s: %s",
                          tm.name, msg.notice_id, e)
                why.append(f"{tm.name} parameters: {e}")
        return "no usable WhatsApp template: " + "; ".join(why)

    # -- templates Meta rejected ------------------------------------------------------------------
    def is_broken(self, name: str) -> bool:
        b = self._broken.get(name)
        if b is None:
            return False
        if b[0] <= time.time():
            del self._broken[name]
            log.warning("cloud: trying WhatsApp template %s again after %.0f s (it failed: %s)",
                        name, self._settings.broken_template_hold, b[1])
            return False
        return True

    def mark_broken(self, name: str, why: str) -> None:
        if self.is_broken(name):
            return
        s = self._settings
        self._broken[name] = (time.time() + s.broken_template_hold, why)
        log.error("cloud: ALERT: WhatsApp template %s rejected by Meta (%s); not using it for "
                  "%.0f s, notices fall back to template %r (check the template's approval, "
                  "name, language and parameter count in WhatsApp Manager)", name, why,
                  s.broken_template_hold, s.fallback_template)

    def broken_names(self) -> list[str]:
        t = time.time()
        return sorted(n for n, (until, _) in self._broken.items() if until > t)

    # -- which template a message went as (a later 132xxx webhook names only the message) --------
    def sent_as(self, wamid: str, name: str) -> None:
        if len(self._by_wamid) > 20000:
            self._by_wamid.clear()
        self._by_wamid[wamid] = name

    def template_of(self, wamid: str) -> str | None:
        return self._by_wamid.get(wamid)


# The welcome text's shape, to trial-render a reply template's parameters in `bridge check`.
WELCOME_SAMPLE = ("Welkom! Je ontvangt vanaf nu storingsberichten via WhatsApp. "
                  "Stuur STOP als je ze niet meer wilt ontvangen.")


def mapped_problems(settings: CloudSettings, known: frozenset[str],
                    samples: Sequence[SampleNotice], port: NoticeTemplates) -> list[str]:
    """``bridge check`` of the mapping: a missing fallback, mapped notices without a notice
    template (``known``: the notice templates present), and every mapped template's
    parameters trial-rendered against the samples of its (kind, status) (all samples for
    the fallback)."""
    problems: list[str] = []
    where = "channel.cloud.templates"
    if settings.fallback_template not in settings.templates:
        unmapped = sorted(k for k in known if k not in settings.templates)
        if unmapped:
            problems.append(f"{where}:0: no fallback template "
                            f"[{where}.{settings.fallback_template}]: notices {', '.join(unmapped)} "
                            "cannot reach subscribers outside their 24-hour window")
    for key, tm in sorted(settings.templates.items()):
        if key in REPLY_TEMPLATES:  # a reply's template: its parameters see tekst and org
            try:
                params = render_params(port, tm, None, WELCOME_SAMPLE)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{where}.{key}:0: reply replies/{key}.j2: parameter failed: "
                                f"{e} (a reply has no report: r is None; tekst is its text)")
                continue
            problems += [f"{where}.{key}:0: warning: parameter {j + 1} is empty (sent as '-')"
                         for j, p in enumerate(params) if p == "-"]
            continue
        if known and key not in known and key != settings.fallback_template:
            problems.append(f"{where}.{key}:0: warning: no notice template notices/{key}.j2")
        chosen = list(samples)
        if key != settings.fallback_template:
            kind, _, status = key.partition("_")
            chosen = [x for x in samples
                      if x.report.kind == kind and x.report.status == status] or list(samples)
        for i, sample in enumerate(chosen):
            report = sample.report
            stored = OutageReport.from_json(report.to_json())  # as a send reads it back
            try:
                params = render_params(port, tm, stored, sample.text)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{where}.{key}:0: sample {i + 1} ({report.kind} "
                                f"{report.status}): parameter failed: {e}")
                continue
            for j, p in enumerate(params):
                if p == "-":
                    problems.append(f"{where}.{key}:0: warning: sample {i + 1}: parameter "
                                    f"{j + 1} is empty (sent as '-')")
    return problems
