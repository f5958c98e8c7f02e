import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import TEMPLATES, write_config  # noqa: E402


@pytest.fixture
def cfg_path(tmp_path):
    return write_config(tmp_path)


@pytest.fixture
def cfg(cfg_path):
    from bridge.config import load

    return load(cfg_path)


@pytest.fixture
def app(cfg):
    from bridge.app import App

    a = App(cfg)
    yield a
    a.store.close()


@pytest.fixture
def store(tmp_path):
    """An empty store in tmp_path/b.db, closed after the test."""
    from bridge.store import Store

    s = Store.open(tmp_path / "b.db")
    yield s
    s.close()


@pytest.fixture
def renderer():
    """A renderer over the shipped templates, for the default organisation."""
    from bridge.core.models import Organisation
    from bridge.core.render import Renderer

    return Renderer(TEMPLATES, Organisation())
