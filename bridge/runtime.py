"""Process-wide settings of the daemon: how Python's cyclic garbage collector runs.

CPython's collector starts a young-generation pass whenever 700 more container objects
were allocated than freed. An asyncio daemon that sends 1,000 messages a second keeps a
few thousand short-lived objects in flight (tasks, futures, requests, answers), so that
count crosses 700 and falls back hundreds of times a second: each pass walks every object
in flight, finds almost nothing to free, and moves them to older generations, whose
passes walk them again. At 1,000 messages a second that was 10-15 % of the daemon's CPU
(bench/fanout_cloud.py, measured with ``gc.callbacks``), and a full pass over everything
built at start-up (templates, parsers, libraries: ~50,000 objects) took 30-40 ms, a
pause a mail waiting for its SMTP answer could feel.

:func:`tune_gc` runs once, after start-up: it freezes what start-up built (``gc.freeze``:
those objects are never walked again; they live as long as the process anyway) and lets
the young generation grow to :data:`YOUNG_THRESHOLD` before a pass. Reference cycles are
still collected, only later (a cycle's memory waits until then; reference counting frees
everything else at once, as before).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # net new container objects before a young-generation pass


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze the survivors, and raise the young generation's threshold to
    ``young`` (never lowers it). Idempotent; call after start-up, before the work begins."""
    gc.collect()
    gc.freeze()
    t0, t1, t2 = gc.get_threshold()
    if t0 and t0 < young:  # 0: collection disabled by the embedding program; leave it so
        gc.set_threshold(young, t1, t2)
