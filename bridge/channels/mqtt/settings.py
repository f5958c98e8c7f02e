"""``[channel.mqtt]``: the linked-phone channel's settings (each default written once, on
the dataclass field) and their parsing. See docs/mqtt.md and docs/configuration.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridge.config import SECRET_FILE, Section

_WILDCARDS = set("#+")


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "whatsapp"
    send_topic: str = "{prefix}/send/text/{chat_id}"
    receive_topic: str = "{prefix}/message/#"
    client_id: str = "storingsbridge"
    protocol: str = "3.1.1"  # or "5"
    session_expiry: int = 7 * 86400  # MQTT 5 only: how long the broker keeps the session
    keepalive: int = 30
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's CA store
    tls_cert_file: Path | None = None  # client certificate (mutual TLS)
    tls_key_file: Path | None = field(default=None, metadata=SECRET_FILE)
    tls_insecure: bool = False  # do not check the broker's host name (testing only)
    max_rate: float = 1.0  # messages per second
    jitter: float = 1.0  # up to this many extra seconds between two sends, at random
    min_interval: float = 0.0  # seconds between two messages to the same recipient
    publish_timeout: float = 10.0  # seconds to wait for the broker's PUBACK
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    long_fanout_warning: float = 600.0  # warn when a fan-out will take longer (seconds)
    manual_ack: bool = True  # acknowledge inbound messages only after they are committed

    @property
    def receive_filter(self) -> str:
        return self.receive_topic.format(prefix=self.prefix)

    def topic_for(self, chat: str) -> str:
        return self.send_topic.format(prefix=self.prefix, chat_id=chat)

    @property
    def mean_interval(self) -> float:
        """Average seconds per message at this channel's own pace."""
        return 1.0 / self.max_rate + self.jitter / 2


def _check_topic(sec: Section, key: str, value: str, fields: dict[str, str],
                 wildcards: bool) -> None:
    try:
        topic = value.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        names = ", ".join("{" + f + "}" for f in fields)
        raise sec.fail(key, f"may use only {names}, got {value!r} ({type(e).__name__}: {e})") \
            from None
    if not topic or "\0" in topic:
        raise sec.fail(key, f"not a usable MQTT topic: {value!r}")
    if not wildcards and _WILDCARDS & set(topic):
        raise sec.fail(key, f"a topic to publish to cannot contain + or #, got {value!r}")
    if wildcards:
        levels = topic.split("/")
        for i, level in enumerate(levels):
            if ("#" in level and (level != "#" or i != len(levels) - 1)) or \
                    ("+" in level and level != "+"):
                raise sec.fail(key, f"not a valid MQTT topic filter: {value!r}")



def parse_config(sec: Section, base: Path) -> MqttSettings:
    """The ``[channel.mqtt]`` table; raises ConfigError naming the key."""
    d = MqttSettings
    s = MqttSettings(
        host=sec.str("host", d.host),
        port=sec.int("port", d.port, min=1, max=65535),
        prefix=sec.str("prefix", d.prefix),
        send_topic=sec.str("send_topic", d.send_topic),
        receive_topic=sec.str("receive_topic", d.receive_topic),
        client_id=sec.str("client_id", d.client_id),
        protocol=sec.str("protocol", d.protocol, choices=("3.1.1", "5")),
        session_expiry=sec.int("session_expiry", d.session_expiry, min=60, max=0xFFFFFFFF),
        keepalive=sec.int("keepalive", d.keepalive, min=5, max=3600),
        username=sec.opt_str("username"),
        password_env=sec.env("password_env"),
        tls=sec.bool("tls", d.tls),
        tls_ca_file=sec.path("tls_ca_file", None, base),
        tls_cert_file=sec.path("tls_cert_file", None, base),
        tls_key_file=sec.path("tls_key_file", None, base),
        tls_insecure=sec.bool("tls_insecure", d.tls_insecure),
        max_rate=sec.float("max_rate", d.max_rate, min=0.001, max=1000),
        jitter=sec.float("jitter", d.jitter, min=0, max=600),
        min_interval=sec.float("min_interval", d.min_interval, min=0, max=3600),
        publish_timeout=sec.float("publish_timeout", d.publish_timeout, min=0.1, max=600),
        connect_timeout=sec.float("connect_timeout", d.connect_timeout, min=0.1, max=600),
        reconnect_min=sec.float("reconnect_min", d.reconnect_min, min=0.01, max=3600),
        reconnect_max=sec.float("reconnect_max", d.reconnect_max, min=0.01, max=86400),
        long_fanout_warning=sec.float("long_fanout_warning", d.long_fanout_warning, min=0,
                                      max=7 * 86400),
        manual_ack=sec.bool("manual_ack", d.manual_ack),
    )
    if not s.host:
        raise sec.fail("host", "is required")
    if not s.client_id or len(s.client_id.encode()) > 65535:
        raise sec.fail("client_id", "must be a non-empty string (one per bridge: the broker "
                                    "keeps the inbound session under it)")
    if not s.prefix or _WILDCARDS & set(s.prefix):
        raise sec.fail("prefix", f"must be a topic prefix without + or #, got {s.prefix!r}")
    _check_topic(sec, "send_topic", s.send_topic,
                 {"prefix": s.prefix, "chat_id": "31612345678@c.us"}, wildcards=False)
    if "{chat_id}" not in s.send_topic:
        raise sec.fail("send_topic", f"must contain {{chat_id}}, got {s.send_topic!r}")
    _check_topic(sec, "receive_topic", s.receive_topic, {"prefix": s.prefix}, wildcards=True)
    if s.password_env and not s.username:
        raise sec.fail("password_env", "needs username as well")
    if (s.tls_ca_file or s.tls_cert_file or s.tls_key_file or s.tls_insecure) and not s.tls:
        raise sec.fail("tls", "tls_* keys are set but tls = false")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise sec.fail("tls_key_file", "set both tls_cert_file and tls_key_file, or neither")
    if s.reconnect_max < s.reconnect_min:
        raise sec.fail("reconnect_max", "must be at least reconnect_min")
    sec.done()
    return s
