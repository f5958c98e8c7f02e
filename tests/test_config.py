"""Config validation: every error names its key, secrets are checked before the daemon runs,
defaults that follow other keys, the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, parse
from daemon import bridge
from helpers import write_config


# --- errors name the key ---------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("rate = 1000.0", 'rate = "fast"'))
    p = bridge(cfg, "status", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "bridge: dispatch.rate: must be a number, got 'fast'"
    cfg.write_text(cfg.read_text().replace('rate = "fast"', "rate = 5\nspeed = 3"))
    p = bridge(cfg, "status", check=False)
    assert p.stderr.strip() == "bridge: dispatch.speed: unknown key (a typo?)"
    p = bridge(tmp_path / "missing.toml", "status", check=False)
    assert p.returncode == 1 and "config file not found" in p.stderr


# --- the shipped config ----------------------------------------------------------------------


def test_shipped_config_loads():
    from bridge.config import load
    from helpers import ROOT

    cfg = load(ROOT / "config.toml")
    assert cfg.organisation.name == "CBG Connect"
    assert cfg.smtp.host == "127.0.0.1" and cfg.smtp.port == 8025
    assert cfg.channel.type == "console"
    assert str(cfg.store.path).endswith("var/bridge.db")


# --- senders: the Authentication-Results check keys -------------------------------------------


def _config(senders: dict):
    return parse({"senders": {"kpn": ["kpn.com"], **senders}}, Path("/tmp/config.toml")).senders


def test_config_keys():
    s = _config({})
    assert (s.require_dmarc_pass, s.authserv_id) == (False, ())
    s = _config({"require_dmarc_pass": True, "authserv_id": "MX.cbgconnect.nl"})
    assert (s.require_dmarc_pass, s.authserv_id) == (True, ("mx.cbgconnect.nl",))
    s = _config({"require_dmarc_pass": True, "authserv_id": ["mx1.cbgconnect.nl", "mx2.cbgconnect.nl"]})
    assert s.authserv_id == ("mx1.cbgconnect.nl", "mx2.cbgconnect.nl")
    with pytest.raises(ConfigError, match="senders.authserv_id"):
        _config({"require_dmarc_pass": True})
    with pytest.raises(ConfigError, match="senders.authserv_id"):
        _config({"authserv_id": 5})
    with pytest.raises(ConfigError, match="senders.require_dmarc_pass"):
        _config({"require_dmarc_pass": "yes"})
