"""The WhatsApp Business Cloud API channel (Meta's Graph API), ``channel.type = "cloud"``.

One module per job:

- :mod:`.settings`   ``[channel.cloud]``: defaults and parsing;
- :mod:`.graph`      the Graph HTTP client (aiohttp), its answers (also without
                     JSON), error classes;
- :mod:`.templates`  which approved template a notice (or the import's welcome) goes as,
                     with which parameters;
- :mod:`.cap`        the unique-recipient cap per rolling 24 hours;
- :mod:`.webhook`    Meta's webhook: handshake, signature, payload parsing (messages and
                     their kinds, system messages, statuses, a value's own errors);
- :mod:`.channel`    the channel itself: text or template, error handling, pause and probe.

See docs/cloud-api.md.
"""

from bridge.channels.cloud.cap import cap_stale_conflict
from bridge.channels.cloud.channel import CloudChannel, check, create
from bridge.channels.cloud.graph import classify
from bridge.channels.cloud.settings import CloudSettings, TemplateMap, parse_config
from bridge.channels.cloud.templates import single_line
from bridge.channels.cloud.webhook import parse_webhook, signature_ok

__all__ = ["CloudChannel", "CloudSettings", "TemplateMap", "cap_stale_conflict", "check",
           "classify", "create", "parse_config", "parse_webhook", "signature_ok", "single_line"]
