import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_config  # noqa: E402


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
