"""Where the templates are read from: the Jinja loader the core's renderer is given.

Shell side of rendering. :class:`bridge.core.render.Renderer` reads template sources only
through the loader it is handed; this module decides where they come from. Today that is one
folder, ``[render] templates_dir`` (the shipped ``templates/`` by default). A later layer of
editable templates (e.g. ``var/templates/`` over the shipped ones) is a
:class:`jinja2.ChoiceLoader` built here, without touching the core.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import BaseLoader, FileSystemLoader

__all__ = ["template_loader"]


def template_loader(templates_dir: Path | str) -> BaseLoader:
    """A loader over ``templates_dir`` (names relative to it, such as
    ``notices/storing_nieuw.j2``). Files are read on first use and again when their
    modification time changes (the renderer's ``auto_reload``); a missing file is a
    :class:`jinja2.TemplateNotFound` at render time, not here."""
    return FileSystemLoader(str(templates_dir))
