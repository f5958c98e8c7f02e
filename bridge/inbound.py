"""One inbound message's path: channel -> core.inbound -> store -> outbox (the reply).

Channel-independent: the console (`bridge inbound`), the Cloud API webhook and the MQTT
phone all hand what they receive to the :class:`InboundHandler` (call it, or await it):

- an :class:`~bridge.core.models.InboundMessage` (:meth:`InboundHandler.handle`): the
  effect (subscribe, unsubscribe and erase, a question, a reply) and the reply are
  committed durably before it returns, so a channel may acknowledge after it;
- an :class:`~bridge.core.models.IdentityChange` (:meth:`InboundHandler.identity_change`):
  WhatsApp says a person's number or business-scoped id changed; the subscription follows
  the person and the old id is erased;
- an :class:`~bridge.core.models.IdPairing` (:meth:`InboundHandler.pair`): ids of one
  person seen together (e.g. in a status webhook) are linked to their subscriber.

A person is found by any of their ids (number, BSUID, @lid), and every id a message
carries is linked to the subscriber. A wish to stop from an id that matches no
subscriber is never dropped: the person gets the "not_subscribed" reply (send STOP from
the number you signed up with, or mail support), the log a WARNING with the id masked,
and the operator a count in `bridge status` and /metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from bridge.config import Config
from bridge.core.inbound import interpret
from bridge.core.models import IdentityChange, IdPairing, InboundMessage, Intent
from bridge.core.phone import mask
from bridge.core.render import Renderer
from bridge.core.replies import QUESTION_OF, builtin_reply, with_stop_hint
from bridge.store import Store

log = logging.getLogger("bridge.inbound")

QUESTION_TTL = 24 * 3600.0  # a bare "ja" answers a question asked this long ago at most
# Replies that change nothing go to one sender at most once per window (two bots answering
# each other can never loop). Confirmations of a change always go.
_LIMITED = ("support", "help", "already_subscribed", "not_subscribed", "confirm_stop")
# Message kinds without text: they get the help reply (which says how to stop).
_NO_TEXT = ("voice", "contact", "location", "other")


@dataclass(frozen=True)
class InboundResult:
    kind: str  # subscribe, unsubscribe, confirm_stop, yes, help, other, duplicate,
    #            identity_change, pairing
    effect: str  # subscribed, already_subscribed, unsubscribed, not_subscribed,
    #              confirm_stop, help, support, duplicate, identity_moved,
    #              identity_unknown, linked, not_linked, or one of the rate-limited ones
    #              + "_suppressed"
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

    async def __call__(self, event: InboundMessage | IdentityChange | IdPairing) -> InboundResult:
        return self.take(event)

    def take(self, event: InboundMessage | IdentityChange | IdPairing) -> InboundResult:
        """Any inbound event, committed durably before it returns (the channels' way in,
        through :meth:`bridge.switchboard.Switchboard.inbound`)."""
        if isinstance(event, IdentityChange):
            return self.identity_change(event)
        if isinstance(event, IdPairing):
            return self.pair(event)
        return self.handle(event)

    # -- a message ----------------------------------------------------------------------------
    def intent(self, msg: InboundMessage) -> Intent:
        """What the message asks for: its text (a media message's caption) read by
        :func:`bridge.core.inbound.interpret`; a message without text (a voice note, a
        contact card, a location, media without caption) asks for help."""
        if msg.kind in _NO_TEXT or (msg.kind == "media" and not msg.text.strip()):
            return Intent("help", msg.kind)
        return interpret(msg.text, self.cfg.keywords)

    def handle(self, msg: InboundMessage) -> InboundResult:
        ic = self.cfg.inbound
        st = self.store
        subs = st.subscribers
        who = mask(msg.sender)
        ids = msg.ids
        unmatched = 0
        with st.tx(durable=True):
            if not subs.first_seen(msg.channel, msg.message_id, ic.dedupe_days * 86400):
                log.info("inbound from %s on %s: message seen before, ignored", who, msg.channel)
                return self._count(InboundResult("duplicate", "duplicate", None))
            intent = self.intent(msg)
            kind = intent.kind
            at = msg.received_at.timestamp()
            # By any id of the person: a number, a business-scoped id, an @lid id.
            sub = subs.find(ids)
            if sub:
                subs.link(sub.id, ids)  # may merge two subscribers of one person
                sub = subs.find(ids)
                subs.touch(sub.number, at)  # type: ignore[union-attr]
            answered = None
            if kind == "yes":
                answered = subs.hashes.asked(ids, QUESTION_TTL)
                if answered:
                    subs.hashes.answered(ids, QUESTION_TTL)
                kind = {"confirm_stop": "unsubscribe", "subscribe": "subscribe"}.get(
                    answered or "", "help")
            if kind == "subscribe":
                if sub:
                    effect = "already_subscribed"
                else:
                    wording = (f"answer {intent.wording!r} to the question of the help reply"
                               if answered else f"{'keyword' if intent.keyword else 'wording'}"
                               f" {intent.wording!r}")
                    sub, _ = subs.add(msg.sender, msg.channel, msg.message_id, at=at, ids=ids,
                                      wording=wording)
                    effect = "subscribed"
            elif kind == "unsubscribe":
                if sub:
                    subs.erase(sub, also=ids)
                    effect = "unsubscribed"
                else:
                    effect = "not_subscribed"
                    unmatched = subs.count_unmatched_optout()
                sub = None
            elif kind in ("confirm_stop", "help"):
                effect = kind
            else:
                effect = "support"
            if effect in _LIMITED and not subs.allow_reply(
                    effect, msg.sender, ic.support_reply_window_hours * 3600):
                effect += "_suppressed"

            text = None
            delivery_id = None
            if not effect.endswith("_suppressed"):
                text = self._reply_text(effect)
                delivery_id = st.deliveries.add_reply(
                    to_addr=msg.sender, channel=msg.channel, text=text, name=effect,
                    subscriber_id=sub.id if sub else None)
                if effect in QUESTION_OF:
                    subs.hashes.ask(ids, QUESTION_OF[effect], QUESTION_TTL)
        if effect == "unsubscribed":
            st.db.scrub()
        if unmatched:
            log.warning("inbound from %s on %s: a wish to stop from an id that matches no "
                        "subscriber (%d so far); %s. If the person is subscribed under "
                        "another number, remove it by hand: bridge subscribers remove NUMBER",
                        who, msg.channel, unmatched,
                        "the reply says so" if text else "the reply was sent recently")
        log.info("inbound from %s on %s (%s): %s -> %s", who, msg.channel, msg.kind,
                 intent.kind + (f" (answers {answered})" if answered else ""), effect)
        if delivery_id and self.on_queued:
            self.on_queued()
        return self._count(InboundResult(intent.kind, effect, text, delivery_id))

    def _reply_text(self, name: str) -> str:
        rendered = self.renderer.render_reply(name, subscribe_sentence=self.subscribe_sentence)
        text = rendered.text
        if rendered.fallback:
            own = builtin_reply(name, self.cfg.organisation,
                                subscribe_sentence=self.subscribe_sentence)
            text = own or text
            log.error("reply template %s failed (%s); used the built-in text",
                      rendered.template, rendered.error)
        # Every reply but the confirmation of leaving says how to stop.
        return text if name == "unsubscribed" else with_stop_hint(text)

    # -- identities ---------------------------------------------------------------------------
    def identity_change(self, ev: IdentityChange) -> InboundResult:
        """WhatsApp says a person's id changed (Cloud API ``system`` message
        ``user_changed_number`` / ``user_changed_user_id``): the subscription moves to
        ``ev.new`` and every id in ``ev.old`` not in ``ev.new`` is erased from the store
        (WAL truncated). Nothing is stored for a person who is not subscribed. Idempotent
        by ``ev.event_id``."""
        st = self.store
        subs = st.subscribers
        with st.tx(durable=True):
            if not subs.first_seen(ev.channel, ev.event_id, self.cfg.inbound.dedupe_days * 86400):
                return self._count(InboundResult("identity_change", "duplicate", None))
            sub = subs.find(ev.old) or subs.find(ev.new)
            if sub is not None:
                subs.move(sub.id, ev.old, ev.new)
        old = ", ".join(mask(i) for i in ev.old) or "-"
        new = ", ".join(mask(i) for i in ev.new) or "-"
        if sub is None:
            log.info("identity change on %s (%s): %s -> %s matches no subscriber; nothing "
                     "stored", ev.channel, ev.kind, old, new)
            return self._count(InboundResult("identity_change", "identity_unknown", None))
        st.db.scrub()
        log.info("identity change on %s (%s): subscriber %s -> %s; the old id is erased",
                 ev.channel, ev.kind, old, new)
        return self._count(InboundResult("identity_change", "identity_moved", None))

    def pair(self, p: IdPairing) -> InboundResult:
        """Link ids of one person seen together (e.g. a status webhook's ``recipient_id``
        and ``recipient_user_id``) to the subscriber holding any of them."""
        subs = self.store.subscribers
        with self.store.tx(durable=True):
            sub = subs.find(p.ids)
            added = subs.link(sub.id, p.ids) if sub else []
        if added:
            log.info("ids linked on %s: %s", p.channel, ", ".join(mask(i) for i in p.ids))
        return self._count(InboundResult("pairing", "linked" if sub else "not_linked", None))

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
