"""One inbound message's path: channel -> core.inbound -> store -> outbox (the reply).

Channel-independent: the console (`bridge inbound`), the Cloud API webhook and the MQTT
phone all hand their messages to :meth:`InboundHandler.handle`, which commits the effect
and the reply durably before it returns (so a channel may acknowledge after it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from bridge.config import Config
from bridge.core.inbound import classify
from bridge.core.models import InboundMessage
from bridge.core.phone import mask
from bridge.core.render import Renderer
from bridge.store import Store

log = logging.getLogger("bridge.inbound")


@dataclass(frozen=True)
class InboundResult:
    kind: str  # subscribe, unsubscribe, help, other, duplicate
    effect: str  # subscribed, already_subscribed, unsubscribed, not_subscribed, help, support,
    #              duplicate, or one of the four rate-limited ones + "_suppressed"
    reply: str | None  # the reply text queued, None when no reply goes out
    delivery_id: int | None = None


class InboundHandler:
    def __init__(self, cfg: Config, store: Store, renderer: Renderer,
                 on_queued: Callable[[], None] | None = None):
        self.cfg = cfg
        self.store = store
        self.renderer = renderer
        self.on_queued = on_queued
        self.counts: dict[str, int] = {}

    @property
    def subscribe_sentence(self) -> str:
        return f"Ja ik wil storingsberichten van {self.cfg.organisation.name} ontvangen."

    async def __call__(self, msg: InboundMessage) -> InboundResult:
        return self.handle(msg)

    def handle(self, msg: InboundMessage) -> InboundResult:
        ic = self.cfg.inbound
        st = self.store
        who = mask(msg.sender)
        with st.tx(durable=True):
            if not st.subscribers.first_seen(msg.channel, msg.message_id, ic.dedupe_days * 86400):
                log.info("inbound from %s on %s: message seen before, ignored", who, msg.channel)
                return self._count(InboundResult("duplicate", "duplicate", None))
            kind = classify(msg.text, self.cfg.keywords)
            at = msg.received_at.timestamp()
            # By number or by business-scoped id: a person may write with either.
            sub = st.subscribers.get(msg.sender, msg.user_id)
            if sub:
                st.subscribers.touch(sub.number, at)
                st.subscribers.link(sub.id, msg.user_id)
            if kind == "subscribe":
                if sub:
                    effect = "already_subscribed"
                else:
                    sub, _ = st.subscribers.add(msg.sender, msg.channel, msg.message_id, at=at,
                                                user_id=msg.user_id)
                    effect = "subscribed"
            elif kind == "unsubscribe":
                removed = bool(sub) and st.subscribers.remove(sub.number)
                effect = "unsubscribed" if removed else "not_subscribed"
                sub = None
            elif kind == "help":
                effect = "help"
            else:
                effect = "support"
            # Replies that change nothing go to one sender at most once per window, so two
            # bots answering each other can never loop. Confirmations of a change always go.
            if effect in ("support", "help", "already_subscribed", "not_subscribed") and \
                    not st.subscribers.allow_reply(effect, msg.sender,
                                                   ic.support_reply_window_hours * 3600):
                effect += "_suppressed"

            text = None
            delivery_id = None
            if not effect.endswith("_suppressed"):
                rendered = self.renderer.render_reply(
                    effect, subscribe_sentence=self.subscribe_sentence)
                if rendered.fallback:
                    log.error("reply template %s failed (%s); used the built-in text",
                              rendered.template, rendered.error)
                text = rendered.text
                delivery_id = st.deliveries.add_reply(
                    to_addr=msg.sender, channel=msg.channel, text=text, name=effect,
                    subscriber_id=sub.id if sub else None)
        if effect == "unsubscribed":
            st.db.scrub()
        log.info("inbound from %s on %s: %s -> %s", who, msg.channel, kind, effect)
        if delivery_id and self.on_queued:
            self.on_queued()
        return self._count(InboundResult(kind, effect, text, delivery_id))

    def _count(self, r: InboundResult) -> InboundResult:
        self.counts[r.effect] = self.counts.get(r.effect, 0) + 1
        return r

    def unreachable(self, subscriber_id: int, in_a_row: int) -> None:
        """Called by the dispatcher when a channel reports a subscriber unreachable."""
        if in_a_row < self.cfg.inbound.unreachable_after:
            return
        sub = self.store.subscribers.by_id(subscriber_id)
        if sub and self.store.subscribers.remove(sub.number):
            self.store.db.scrub()
            log.warning("subscriber %s removed: unreachable %d times in a row", mask(sub.number),
                        in_a_row)
