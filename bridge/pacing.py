"""How fast the dispatcher sends: the global rate (adaptive) and the pacing per recipient.

- :class:`RateLimiter`: a token bucket, ``rate`` messages/s in bursts of at most ``burst``.
- :class:`AdaptiveRate`: the global rate, adapted to what the channel answers (AIMD, as TCP
  congestion control, RFC 5681 3.1): a rate-limit answer (``SendResult.rate_limit ==
  "global"``: Cloud API 130429, 80007, 4, HTTP 429) multiplies the rate by
  ``dispatch.rate_decrease`` (at most once per second, never below what the channel
  accepted in the last two seconds nor below ``dispatch.min_rate``) and holds every send for
  the answer's ``Retry-After`` (RFC 9110 10.2.3); each second of sends without one adds
  ``dispatch.rate_increase`` x the configured rate, up to the configured rate.
- :class:`RecipientPacing`: when each recipient may get its next message: the channel's
  ``min_interval`` after the last send, one send at a time, and a hold after a per-recipient
  rate limit (``SendResult.rate_limit == "recipient"``: Cloud API 131056).

Pure bookkeeping over ``time.monotonic()``; the only awaiting is :meth:`AdaptiveRate.acquire`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time

log = logging.getLogger("bridge.outbox")

PACE_QUANTUM = 0.01  # seconds: the shortest wait of the rate limiter (sends in groups)
ADAPT_EVERY = 1.0  # seconds between two changes of the adaptive rate in the same direction
ACCEPT_WINDOW = 2.0  # seconds of accepted sends that bound a decrease from below
BUSY_WAIT = 0.5  # seconds to wait for a recipient's send under way before putting it off
TELL_EVERY = 60.0  # seconds: a decrease is an INFO line at most this often (else DEBUG)


def backoff(attempt: int, base: float, most: float) -> float:
    """Seconds before retrying after the ``attempt``-th (1-based) transient failure:
    ``base`` doubled per attempt, at most ``most``, times a random 0.5-1.5 (jitter, so
    retries of one fan-out spread out)."""
    return min(most, base * 2 ** min(max(attempt - 1, 0), 30)) * random.uniform(0.5, 1.5)


class RateLimiter:
    """Token bucket: ``rate`` per second, bursts of at most ``burst``.

    When it must wait, it waits at least PACE_QUANTUM: at high rates the sends go out in
    small groups (about ``rate * PACE_QUANTUM``, 10 at 1,000/s) that share the event loop's
    turns, instead of one timer and one loop turn per send. The average rate is the same;
    below 1 / PACE_QUANTUM (100/s) nothing changes.
    """

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate
        self._fixed_burst = burst
        self.burst = burst if burst is not None else self._burst_for(rate)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    @staticmethod
    def _burst_for(rate: float) -> float:
        return max(1.0, min(rate / 10, 50.0))

    def set_rate(self, rate: float) -> None:
        """Change the rate (messages/s); tokens saved up beyond the new burst are dropped."""
        self._refill()
        self.rate = rate
        if self._fixed_burst is None:
            self.burst = self._burst_for(rate)
        self.tokens = min(self.tokens, self.burst)

    def restart(self) -> None:
        """Spend what was saved up: the next token comes a full interval from now."""
        self.tokens = min(self.tokens, 0.0)
        self.stamp = time.monotonic()

    def _refill(self) -> float:
        t = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t
        return t

    def wait_time(self) -> float:
        """Seconds until a token is free (0: take one now with :meth:`take`)."""
        self._refill()
        if self.tokens >= 1:
            return 0.0
        return max((1 - self.tokens) / self.rate, PACE_QUANTUM)

    def take(self) -> None:
        self.tokens -= 1

    async def acquire(self) -> None:
        while True:
            wait = self.wait_time()
            if wait == 0:
                self.take()
                return
            await asyncio.sleep(wait)


class AdaptiveRate:
    """The dispatcher's global rate in messages/s: ``configured`` at most, lowered on
    rate-limit answers and raised again on success (see the module docstring).

    ``rate``: the rate allowed now; ``throttled``: rate-limit answers seen.
    """

    def __init__(self, configured: float, *, floor: float = 1.0, decrease: float = 0.5,
                 increase: float = 0.1):
        self.configured = configured
        self.floor = min(floor, configured)
        self.decrease = decrease
        self.increase = increase
        self.limiter = RateLimiter(configured)
        self.hold_until = 0.0  # monotonic: no send before this (Retry-After)
        self.throttled = 0
        self._accepted: collections.deque[float] = collections.deque()
        self._last_up = self._last_down = float("-inf")
        self._last_told = float("-inf")  # the last decrease logged at INFO
        self._clean_since = time.monotonic()  # no rate-limit answer since
        self.last_accepted = float("-inf")  # monotonic time of the last accepted send

    @property
    def rate(self) -> float:
        return self.limiter.rate

    def _set(self, rate: float) -> None:
        self.limiter.set_rate(max(self.floor, min(self.configured, rate)))

    def accepted(self) -> None:
        """The channel accepted a send: count it, and raise the rate after a clean second."""
        t = time.monotonic()
        self.last_accepted = t
        q = self._accepted
        q.append(t)
        while q and t - q[0] > ACCEPT_WINDOW:
            q.popleft()
        if (self.rate < self.configured and t - self._clean_since >= ADAPT_EVERY
                and t - self._last_up >= ADAPT_EVERY):
            self._last_up = t
            self._set(self.rate + max(1.0, self.configured * self.increase))
            if self.rate >= self.configured:
                log.info("dispatch: sending at the configured %.1f/s again", self.rate)

    def refusing_for(self, since: float) -> float:
        """Seconds the channel has accepted nothing while answering with rate limits,
        counted from the later of ``since`` (monotonic) and the last accepted send; 0 when
        no rate-limit answer came after that point."""
        start = max(since, self.last_accepted)
        return time.monotonic() - start if self._clean_since > start else 0.0

    def held(self) -> float:
        """Seconds left of a Retry-After hold (0 or less: none)."""
        return self.hold_until - time.monotonic()

    def accepted_rate(self) -> float:
        """Sends accepted per second over the last ACCEPT_WINDOW seconds."""
        t = time.monotonic()
        q = self._accepted
        while q and t - q[0] > ACCEPT_WINDOW:
            q.popleft()
        return len(q) / ACCEPT_WINDOW

    def limited(self, retry_after: float | None = None, why: str | None = None) -> None:
        """The channel answered with a global rate limit (``why``: its error, for the log):
        lower the rate (once per ADAPT_EVERY: the answers to sends already under way belong
        to the same signal) and hold every send for ``retry_after`` seconds when the answer
        named them."""
        t = time.monotonic()
        self.throttled += 1
        self._clean_since = t
        if retry_after:
            self.hold_until = max(self.hold_until, t + retry_after)
        if t - self._last_down >= ADAPT_EVERY:
            self._last_down = t
            self._last_up = t
            before = self.rate
            self._set(max(self.rate * self.decrease, self.accepted_rate()))
            if self.rate < before:
                # An API slower than the configured rate saws the rate down about once a
                # second: told at the first decrease, with a Retry-After, and once a minute
                # (the summary WARNING of bridge.sendhealth counts the answers).
                level = logging.DEBUG
                if before >= self.configured or retry_after or t - self._last_told >= TELL_EVERY:
                    level, self._last_told = logging.INFO, t
                log.log(level, "dispatch: the channel is over its rate limit (%s): sending at"
                        " %.1f/s instead of %.1f/s%s", why, self.rate, before,
                        f", all sends held for {retry_after:.0f} s" if retry_after else "")

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for the next send's turn. Returns False (without a token) when ``stop`` is
        set meanwhile; long waits (a Retry-After hold, a low rate) end at once on it."""
        while True:
            if stop is not None and stop.is_set():
                return False
            wait = self.hold_until - time.monotonic()
            if wait <= 0:
                wait = self.limiter.wait_time()
                if wait == 0:
                    self.limiter.take()
                    return True
            if stop is not None and wait > 0.1:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(wait)

    def restart(self) -> None:
        self.limiter.restart()


