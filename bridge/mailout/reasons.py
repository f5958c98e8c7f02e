"""The pipeline's reasons (English, for the log) told in plain Dutch for a receipt and the
console's review page (pure).

A receipt shows both: this Dutch sentence for the support employee, and the original reason
for whoever looks in the log. A reason not known here gets no Dutch sentence (None);
tests/test_receipts.py checks that every reason the golden mails give has one.
"""

from __future__ import annotations

import re
from typing import Callable

_AUTOMATIC = {"delivery-status bounce": "een onbestelbaar-bericht (bounce) van een mailserver",
              "read receipt": "een leesbevestiging",
              "out-of-office reply": "een automatisch antwoord (afwezigheidsbericht)",
              "automatic mail": "een automatisch verstuurde mail"}
_UNITS = {"h": "uur", "min": "min", "days": "dagen", "day": "dag"}


def _span(text: str) -> str:
    """``34 h 22 min`` -> ``34 uur 22 min``, ``3 days`` -> ``3 dagen``."""
    return re.sub(r"\b(days?|h|min)\b", lambda m: _UNITS[m.group(1)], text)


def _date(text: str) -> str:
    """``2026-11-28 07:20`` -> ``28-11-2026 07:20`` (as the Dutch write a date)."""
    return re.sub(r"(\d{4})-(\d{2})-(\d{2})", r"\3-\2-\1", text)


def _automatic(m: re.Match) -> str:
    what = _AUTOMATIC[m.group("what").lower()]
    where = "De doorgestuurde mail is " if m.group("fwd") else "Dit is "
    return (f"{where}{what}, geen storingsmelding van KPN; zo'n mail gaat nooit naar klanten."
            f" Herkend aan: {m.group('signals')}.")


def _stale(m: re.Match) -> str:
    return (f"De mail is van {_date(m.group('dated'))} en was {_span(m.group('age'))} oud toen de"
            f" bridge hem las; dat is meer dan {m.group('hours')} uur"
            " (review.max_mail_age_hours), dus wat erin staat klopt misschien niet meer."
            " Een collega beoordeelt hem.")


def _window_over(m: re.Match) -> str:
    return (f"Het onderhoud is al voorbij: het eindigde {_date(m.group('ended'))}, voordat de mail"
            " verwerkt werd. Een collega beoordeelt of er nog een bericht uit moet.")


def _thin(m: re.Match) -> str:
    what = "Een update van de storing" if m.group("what") == "outage update" else "Een nieuwe storing"
    same = (", en zegt niets nieuws ten opzichte van de vorige melding" if m.group("same")
            else "")
    return (f"{what} noemt geen plaats, dienst of tijd{same}; zo'n bericht zegt klanten"
            " niets. Een collega beoordeelt het.")


_Text = str | Callable[[re.Match], str]
_RULES: tuple[tuple[re.Pattern, _Text], ...] = tuple((re.compile(p, re.IGNORECASE), t) for p, t in (
    (r"^(?P<fwd>a forwarded )?(?P<what>delivery-status bounce|read receipt|out-of-office reply"
     r"|automatic mail) \((?P<signals>[^)]*)\)", _automatic),
    (r"^stale mail: dated (?P<dated>[^(]+?) \([^)]*\), (?P<age>.+?) before it was processed;"
     r" more than review\.max_mail_age_hours \((?P<hours>[\d.]+) h\)", _stale),
    (r"^maintenance notice without a window", "Onderhoudsmelding zonder tijdvak: er staat geen"
     " begin- of eindtijd in de mail. Een collega beoordeelt hem."),
    (r"^maintenance window already over: it ended (?P<ended>[^(]+?) \(", _window_over),
    (r"^about one customer's line", "De mail lijkt over de lijn van één klant te gaan (een"
     " klantnaam, adres, lijn- of klantnummer), niet over een storing in een gebied; zo'n mail"
     " gaat niet naar alle klanten. Een collega beoordeelt hem."),
    (r"^(?P<what>new outage|outage update) names no place, service or time(?P<same>, and says"
     r" nothing new)?", _thin),
    (r"^approval mode", "Elke melding wacht op goedkeuring van een collega (goedkeurmodus"
     " staat aan)."),
    (r"no ticket and no status found", "In de mail staat geen ticketnummer en geen status"
     " (nieuw, update, opgelost) die de bridge herkent."),
    (r"no ticket found", "In de mail staat geen ticketnummer dat de bridge herkent."),
    (r"no status found", "In de mail staat geen status (nieuw, update, opgelost) die de bridge"
     " herkent."),
    (r"could not be processed", "De bridge kon de mail niet automatisch lezen (een fout in de"
     " software; die staat in het logboek)."),
    (r"not a (readable )?mail\b", "De mail kon niet gelezen worden (geen geldige mail)."),
    (r"has \d+ From headers", "De mail heeft meer dan één afzender (From); zo'n mail wordt"
     " nooit verwerkt."),
    (r"sent no forwarded KPN mail .*own words", "In je mail zat geen doorgestuurde KPN-mail;"
     " een collega beoordeelt je bericht. Wil je een KPN-mail laten versturen, stuur die"
     " dan door (of als bijlage)."),
    (r"no readable report", "In de mail staat geen leesbare melding (bijvoorbeeld alleen"
     " een afbeelding, een versleutelde mail of een beschadigde winmail.dat); een collega"
     " beoordeelt hem."),
    (r"sent no forwarded KPN mail", "In je mail zat geen doorgestuurde KPN-mail. Stuur de"
     " KPN-mail door (of als bijlage), niet een eigen bericht."),
    (r"the original is from .*, not a listed KPN sender", "De doorgestuurde mail komt niet van"
     " een bekend KPN-adres."),
    (r"is not on the allow-list", "De afzender staat niet op de lijst van toegestane"
     " afzenders."),
    (r"Authentication-Results|dmarc", "De afzender kon niet worden gecontroleerd: onze"
     " mailserver bevestigt niet dat de mail echt van dit adres komt (DMARC)."),
    (r"^outdated", "De mail is ouder dan de laatste update die al verstuurd is; een oudere"
     " stand gaat nooit na een nieuwere naar klanten."),
    (r"same Message-ID or bytes|same bytes", "Deze mail is al eerder binnengekomen."),
    (r"already has status .* with the same end time", "Deze stand (status en eindtijd) is al"
     " eerder verstuurd."),
    (r"rejected in review", "Afgewezen bij de controle."),
    (r"approved in review", "Goedgekeurd bij de controle."),
))


def in_dutch(reason: str) -> str | None:
    """A plain Dutch sentence for ``reason`` (an outcome reason of the pipeline or the review
    desk), with its details (a date, an age, the signals) where the reason has them; None
    when the reason is not a known one."""
    for pattern, text in _RULES:
        m = pattern.search(reason or "")
        if m:
            return text if isinstance(text, str) else text(m)
    return None
