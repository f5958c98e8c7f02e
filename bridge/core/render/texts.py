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
    venster,
    wa,
)

__all__ = [
    "MODEM",
    "actual_end",
    "changed_facts",
    "collapse",
    "default_notice_text",
    "default_reply_text",
    "expected_end",
    "fallback_from_subject",
    "passed_end",
    "postcode_list",
    "reference_moment",
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


_POSTCODES_SHOWN = 20


def postcode_list(report: OutageReport) -> str:
    """The report's postcodes as a Dutch list, escaped: "3811, 3812 en 3831"; beyond 20,
    "…, 3830 en nog 5"; "" when none."""
    codes = [wa(p) for p in report.postcodes if p and p.strip()]
    if len(codes) > _POSTCODES_SHOWN:
        rest = len(codes) - _POSTCODES_SHOWN
        return f"{', '.join(codes[:_POSTCODES_SHOWN])} en nog {rest}"
    return lijst(codes)


def reference_moment(report: OutageReport, now: datetime | None) -> datetime | None:
    """The moment a notice is written for: ``now`` (when it is rendered), else, without
    one, when the mail was sent (``sent_at``, else ``start``)."""
    return now or report.sent_at or report.start


def expected_end(report: OutageReport, now: datetime | None) -> datetime | None:
    """The end a notice may state as still to come: ``report.end`` when the mail gives one
    (not "unknown") that is after ``now`` (:func:`reference_moment`); else None."""
    ref = reference_moment(report, None) if now is None else now
    if report.end is None or report.end_unknown:
        return None
    if ref is not None and report.end <= ref:
        return None
    return report.end


def passed_end(report: OutageReport, now: datetime | None) -> datetime | None:
    """An end the mail gave as to come that has passed by ``now``: a notice says "nog
    onbekend (eerder: 12:00)" instead of stating it. None when the end is still to come, is
    unknown, or is when the outage actually ended (:func:`actual_end`)."""
    ref = reference_moment(report, None) if now is None else now
    if report.end is None or report.end_unknown or ref is None or report.end > ref:
        return None
    if actual_end(report) is not None:
        return None
    return report.end


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
    report: OutageReport, org: Organisation, previous: OutageReport | None = None,
    now: datetime | None = None,
) -> str:
    """The built-in notice text, generated in Python (no template involved), written as of
    ``now`` (aware; None: as of when the mail was sent): an expected end that has passed is
    "nog onbekend (eerder: …)", a time not on ``now``'s day carries the day.

    Used when a template fails; also usable directly. Values from the mail are escaped.
    """
    tz = org.timezone or DEFAULT_TZ
    try:
        ref_time = reference_moment(report, now)
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
            head += f": {venster(report.start, report.end, tz)}"
        elif not maintenance and report.start and status not in ("opgelost", "geannuleerd"):
            head += f" sinds {datum(report.start, tz)}"
        lines.append(head + ".")
        codes = postcode_list(report)
        if codes and report.places:
            lines.append(f"Postcode{'s' if len(report.postcodes) > 1 else ''}: {codes}.")
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
            expected, passed = expected_end(report, now), passed_end(report, now)
            if expected:
                lines.append(f"Verwacht herstel: {moment(expected, ref_time, tz)}.")
            elif passed:
                lines.append(f"Verwacht herstel: nog onbekend (eerder: "
                             f"{moment(passed, ref_time, tz)}).")
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