class RecipientPacing:
    """When each recipient (an address) may get its next message.

    One send at a time per recipient (``busy``), ``min_interval`` seconds between two sends
    (the channel's), and a hold until a time after a per-recipient rate limit. Memory stays
    bounded by the recipients sent to within one interval plus those held.
    """

    def __init__(self) -> None:
        # An OrderedDict: its front stays cheap to read while old entries are dropped
        # from it (a dict's iteration would first skip every slot deleted since its
        # last resize: thousands at 1,000 sends a second).
        self._last: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._held: dict[str, float] = {}  # recipient -> monotonic time it is free again
        self.busy: dict[str, asyncio.Task] = {}  # recipient -> its send under way

    def wait(self, to: str, min_interval: float) -> float:
        """Seconds until ``to`` may get a message by interval and hold (not counting a
        send under way: see ``busy``); 0 or less: now."""
        now = time.monotonic()
        wait = 0.0
        held = self._held.get(to)
        if held is not None:
            if held <= now:
                del self._held[to]
            else:
                wait = held - now
        last = self._last.get(to)
        if last is not None and min_interval:
            wait = max(wait, min_interval - (now - last))
        return wait

    async def ready_in(self, to: str, min_interval: float) -> float:
        """Seconds ``to`` must wait before its next send (0 or less: now). A send to ``to``
        under way is awaited first (one at a time per recipient, in order), for at most
        BUSY_WAIT seconds; still under way then: ``max(min_interval, 1)``."""
        busy = self.busy.get(to)
        if busy is not None:
            done, _ = await asyncio.wait({busy}, timeout=BUSY_WAIT)
            if not done:
                return max(min_interval, 1.0)
        return self.wait(to, min_interval)

    def hold(self, to: str, seconds: float) -> None:
        """A per-recipient rate limit: nothing to ``to`` for ``seconds``."""
        now = time.monotonic()
        self._held[to] = max(self._held.get(to, 0.0), now + seconds)
        if len(self._held) > 50_000:  # drop the holds that ended
            self._held = {k: v for k, v in self._held.items() if v > now}

    def sent(self, to: str, interval: float) -> None:
        """Remember when ``to`` was last sent to, for as long as the interval matters.

        The dict is kept in time order (re-inserted keys move to the end), so entries whose
        interval has passed are dropped from the front: memory stays bounded by the number
        of recipients sent to within one interval, not by the size of the fan-out.
        """
        now = time.monotonic()
        self._last.pop(to, None)
        self._last[to] = now
        for _ in range(64):  # the oldest first; at most 64 per call
            k = next(iter(self._last))
            if now - self._last[k] < interval:
                break
            del self._last[k]
