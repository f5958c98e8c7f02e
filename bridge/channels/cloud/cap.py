"""The cap on unique template recipients per rolling 24 hours (``unique_cap``).

Meta limits how many different people a business number may start conversations with in
a rolling 24 hours (250 for a new account, raised with use). Recipients are remembered
only as keyed hashes (:meth:`bridge.port.ChannelPort.keyed_hash`) with the time of their
first template, in the channel's state (``cloud:unique-recipients``), so the window
survives a restart. Recipients beyond the cap wait (``paused``, without using an attempt)
until a tenth of the cap is free again: on a first fan-out beyond the cap that is 24 h
after its first sends. The dispatcher drops deliveries older than
``dispatch.max_age_hours`` as stale meanwhile; :func:`cap_stale_conflict` (``bridge
check``, start-up), the deferral WARNING and :meth:`UniqueRecipientCap.check_stale` say so
plainly.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

from bridge.channels.base import Outgoing, SendResult
from bridge.port import ChannelPort, StoreUnavailable

log = logging.getLogger(__name__)

CAP_WINDOW = 86400.0  # seconds: Meta's rolling 24 hours
CAP_STATE_KEY = "cloud:unique-recipients"
CAP_HASH_PURPOSE = "cloud-cap"
CAP_STALE_CHECK = 60.0  # seconds between looks at cap-deferred notices for stale drops
SAVE_EVERY = 10.0  # seconds: the window is saved at most this often while sending


def cap_stale_conflict(unique_cap: int, max_age_hours: float | None) -> str | None:
    """Why ``unique_cap`` and ``dispatch.max_age_hours`` do not go together, or None.

    Recipients beyond the cap wait until the cap's rolling 24-hour window frees slots: on a
    first fan-out beyond the cap that is 24 h after its first sends. The dispatcher drops
    deliveries older than ``dispatch.max_age_hours`` as stale, so with less than 24 h the
    deferred recipients of such a fan-out never get the notice.
    """
    if unique_cap <= 0 or max_age_hours is None or max_age_hours * 3600 >= CAP_WINDOW:
        return None
    return (f"channel.cloud.unique_cap = {unique_cap} with dispatch.max_age_hours = "
            f"{max_age_hours:g}: a fan-out to more than {unique_cap} template recipients "
            f"(subscribers outside their 24-hour window) defers the rest until the cap's "
            f"rolling 24-hour window frees slots, up to 24 h after the first sends, but "
            f"deliveries older than {max_age_hours:g} h are dropped as stale before that: the "
            f"deferred recipients of a first fan-out beyond the cap never get that notice. Set "
            f"dispatch.max_age_hours = 24 (or more) if a late notice is still wanted, or raise "
            f"unique_cap when Meta raises the number's messaging limit")


class _Sending:
    """The context of :meth:`UniqueRecipientCap.sending` (a plain class: it runs for every
    send, and a generator-based context manager costs several times as much)."""

    __slots__ = ("_granted", "_nid")

    def __init__(self, granted: dict[int | None, int], nid: int | None):
        self._granted = granted
        self._nid = nid

    def __enter__(self) -> None:
        self._granted[self._nid] = self._granted.get(self._nid, 0) + 1

    def __exit__(self, *exc: object) -> None:
        n = self._granted.pop(self._nid) - 1
        if n:
            self._granted[self._nid] = n


class UniqueRecipientCap:
    """The rolling window of template recipients of one channel (``cap`` 0: no cap)."""

    def __init__(self, cap: int, port: ChannelPort):
        self.cap = cap
        self._port = port
        self.max_age_hours = port.dispatch_max_age_hours
        self._window: dict[str, float] = {}  # keyed hash (hex) -> first template send time
        self._dirty = False
        self._saved = 0.0
        self._warned: set[int | None] = set()
        self.deferred: dict[int, int] = {}  # notices with deferred deliveries -> stale reported
        self._stale_checked = time.monotonic()
        self._granted: dict[int | None, int] = {}  # notice -> its sends under way, not deferred
        self._load()

    def count(self) -> int:
        """Recipients in the window now."""
        self._prune()
        return len(self._window)

    # -- per send -----------------------------------------------------------------------------
    def sending(self, msg: Outgoing) -> "_Sending":
        """Count a notice's sends under way that the cap let through: the deferral warning
        subtracts them from the notice's unfinished deliveries. Use as ``with
        cap.sending(msg): ...`` around the request."""
        return _Sending(self._granted, msg.notice_id)

    def reserve(self, msg: Outgoing) -> tuple[str | None, SendResult | None]:
        """Reserve a slot for ``msg.to``: (key to :meth:`release` if the send fails, or a
        deferral to return instead of sending)."""
        cap = self.cap
        if cap <= 0:
            return None, None
        h = self._port.keyed_hash(CAP_HASH_PURPOSE, CAP_WINDOW, msg.to)
        if h.current in self._window or (h.previous and h.previous in self._window):
            return None, None
        self._prune()
        if len(self._window) < cap:
            self._window[h.current] = time.time()
            self._dirty = True
            return h.current, None
        times = sorted(self._window.values())
        k = max(1, cap // 10)  # wake up when a tenth of the cap is free again
        when = times[min(k, len(times)) - 1] + CAP_WINDOW
        wait = max(1.0, when - time.time())
        at = datetime.fromtimestamp(when, timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
        if msg.notice_id not in self._warned:
            self._warned.add(msg.notice_id)
            self._warning(msg.notice_id, when, at)
        return None, SendResult("paused", retry_after=wait,
                                error=f"unique-recipient cap {cap}/24h reached; next slots {at}")

    def release(self, slot: str | None) -> None:
        if slot is not None and self._window.pop(slot, None) is not None:
            self._dirty = True

    def _prune(self) -> None:
        cutoff = time.time() - CAP_WINDOW
        if self._window and min(self._window.values()) < cutoff:
            self._window = {k: v for k, v in self._window.items() if v >= cutoff}
            self._dirty = True

    # -- telling the operator -------------------------------------------------------------------
    def _warning(self, notice_id: int | None, when: float, at: str) -> None:
        """The one WARNING per notice when the cap defers its recipients: how many, until
        when, and whether they will be dropped as stale before that."""
        progress = None
        if notice_id is not None:
            try:
                progress = self._port.notice_progress(notice_id)
            except StoreUnavailable as e:  # a warning must never stop a send
                log.debug("cloud: no fan-out size for notice %s: %s", notice_id, e)
        waiting = max(1, (progress.waiting if progress else 0) - self._granted.get(notice_id, 0))
        if notice_id is not None:
            self.deferred.setdefault(notice_id, progress.stale if progress else 0)
        who = (f"up to {waiting} recipients still waiting for it (those outside their 24-hour "
               f"window)" if progress else
               "the remaining recipients outside their 24-hour window")
        head = (f"cloud: unique-recipient cap reached: {len(self._window)} recipients got a "
                f"template in the last 24 h (unique_cap {self.cap}); notice {notice_id}: {who} "
                f"are deferred until about {at}, when a tenth of the cap is free again")
        age = self.max_age_hours
        stale_at = (progress.created_at if progress else time.time()) + age * 3600
        if stale_at < when:
            shown = datetime.fromtimestamp(stale_at, timezone.utc).astimezone()
            log.warning("%s. But deliveries are dropped as stale after dispatch.max_age_hours = "
                        "%g h, at about %s for this notice, before the cap allows them: these "
                        "recipients will not get this notice. %s", head, age,
                        shown.strftime("%Y-%m-%d %H:%M"),
                        "Set dispatch.max_age_hours = 24 (or more) if a late notice is still "
                        "wanted, or raise unique_cap when Meta raises the messaging limit")
        else:
            log.warning("%s; they continue then (unless a newer notice of the incident "
                        "supersedes them)", head)

    def upkeep(self) -> None:
        """From the channel's run loop: look for stale drops now and then, save the window."""
        if self.deferred and time.monotonic() - self._stale_checked >= CAP_STALE_CHECK:
            self._stale_checked = time.monotonic()
            self.check_stale()

    def check_stale(self) -> int:
        """Log the deliveries of cap-deferred notices that went stale since the last look
        (the dispatcher drops them; this says why). Returns how many."""
        total = 0
        for nid, seen in list(self.deferred.items()):
            try:
                progress = self._port.notice_progress(nid)
            except StoreUnavailable as e:
                log.debug("cloud: cannot look at notice %s: %s", nid, e)
                continue
            stale = progress.stale if progress else 0
            if stale > seen:
                total += stale - seen
                log.warning("cloud: notice %d: %d deliveries deferred by the unique-recipient cap "
                            "(unique_cap %d) were dropped as stale (older than "
                            "dispatch.max_age_hours = %g h) before the cap allowed them: these "
                            "recipients did not get this notice", nid, stale - seen, self.cap,
                            self.max_age_hours)
            if not progress or not progress.waiting:
                del self.deferred[nid]
            else:
                self.deferred[nid] = stale
        return total

    # -- durable state --------------------------------------------------------------------------
    def _load(self) -> None:
        if self.cap <= 0:
            return
        try:
            raw = self._port.state_get(CAP_STATE_KEY)
            data = json.loads(raw) if raw else {}
            cutoff = time.time() - CAP_WINDOW
            self._window = {k: float(v) for k, v in data.items() if float(v) >= cutoff}
        except (StoreUnavailable, ValueError, TypeError, AttributeError) as e:
            log.warning("cloud: could not read the unique-recipient state: %s", e)

    def save(self, force: bool = False) -> None:
        """Save the window when it changed (at most every SAVE_EVERY s unless ``force``)."""
        if not self._dirty:
            return
        t = time.monotonic()
        if not force and t - self._saved < SAVE_EVERY:
            return
        self._saved = t
        self._dirty = False
        try:
            self._port.state_set(CAP_STATE_KEY, json.dumps(self._window))
        except StoreUnavailable as e:
            log.warning("cloud: could not save the unique-recipient state: %s", e)
