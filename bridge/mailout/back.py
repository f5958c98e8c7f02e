"""Mail back, queueing side: turns events into composed mails in the durable queue.

:class:`MailBack` subscribes to the application's events (bridge.events) and, for each,
decides (with the pure rules of :mod:`.receipts`), renders (:mod:`.texts`), composes
(:mod:`.compose`) and queues (store.mailout) in one synchronous step, without network I/O:
the daemon's sender task (:mod:`.service`) sends. It runs in every process that has an
App, so a review approved with the CLI still gets its mail (the daemon sends it).

Receipts (to the forwarder, threaded to their mail):

- ``MailProcessed`` -> ``receipt_<outcome>.j2`` (queued, duplicate, review, rejected);
- ``ReviewDecided`` -> ``followup_approved.j2`` / ``followup_rejected.j2``;
- ``FanOutEnded`` with failures -> ``followup_failures.j2``;

a follow-up goes only where the first receipt went. Each is queued once (a dedupe key per
mail, review item or notice) and at most ``receipts_per_hour`` per recipient.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable

from bridge.core.phone import mask_text
from bridge.events import EventBus, FanOutEnded, MailProcessed, ReviewDecided
from bridge.mailout.compose import (Letter, compose, is_ours, make_message_id, reply_subject,
                                    thread_references)
from bridge.mailout.headers import read_headers
from bridge.mailout.reasons import in_dutch
from bridge.mailout.receipts import receipt_to
from bridge.mailout.settings import MailOutSettings
from bridge.mailout.texts import MailTexts
from bridge.store.mailout import QueuedMail

log = logging.getLogger("bridge.mailout")

OUTCOMES = ("queued", "duplicate", "review", "rejected")


def utc(t: float | None) -> datetime | None:
    return datetime.fromtimestamp(t, timezone.utc) if t else None


def review_link(console_url: str, review_id: int) -> str:
    """The console page of a review item: ``console_url`` with ``{review}`` replaced by the
    id (or, without the placeholder, the URL as it is); '' when no console is configured."""
    if not console_url:
        return ""
    return console_url.replace("{review}", str(review_id))


class MailBack:
    """Queues receipts for events; the daemon's :class:`~.service.MailOutPart` also queues
    its alerts through :meth:`queue_alert`. ``on_queued`` is called after each queued mail
    (the sender task wakes)."""

    def __init__(self, settings: MailOutSettings, cfg: Any, store: Any, renderer: Any,
                 events: EventBus | None = None):
        self.settings = settings
        self.cfg = cfg
        # Links to review items: [mail_out] console_url, else the operator console's own
        # address (web.public_url) when it is on.
        web = cfg.web
        self.console_url = settings.console_url or (
            web.console_url + "review/{review}" if web is not None and web.console else "")
        self.store = store
        self.texts = MailTexts(renderer)
        self.org = renderer.org
        self.domain = settings.from_addr.rpartition("@")[2]
        self.on_queued: Callable[[], None] | None = None
        self.skipped: dict[str, int] = {}  # why receipts were not queued -> count
        self._key: bytes | None = None
        if events is not None:
            events.subscribe(MailProcessed, self.mail_processed)
            events.subscribe(ReviewDecided, self.review_decided)
            events.subscribe(FanOutEnded, self.fan_out_ended)

    # -- identity ----------------------------------------------------------------------------
    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = self.store.mailout.message_id_key()
        return self._key

    def is_ours(self, message_id: str | None) -> bool:
        return is_ours(message_id, self.key)

    def new_message_id(self) -> str:
        token = f"{int(time.time()):x}{secrets.token_hex(6)}"
        return make_message_id(self.key, token, self.domain)

    @property
    def envelope_sender(self) -> str:
        return "" if self.settings.null_sender else self.settings.from_addr

    def _skip(self, why: str, what: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        log.info("mail-out: %s: no receipt: %s", what, why)

    # -- receipts ----------------------------------------------------------------------------
    def mail_processed(self, e: MailProcessed) -> None:
        """The first receipt for a processed mail, when someone should get one."""
        s = self.settings
        if not (s.receipts or s.receipts_copy_to) or e.outcome not in OUTCOMES:
            return
        head = self.store.mailout.mail_head(e.mail_id)
        if head is None:
            return
        h = read_headers(head["head"])
        to = receipt_to(h, source=head["source"], envelope_from=head["envelope_from"],
                        senders=self.cfg.senders, is_ours=self.is_ours, our_from=s.from_addr,
                        copy_to=s.receipts_copy_to, forwarders_too=s.receipts)
        if not to.anyone:
            self._skip(to.why_not or "nobody to tell", f"mail {e.mail_id}")
            return
        if to.why_not:
            log.info("mail-out: mail %d: only the copy address gets a receipt: %s",
                     e.mail_id, to.why_not)
        ctx = self._context(e.mail_id, h.subject, head["received_at"], e.reason, e.ticket)
        if e.outcome == "queued" and e.notice_id:
            ctx["melding"] = self._notice(e.notice_id)
        elif e.outcome == "duplicate":
            dup = self.store.mailout.duplicate_of(e.mail_id)
            ctx["melding"] = self._notice_dict(dup) if dup else None
        elif e.outcome == "review":
            rv = self.store.mailout.review_of_mail(e.mail_id)
            if rv is None:
                log.error("mail-out: mail %d is in review but has no review item", e.mail_id)
                return
            ctx["controle"] = {"id": rv["id"], "reden": rv["reason"],
                               "sinds": utc(rv["created_at"])}
            ctx["link"] = review_link(self.console_url, rv["id"])
        if e.outcome == "queued" and ctx["melding"] is None:
            return
        thread = {"to": list(to.to), "bcc": list(to.bcc), "subject": reply_subject(h.subject),
                  "original_subject": h.subject, "in_reply_to": h.message_id,
                  "references": list(thread_references(h.references or h.in_reply_to,
                                                       h.message_id))}
        self._queue_receipt("receipt", f"receipt:{e.mail_id}", e.mail_id, thread,
                            f"receipt_{e.outcome}.j2", ctx)

    def review_decided(self, e: ReviewDecided) -> None:
        """The second mail: the review item of the forwarder's mail was decided."""
        thread = self._thread(e.mail_id, f"review {e.review_id}")
        if thread is None:
            return
        rv = self.store.mails.review(e.review_id) or {}
        ctx = self._context(e.mail_id, thread.get("original_subject", ""), None,
                            e.reason or "", None)
        ctx["controle"] = {"id": e.review_id, "reden": rv.get("reason", ""),
                           "sinds": utc(rv.get("created_at"))}
        ctx["door"] = e.by or ""  # who decided (the console's user), when known
        if e.decision == "approved" and e.notice_id:
            ctx["melding"] = self._notice(e.notice_id)
            name = "followup_approved.j2"
        else:
            name = "followup_rejected.j2"
        self._queue_receipt("followup", f"review:{e.review_id}", e.mail_id, thread, name, ctx)

    def fan_out_ended(self, e: FanOutEnded) -> None:
        """The second mail: the notice of the forwarder's mail ended with failures."""
        if not e.failed:
            return
        notice = self.store.mailout.notice(e.notice_id)
        if notice is None or notice["raw_mail_id"] is None:
            return
        mail_id = notice["raw_mail_id"]
        thread = self._thread(mail_id, f"notice {e.notice_id}")
        if thread is None:
            return
        ctx = self._context(mail_id, thread.get("original_subject", ""), None, "", None)
        ctx["melding"] = self._notice_dict(notice)
        ctx["mislukt"] = e.failed
        ctx["redenen"] = [{"reden": mask_text(r), "aantal": n} for r, n in e.failures]
        self._queue_receipt("followup", f"failures:{e.notice_id}", mail_id, thread,
                            "followup_failures.j2", ctx)

    # -- building blocks ---------------------------------------------------------------------
    def _context(self, mail_id: int, subject: str, received_at: float | None, reason: str,
                 ticket: str | None) -> dict[str, Any]:
        return {"org": self.org, "onderwerp": subject, "ontvangen": utc(received_at),
                "reden": reason, "uitleg": in_dutch(reason) or "", "ticket": ticket,
                "melding": None, "controle": None, "link": ""}

    def _notice(self, notice_id: int) -> dict | None:
        n = self.store.mailout.notice(notice_id)
        return self._notice_dict(n) if n else None

    @staticmethod
    def _notice_dict(n: dict) -> dict:
        return {"id": n["id"], "tekst": n["text"], "abonnees": n["recipients"],
                "verstuurd_op": utc(n["created_at"])}

    def _thread(self, mail_id: int, what: str) -> dict | None:
        thread = self.store.mailout.thread_of(mail_id)
        if thread is None:
            log.debug("mail-out: %s: mail %d got no receipt, so no follow-up", what, mail_id)
            return None
        refs = thread_references(tuple(thread.get("references") or ()), None,
                                 thread["message_id"])
        return {**thread, "references": list(refs)}

    def _queue_receipt(self, kind: str, dedupe_key: str, mail_id: int, thread: dict,
                       template: str, ctx: dict) -> int | None:
        s = self.settings
        if self.store.mailout.queued_before(dedupe_key):
            return None
        limit_key = thread["to"][0]
        if self.store.mailout.count_since(limit_key, time.time() - 3600) >= s.receipts_per_hour:
            self._skip(f"more than {s.receipts_per_hour} receipts an hour to {limit_key}",
                       f"mail {mail_id}")
            return None
        subject, body = self.texts.letter(template, ctx, subject=thread["subject"])
        message_id = self.new_message_id()
        letter = Letter(from_addr=s.from_addr, from_name=s.from_name or self.org.name,
                        to=tuple(thread["to"]), subject=subject, body=body,
                        message_id=message_id, date=datetime.now(timezone.utc),
                        auto_submitted="auto-replied", in_reply_to=thread.get("in_reply_to"),
                        references=tuple(thread.get("references") or ()))
        queued = self.store.mailout.enqueue(QueuedMail(
            kind=kind, sender=self.envelope_sender,
            recipients=tuple(thread["to"]) + tuple(thread.get("bcc") or ()),
            message_id=message_id, data=compose(letter), dedupe_key=dedupe_key,
            limit_key=limit_key, raw_mail_id=mail_id,
            thread={k: thread[k] for k in ("to", "bcc", "subject", "original_subject",
                                           "in_reply_to", "references")}
            if kind == "receipt" else None))
        if queued is not None:
            log.info("mail-out: %s %s to %s queued (%s)", kind, dedupe_key,
                     ", ".join(thread["to"]), template)
            if self.on_queued:
                self.on_queued()
        return queued

    # -- alerts (the daemon's part decides when) ------------------------------------------------
    def queue_alert(self, template: str, ctx: dict, dedupe_key: str | None = None,
                    keep: Callable[[QueuedMail], None] | None = None) -> int | None:
        """Queue an alert to every operator (none configured: logged only). When the store
        cannot take it and ``keep`` is given, the composed mail goes to ``keep`` instead
        (the daemon's stop alert: the store failing is a usual reason to stop)."""
        s = self.settings
        subject, body = self.texts.letter(template, {"org": self.org, **ctx})
        if not s.operators:
            log.warning("mail-out: alert not mailed (no [mail_out] operators): %s", subject)
            return None
        message_id = self.new_message_id()
        letter = Letter(from_addr=s.from_addr, from_name=s.from_name or self.org.name,
                        to=s.operators, subject=subject, body=body, message_id=message_id,
                        date=datetime.now(timezone.utc), auto_submitted="auto-generated")
        mail = QueuedMail(kind="alert", sender=self.envelope_sender, recipients=s.operators,
                          message_id=message_id, data=compose(letter), dedupe_key=dedupe_key)
        try:
            queued = self.store.mailout.enqueue(mail)
        except Exception as e:
            if keep is None:
                raise
            log.error("mail-out: the store cannot take the alert (%s); kept in memory: %s",
                      e, subject)
            keep(mail)
            if self.on_queued:
                self.on_queued()
            return None
        if queued is not None:
            log.warning("mail-out: alert queued to %s: %s", ", ".join(s.operators), subject)
            if self.on_queued:
                self.on_queued()
        return queued
