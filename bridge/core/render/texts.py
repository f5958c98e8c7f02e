"""The built-in texts: a notice and the replies written in Python, used when a template is
missing, broken, too slow or too big (and usable directly), and the phrases a notice's
template context shares with them (where, what changed).

Pure: no I/O. Values from a mail are escaped for WhatsApp (:func:`~.filters.wa`);
the organisation's name, address and time zone come from :class:`Organisation`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any, Callable, Mapping

from bridge.core.models import Organisation, OutageReport
from bridge.core.render.filters import (
    DEFAULT_TZ,
    datum,
    diensten,
    duur,
    kort,
    lijst,
    moment,
    normalise,
    wa,
)

__all__ = [
    "MODEM",
    "actual_end",
    "changed_facts",
    "collapse",
    "default_notice_text",
    "default_reply_text",
    "fallback_from_subject",
    "where_phrase",
]

log = logging.getLogger("bridge.core.render")  # the name log lines have always carried

_NATIONWIDE = {"landelijk", "heel nederland", "nederland", "nationaal", "landelijke storing"}
# A description naming the modem or router: the notice suggests restarting it.
MODEM = re.compile(r"\b(modem|router)s?\b", re.IGNORECASE)


def collapse(text: str | None) -> str:
    """``text`` with every run of whitespace one space, stripped; "" for None."""
    return re.sub(r"\s+", " ", text or "").strip()


def where_phrase(report: OutageReport) -> str:
    """Where, as a phrase, escaped: "in Amersfoort en Leusden", "landelijk", "in
    postcodegebied 3811 en 3812", or "" when the report names no place."""
    places = [p for p in report.places if p and p.strip()]
    if places and all(p.strip().lower() in _NATIONWIDE for p in places):
        return "landelijk"
    if places:
        return f"in {wa(lijst(places))}"
    if report.postcodes:
        return f"in postcodegebied {wa(lijst(report.postcodes))}"
    return ""


def changed_facts(report: OutageReport, previous: OutageReport | None) -> tuple[str, ...]:
    """Names of the facts that differ from ``previous``: "status", "start", "eind",
    "onderbreking", "diensten", "plaatsen", "omschrijving"; () without a previous report."""
    if previous is None:
        return ()
    out = []
    if report.status != previous.status:
        out.append("status")
    if report.start != previous.start:
        out.append("start")
    if report.end != previous.end or report.end_unknown != previous.end_unknown:
        out.append("eind")
    if report.downtime_minutes != previous.downtime_minutes:
        out.append("onderbreking")
    if diensten(report.services) != diensten(previous.services):
        out.append("diensten")
    if tuple(report.places) != tuple(previous.places):
        out.append("plaatsen")
    if collapse(report.description) != collapse(previous.description):
        out.append("omschrijving")
    return tuple(out)


def actual_end(report: OutageReport) -> datetime | None:
    """When the outage actually ended, as far as the report can tell; else ``None``.

    ``report.end`` counts only when the mail gives it as an end ("Eindtijd", "Hersteld op"),
    not as an expectation (``end_expected``), and when it is not after the mail was sent (an
    end still to come is an expectation, whatever its label). Maintenance never has one: its
    "Eindtijd" is also the end of the planned window, which the report cannot tell apart from
    the time the work finished.
    """
    end = report.end
    if end is None or report.end_expected or report.end_unknown or report.kind != "storing":
        return None
    if report.sent_at is not None and end > report.sent_at:
        return None
    return end


