"""Editing templates while the bridge runs: trial renders, checks, atomic saves, versions.

The shipped templates (``[render] templates_dir``) are never written. A template saved in
the operator console goes to the editable layer (``[render] edited_dir``, ``var/templates/``
by default, where the service may write under systemd's ``ProtectSystem=strict``), which
the renderer's loader lays over the shipped folder (:mod:`bridge.templates`); the next
render uses it, without a restart.

- :func:`trial` renders a draft in the same sandbox as the real texts (a renderer whose
  loader has the draft in front), against the last real reports and the samples, and
  checks it as ``bridge check`` does (``path:line: problem``);
- :func:`save` writes a draft only when the check finds no error, atomically (a temporary
  file in the same folder, fsync, rename, fsync of the folder), after keeping the text it
  replaces as a version in the store (:mod:`bridge.store.template_versions`);
- :func:`restore` saves an earlier version again; :func:`revert` goes back to the shipped
  text (the edited copy is removed, its text kept as a version).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from jinja2 import ChoiceLoader, DictLoader

from bridge.core.models import OutageReport
from bridge.core.render import Renderer
from bridge.templates import template_loader

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.store import Store

FOLDERS = ("notices", "replies", "mail")  # what the console may edit
MAX_SOURCE = 20_000  # characters: a notice template is a few hundred


class TemplateRejected(ValueError):
    """A draft that does not pass the check (``problems``: ``path:line: problem`` lines)."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Sample:
    """One trial render: what it was rendered for, and the text or why it failed."""

    label: str
    text: str
    failed: bool = False


@dataclass(frozen=True)
class Trial:
    samples: list[Sample]
    problems: list[str]  # errors and warnings as `bridge check` gives them

    @property
    def errors(self) -> list[str]:
        return [p for p in self.problems if ": warning:" not in p]


def editable(cfg: Config) -> list[str]:
    """Names of the templates the console may edit (``notices/storing_nieuw.j2``, ...): the
    shipped ones under notices/, replies/ and mail/."""
    root = cfg.render.templates_dir
    out = []
    for folder in FOLDERS:
        d = root / folder
        if d.is_dir():
            out += sorted(f"{folder}/{p.name}" for p in d.glob("*.j2") if p.is_file())
    return out


def _check_name(cfg: Config, name: str) -> str:
    if name not in editable(cfg):
        raise LookupError(f"no template {name!r} to edit")
    return name


def shipped_source(cfg: Config, name: str) -> str:
    _check_name(cfg, name)
    return (cfg.render.templates_dir / name).read_text(encoding="utf-8")


def edited_path(cfg: Config, name: str) -> Path | None:
    if cfg.render.edited_dir is None:
        return None
    return cfg.render.edited_dir.joinpath(*PurePosixPath(_check_name(cfg, name)).parts)


def current_source(cfg: Config, name: str) -> tuple[str, bool]:
    """(the text in use, whether it is an edited copy)."""
    p = edited_path(cfg, name)
    if p is not None and p.is_file():
        return p.read_text(encoding="utf-8"), True
    return shipped_source(cfg, name), False


def _renderer(cfg: Config, name: str, source: str) -> Renderer:
    """A renderer like the daemon's, with ``source`` in front for template ``name``."""
    loader = ChoiceLoader([DictLoader({name: source}),
                           template_loader(cfg.render.templates_dir, cfg.render.edited_dir)])
    return Renderer(cfg.render.templates_dir, cfg.organisation,
                    max_length=cfg.render.max_length, time_limit=cfg.render.time_limit,
                    loader=loader)


