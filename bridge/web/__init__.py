"""The web part (``[web]``): :mod:`bridge.web.server` serves ``/healthz``, ``/metrics`` and
the routes the channel contributes (the Cloud API webhook)."""

from bridge.web.server import WebServer, WebSettings, build, parse_config

__all__ = ["WebServer", "WebSettings", "build", "parse_config"]
