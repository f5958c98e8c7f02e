"""Where the templates are read from: the Jinja loader the core's renderer is given.

Shell side of rendering. :class:`bridge.core.render.Renderer` reads template sources only
through the loader it is handed; this module decides where they come from: the editable
layer ``[render] edited_dir`` (``var/templates/`` by default: templates saved in the
operator console, :mod:`bridge.template_edit`) laid over the shipped ones in
``[render] templates_dir`` (``templates/``), as a :class:`jinja2.ChoiceLoader`. A template
in the editable layer wins; every other one comes from the shipped folder.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader

__all__ = ["LayeredLoader", "template_loader"]


class LayeredLoader(ChoiceLoader):
    """The editable layer over the shipped templates.

    Jinja re-reads a template when the loader says it is out of date (``auto_reload``, one
    ``stat`` per render). A template read from the shipped folder is also out of date once
    an edited copy appears in the editable layer, so a template saved in the console takes
    effect at the next render, in the daemon too, without a restart."""

    def __init__(self, edited_dir: Path, templates_dir: Path):
        self.edited_dir = Path(edited_dir)
        self.templates_dir = Path(templates_dir)
        super().__init__([FileSystemLoader(str(self.edited_dir)),
                          FileSystemLoader(str(self.templates_dir))])

    def load(self, environment, name, globals=None):
        # ChoiceLoader.load asks each loader itself; go through get_source below instead,
        # so the "still shipped" check is part of every cached template.
        return BaseLoader.load(self, environment, name, globals)

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        edited = self.edited_dir.joinpath(*template.split("/"))
        if filename is not None and Path(filename) == edited:
            return source, filename, uptodate

        def still_shipped() -> bool:
            return bool(uptodate is None or uptodate()) and not edited.exists()

        return source, filename, still_shipped


def template_loader(templates_dir: Path | str, edited_dir: Path | str | None = None
                    ) -> BaseLoader:
    """A loader over ``templates_dir`` (names relative to it, such as
    ``notices/storing_nieuw.j2``), with ``edited_dir`` laid over it when given. Files are
    read on first use and again when they change (the renderer's ``auto_reload``); a
    missing file is a :class:`jinja2.TemplateNotFound` at render time, not here."""
    if edited_dir is None:
        return FileSystemLoader(str(templates_dir))
    return LayeredLoader(Path(edited_dir), Path(templates_dir))