def default_notice_text(
    report: OutageReport, org: Organisation, previous: OutageReport | None = None
) -> str:
    """The built-in notice text, generated in Python (no template involved).

    Used when a template fails; also usable directly. Values from the mail are escaped.
    """
    tz = org.timezone or DEFAULT_TZ
    try:
        ref_time = report.sent_at or report.start
        maintenance = report.kind == "onderhoud"
        what = "Gepland onderhoud" if maintenance else "Storing"
        svc = lijst(diensten(report.services))
        subject = f"{what} {svc}".strip()
        where = where_phrase(report)
        status = report.status
        lines: list[str] = []
        if status == "opgelost":
            head = f"*{subject} {'afgerond' if maintenance else 'opgelost'}*"
        elif status == "geannuleerd":
            head = f"*{subject} {'gaat niet door' if maintenance else 'ingetrokken'}*"
        elif status == "update":
            head = f"*Update: {subject[0].lower() + subject[1:]}*"
        else:
            head = f"*{subject}*"
        head += f" {where}" if where else ""
        if maintenance and report.start and status not in ("opgelost",):
            window = datum(report.start, tz)
            if report.end:
                window += f" tot {moment(report.end, report.start, tz)}"
            head += f": {window}"
        elif not maintenance and report.start and status not in ("opgelost", "geannuleerd"):
            head += f" sinds {datum(report.start, tz)}"
        lines.append(head + ".")
        if status == "opgelost":
            ended = actual_end(report)
            when = f" om {moment(ended, ref_time, tz)}" if ended else ""
            lines.append(f"{'Het onderhoud is' if maintenance else 'De storing is'}{when} voorbij.")
            if MODEM.search(report.description or ""):
                lines.append("Werkt het nog niet? Start je modem opnieuw op.")
        elif status == "geannuleerd":
            lines.append("Je hoeft niets te doen.")
        elif maintenance:
            if report.downtime_minutes:
                lines.append(f"Verwachte onderbreking: {duur(report.downtime_minutes)}.")
        else:
            if report.end and not report.end_unknown:
                lines.append(f"Verwacht herstel: {moment(report.end, ref_time, tz)}.")
            else:
                lines.append("Verwacht herstel: nog onbekend.")
        desc = collapse(report.description)
        if desc and status not in ("opgelost", "geannuleerd"):
            lines.append(wa(kort(desc, 300)))
        footer = f"— {org.name}"
        if report.ticket:
            footer += f" (ref. {wa(report.ticket)})"
        return normalise("\n".join(lines) + "\n\n" + footer)
    except Exception:  # the notice must never be lost
        log.exception("built-in notice text failed; using the subject")
        return fallback_from_subject(report.subject, report.description, org)


def fallback_from_subject(subject: str, first_lines: str, org: Organisation) -> str:
    """A short generic notice from a mail's subject and first lines, escaped.

    For a human approving a mail from the review queue when no report could be extracted.
    """
    subj = wa(kort(collapse(subject), 150))
    body = wa(kort(collapse(first_lines), 300))
    parts = ["*Melding over je verbinding*"]
    if subj:
        parts.append(subj)
    if body:
        parts.append(body)
    text = "\n".join(parts)
    text += f"\n\nVragen? Mail {org.support_email}.\n— {org.name}"
    return normalise(text)


def _subscribe_how(ctx: Mapping[str, Any]) -> str:
    """How to subscribe, as the end of a sentence (with its full stop, never two)."""
    sentence = ctx.get("subscribe_sentence")
    if not sentence:
        return "stuur ons een berichtje."
    return f'stuur "{sentence}"' + ("" if sentence.rstrip()[-1:] in ".!?" else ".")


_REPLY_DEFAULTS: dict[str, Callable[[Organisation, Mapping[str, Any]], str]] = {
    "subscribed": lambda org, ctx: (
        f"Gelukt! Je bent aangemeld voor storingsberichten van {org.name}. "
        "Bij een storing of gepland onderhoud krijg je hier een kort bericht.\n"
        "Stuur STOP om je af te melden."
    ),
    "already_subscribed": lambda org, ctx: (
        f"Je bent al aangemeld voor storingsberichten van {org.name}. "
        "Stuur STOP om je af te melden."
    ),
    "unsubscribed": lambda org, ctx: (
        "Je bent afgemeld. Je krijgt geen storingsberichten meer en we hebben je gegevens "
        f"verwijderd.\nWil je later toch weer berichten? Je kunt je altijd opnieuw aanmelden: "
        f"{_subscribe_how(ctx)}"
    ),
    "not_subscribed": lambda org, ctx: (
        "Je bent niet aangemeld voor storingsberichten, dus je krijgt ze ook niet. "
        f"Wil je ze wel? Aanmelden kan altijd: {_subscribe_how(ctx)}"
    ),
    "help": lambda org, ctx: (
        f"Via dit nummer stuurt {org.name} korte berichten over storingen en gepland onderhoud.\n"
        f"Aanmelden: {_subscribe_how(ctx)}\n"
        "Afmelden: stuur STOP.\n"
        f"Een storing melden? Mail {org.support_email}."
    ),
    "support": lambda org, ctx: (
        "Bedankt voor je bericht! Via WhatsApp kunnen we geen storingen aannemen; "
        f"mail {org.support_email}, dan maken we direct een ticket voor je aan."
    ),
}


def default_reply_text(name: str, org: Organisation, **ctx: Any) -> str | None:
    """The built-in Dutch reply ``name``, or ``None`` when there is no default for it."""
    make = _REPLY_DEFAULTS.get(name)
    return normalise(make(org, ctx)) if make else None
