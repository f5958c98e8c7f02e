"""The pipeline's reasons (English, for the log) told in plain Dutch for a receipt (pure).

A receipt shows both: this Dutch sentence for the support employee, and the original reason
for whoever looks in the log. A reason not known here gets no Dutch sentence (None).
"""

from __future__ import annotations

import re

_RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p, re.IGNORECASE), t) for p, t in (
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
    """A plain Dutch sentence for ``reason``, or None when the reason is not a known one."""
    for pattern, text in _RULES:
        if pattern.search(reason or ""):
            return text
    return None