def trial(cfg: Config, name: str, source: str, real: list[tuple[str, OutageReport]],
          now: datetime) -> Trial:
    """Render the draft ``source`` of template ``name`` against ``real`` reports (label,
    report: the last real mails' reports) and the samples of ``bridge check``, and check it.
    Never raises for the draft's content."""
    from bridge.checks import sample_reports

    _check_name(cfg, name)
    if len(source) > MAX_SOURCE:
        return Trial([], [f"{name}:1: the template is longer than {MAX_SOURCE} characters"])
    r = _renderer(cfg, name, source)
    problems = _problems(cfg, r, name)
    samples: list[Sample] = []
    folder, stem = name.split("/", 1)[0], PurePosixPath(name).stem
    if folder == "notices":
        wanted = _fitting(stem, real + [(f"voorbeeld {s.kind} {s.status}", s)
                                        for s in sample_reports()])
        for label, report in wanted[:8]:
            rendered = r.render_notice(report, now=now)
            samples.append(Sample(label, rendered.text if not rendered.fallback else
                                  f"(mislukt: {rendered.error})", rendered.fallback))
    elif folder == "replies":
        rendered = r.render_reply(stem, subscribe_sentence="Ja ik wil storingsberichten van "
                                  f"{cfg.organisation.name} ontvangen.")
        samples.append(Sample("voorbeeld", rendered.text if not rendered.fallback else
                              f"(mislukt: {rendered.error})", rendered.fallback))
    else:
        from bridge.core.render import RenderError
        from bridge.mailout.texts import MailTexts, _sample_contexts

        texts = MailTexts(r)
        for i, ctx in enumerate(_sample_contexts().get(PurePosixPath(name).name, []), 1):
            try:
                samples.append(Sample(f"voorbeeld {i}",
                                      texts.render(PurePosixPath(name).name,
                                                   {"org": cfg.organisation, **ctx})))
            except (RenderError, OSError) as e:
                samples.append(Sample(f"voorbeeld {i}", f"(mislukt: {e})", True))
    return Trial(samples, problems)


def _fitting(stem: str, reports: list[tuple[str, OutageReport]]
             ) -> list[tuple[str, OutageReport]]:
    """The reports a notice template ``stem`` is used for (``fallback``: all); when none
    fit, the samples made to fit (kind and status replaced), as ``bridge check`` does."""
    if stem == "fallback":
        return reports
    kind, _, status = stem.partition("_")
    fit = [(lbl, rep) for lbl, rep in reports if rep.kind == kind and rep.status == status]
    if fit:
        return fit
    return [(f"{lbl} als {kind}_{status}", dataclasses.replace(rep, kind=kind, status=status))
            for lbl, rep in reports[-3:]]


def _problems(cfg: Config, r: Renderer, name: str) -> list[str]:
    """What ``bridge check`` says about template ``name`` with the draft in front."""
    from bridge.checks import sample_reports

    if name.startswith("mail/"):
        from bridge.mailout.texts import MailTexts

        found = MailTexts(r).check()
    else:
        found = r.check(sample_reports())
    tail = "/" + name
    # The draft has no file: Jinja names it "<template>" (or the renderer names it by the
    # shipped path); name it as the file it becomes.
    own = [p for p in found
           if p.split(":", 1)[0].endswith(tail) or p.split(":", 1)[0] == "<template>"]
    return [name + p[p.index(":"):] for p in own]


def save(cfg: Config, store: Store, name: str, source: str, by: str,
         real: list[tuple[str, OutageReport]], now: datetime, note: str = "edited") -> Path:
    """Check the draft and write it to the editable layer atomically; the text it replaces
    is kept as a version first. Raises :class:`TemplateRejected` (errors; nothing written),
    LookupError (not an editable template), OSError (cannot write)."""
    target = edited_path(cfg, name)
    if target is None:
        raise OSError("render.edited_dir is not set: templates cannot be saved")
    source = source.replace("\r\n", "\n")
    result = trial(cfg, name, source, real, now)
    if result.errors:
        raise TemplateRejected(result.errors)
    old, was_edited = current_source(cfg, name)
    if old == source:
        return target
    store.template_versions.keep(name, old, by, "edited" if was_edited else "shipped")
    _write_atomically(target, source)
    return target


def restore(cfg: Config, store: Store, name: str, version_id: int, by: str,
            real: list[tuple[str, OutageReport]], now: datetime) -> Path:
    """Save version ``version_id`` of ``name`` again (checked like any save)."""
    v = store.template_versions.get(version_id)
    if v is None or v.name != name:
        raise LookupError(f"no version {version_id} of {name}")
    return save(cfg, store, name, v.source, by, real, now)


def revert(cfg: Config, store: Store, name: str, by: str) -> bool:
    """Back to the shipped text: remove the edited copy (its text kept as a version).
    Returns False when there was none."""
    target = edited_path(cfg, name)
    if target is None or not target.is_file():
        return False
    store.template_versions.keep(name, target.read_text(encoding="utf-8"), by, "edited")
    target.unlink()
    _fsync_dir(target.parent)
    return True


def _write_atomically(target: Path, text: str) -> None:
    """Write ``text`` so that a reader (the renderer, another process) sees the old file or
    the new one, never half of it, and the new one survives a crash once this returns."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
