"""Small asyncio helpers the shell shares."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Awaitable


async def first_of(*aws: Awaitable[object], timeout: float | None = None) -> None:
    """Wait until the first of ``aws`` (e.g. ``stop.wait()``, ``wake.wait()``) finishes, or
    ``timeout`` seconds pass (None: no limit); the others are cancelled and awaited, so
    nothing is left running. Their results and errors are dropped."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
