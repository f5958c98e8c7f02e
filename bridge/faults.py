"""Fault points for crash tests: ``BRIDGE_FAULTS=name[,name]`` makes the process SIGKILL
itself when it reaches a named point. Unset in production; a no-op costing one dict lookup.
"""

from __future__ import annotations

import os
import signal

_POINTS = frozenset(p.strip() for p in os.environ.get("BRIDGE_FAULTS", "").split(",") if p.strip())


def point(name: str) -> None:
    if name in _POINTS:
        os.kill(os.getpid(), signal.SIGKILL)
