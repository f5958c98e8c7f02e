"""Config validation: every error names its key, secrets are checked before the daemon runs,
defaults that follow other keys, the shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, parse
from bridge.store import Store
from daemon import bridge
from helpers import MAILS, now_of, run_cli, write_config


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


def load_text(tmp_path, text):
    from bridge.config import load

    p = tmp_path / "config.toml"
    p.write_text(text)
    return load(p)


def test_settings_table_of_an_unknown_channel_names_that_table(tmp_path):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, '[channel]\ntype = "console"\n[channel.consol]\nquiet = true\n')
    assert str(e.value).startswith("channel.consol:"), e.value


@pytest.mark.parametrize("table,key", [("store", "path"), ("render", "templates_dir")])
def test_an_empty_required_path_is_a_config_error_naming_the_key(tmp_path, table, key):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, f'[{table}]\n{key} = ""\n')
    assert str(e.value).startswith(f"{table}.{key}:"), e.value


@pytest.mark.parametrize("key", ["tls_cert", "tls_key"])
async def test_a_missing_tls_file_is_a_config_error_naming_the_key(tmp_path, key):
    """It was "bridge: cannot start: No such file or directory": no key, no file."""
    from bridge.config import ConfigError
    from bridge.intake.smtp import SmtpIntake
    from bridge.mailroom import Mailroom

    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    files = {"tls_cert": "cert.pem", "tls_key": "key.pem", key: "missing.pem"}
    cfg = load_text(tmp_path, f'[store]\npath = "{tmp_path / "b.db"}"\n[smtp]\nport = 0\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in files.items()))
    store = Store.open(cfg.store.path)
    smtp = SmtpIntake(cfg.smtp, cfg.senders, Mailroom(store))
    try:
        with pytest.raises(ConfigError) as e:
            await smtp.start()
    finally:
        await smtp.stop()
        store.close()
    assert str(e.value).startswith(f"smtp.{key}:") and "missing.pem" in str(e.value), e.value


# --- secrets: bridge check names every one that is not there ----------------------------------


def test_check_names_every_unset_secret_with_its_key_and_variable(tmp_path):
    cfg = write_config(tmp_path, smtp=True, channel="cloud", channel_extra="""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_env = "T_CHK_CLOUD_TOKEN"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """, extra="""\
        [web]
        verify_token_env = "T_CHK_VERIFY"
        app_secret_env = "T_CHK_APP_SECRET"

        [imap]
        host = "127.0.0.1"
        tls = "none"
        user = "storingen"
        password_env = "T_CHK_IMAP"
        """)
    cfg.write_text(cfg.read_text().replace("enabled = true", (
        'enabled = true\nauth_username_env = "T_CHK_SMTP_USER"\n'
        'auth_password_env = "T_CHK_SMTP_PASS"')))
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1, p.stdout
    for key, var in [("channel.cloud.token_env", "T_CHK_CLOUD_TOKEN"),
                     ("web.verify_token_env", "T_CHK_VERIFY"),
                     ("web.app_secret_env", "T_CHK_APP_SECRET"),
                     ("imap.password_env", "T_CHK_IMAP"),
                     ("smtp.auth_username_env", "T_CHK_SMTP_USER"),
                     ("smtp.auth_password_env", "T_CHK_SMTP_PASS")]:
        assert f": {key}: environment variable {var} is not set" in p.stdout, (key, p.stdout)
    assert f"{cfg}:" in p.stdout and "ok:" not in p.stdout
    assert "bridge: 6 problem(s) found" in p.stderr, p.stderr
    # all set: ok
    env = {v: "x" for v in ("T_CHK_CLOUD_TOKEN", "T_CHK_VERIFY", "T_CHK_APP_SECRET",
                            "T_CHK_IMAP", "T_CHK_SMTP_USER", "T_CHK_SMTP_PASS")}
    p = bridge(cfg, "check", env=env, check=False)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1].startswith("ok:"), p.stdout


def test_check_reports_the_mqtt_password_and_an_unreadable_token_file(tmp_path):
    cfg = write_config(tmp_path, channel="mqtt", channel_extra="""\
        [channel.mqtt]
        username = "bridge"
        password_env = "T_CHK_MQTT"
        """)
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1
    assert ": channel.mqtt.password_env: environment variable T_CHK_MQTT is not set" in p.stdout
    line = next(ln for ln in cfg.read_text().splitlines() if "password_env" in ln)
    assert f"{cfg}:{cfg.read_text().splitlines().index(line) + 1}: channel.mqtt" in p.stdout

    cfg = write_config(tmp_path, channel="cloud", channel_extra=f"""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_file = "{tmp_path / 'no-such-token'}"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """)
    p = bridge(cfg, "check", check=False)
    assert p.returncode == 1
    assert ": channel.cloud.token_file: cannot read " in p.stdout, p.stdout
    (tmp_path / "no-such-token").write_text("EAAG-token\n")
    assert bridge(cfg, "check").returncode == 0


def test_secrets_are_found_by_what_the_settings_declare(tmp_path):
    """bridge.checks.secret_refs reads each settings dataclass's declared fields: every set
    *_env field, and every field declared a secret file (a token file replaces token_env; an
    MQTT or SMTP TLS private key)."""
    from bridge.checks import declared_secrets, secret_refs
    from bridge.config import load

    key = tmp_path / "client.key"
    cfg = load(write_config(tmp_path, channel="mqtt", channel_extra=f"""\
        [channel.mqtt]
        username = "bridge"
        password_env = "T_SEC_MQTT"
        tls = true
        tls_cert_file = "{tmp_path / 'client.crt'}"
        tls_key_file = "{key}"
        """))
    refs = {r.key: r for r in secret_refs(cfg)}
    assert set(refs) == {"channel.mqtt.password_env", "channel.mqtt.tls_key_file"}, refs
    assert refs["channel.mqtt.tls_key_file"].file == key
    assert refs["channel.mqtt.password_env"].env == "T_SEC_MQTT"

    cloud = load(write_config(tmp_path, channel="cloud", channel_extra=f"""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        token_file = "{tmp_path / 'token'}"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """))
    assert [(r.key, r.env, r.file) for r in declared_secrets("channel.cloud",
                                                             cloud.channel.settings)] == [
        ("channel.cloud.token_file", None, tmp_path / "token")]
    plain = load(write_config(tmp_path, channel="cloud", channel_extra="""\
        [channel.cloud]
        phone_number_id = "106540352242922"
        [channel.cloud.templates.fallback]
        name = "storing_melding"
        parameters = ["tekst|kort(1000)"]
        """))
    assert [(r.key, r.env) for r in secret_refs(plain)] == [
        ("channel.cloud.token_env", "BRIDGE_CLOUD_TOKEN")]
    assert declared_secrets("x", "not a dataclass") == []


# --- defaults that follow another key ---------------------------------------------------------


def test_parser_timezone_defaults_to_the_organisation_timezone(tmp_path, capsys):
    from bridge.config import load

    cfg = write_config(tmp_path, extra='[organisation]\ntimezone = "America/New_York"\n')
    assert load(cfg).parser.timezone == "America/New_York"
    # "Starttijd: 28-11-2026 09:42" in the mail is 09:42 in New York, shown as 09:42
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "01-storing-nieuw.eml"),
                           "--now", now_of(MAILS / "01-storing-nieuw.eml"),
                           "--config", str(cfg))
    assert code == 0 and "sinds za 28 nov 09:42" in out, out

    cfg.write_text(cfg.read_text() + '\n[parser]\ntimezone = "Europe/Amsterdam"\n')
    assert load(cfg).parser.timezone == "Europe/Amsterdam"
    code, out, _ = run_cli(capsys, "preview", str(MAILS / "01-storing-nieuw.eml"),
                           "--now", now_of(MAILS / "01-storing-nieuw.eml"),
                           "--config", str(cfg))
    assert code == 0 and "sinds za 28 nov 03:42" in out, out


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


def test_config_defaults_are_the_dataclass_defaults(tmp_path):
    """Each default is written once, on the dataclass field: a config that leaves every
    key out gets exactly the dataclasses' defaults, typed tables included."""
    from bridge.channels.cloud import CloudSettings
    from bridge.config import (DispatchConfig, InboundConfig, RenderConfig, SmtpConfig,
                               StoreConfig, parse)
    from bridge.core.inbound import DEFAULT_KEYWORDS
    from bridge.core.models import Organisation
    from bridge.core.report import ReportRules
    from bridge.web import WebSettings

    cfg = parse({"channel": {"type": "cloud", "cloud": {"phone_number_id": "1"}}, "web": {}},
                tmp_path / "config.toml")
    assert cfg.organisation == Organisation()
    assert cfg.store.retention_days == StoreConfig.retention_days
    assert cfg.smtp == SmtpConfig()
    assert (cfg.render.max_length, cfg.render.time_limit) == (RenderConfig.max_length,
                                                              RenderConfig.time_limit)
    assert cfg.dispatch == DispatchConfig()
    assert cfg.inbound == InboundConfig()
    assert cfg.channel.settings == CloudSettings(phone_number_id="1")
    assert cfg.web == WebSettings() and cfg.imap is None
    assert cfg.parts() == {"web": cfg.web}
    assert isinstance(cfg.parser, ReportRules) and cfg.keywords == DEFAULT_KEYWORDS


# --- [health]: when sending counts as degraded ------------------------------------------------


def test_health_keys_and_defaults():
    from bridge.config import HealthConfig

    base = {"senders": {"kpn": ["kpn.com"]}}
    h = parse(base, Path("/tmp/config.toml")).health
    assert h == HealthConfig() and (h.window_s, h.degraded_share, h.degraded_after_s,
                                    h.min_results) == (60.0, 0.5, 120.0, 5)
    h = parse({**base, "health": {"window_s": 30, "degraded_share": 0.8}},
              Path("/tmp/config.toml")).health
    assert (h.window_s, h.degraded_share) == (30.0, 0.8)
    with pytest.raises(ConfigError, match="health.degraded_share"):
        parse({**base, "health": {"degraded_share": 2}}, Path("/tmp/config.toml"))
    with pytest.raises(ConfigError, match="health.window"):
        parse({**base, "health": {"window": 30}}, Path("/tmp/config.toml"))
