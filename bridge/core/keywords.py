"""The word lists that decide what an inbound message asks for (``[inbound.keywords]``).

Pure data and its validation: :class:`Keywords` holds the defaults, one tuple per list;
:func:`keywords_from_config` builds it from the TOML table, where each list replaces its
default. :mod:`bridge.core.inbound` and :mod:`bridge.core.optout` read them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from bridge.core.fuzzy import normalise_text

__all__ = ["Keywords", "DEFAULT_KEYWORDS", "keywords_from_config"]


@dataclass(frozen=True)
class Keywords:
    """The words and phrases :func:`bridge.core.inbound.interpret` looks for. Matching ignores case, accents,
    punctuation and emoji (see :func:`normalise_text`).

    * ``subscribe_phrases``: sentences matched loosely: their content words must occur
      in this order, each with small typos allowed (one edit in words of 4-9 letters, two
      in longer words; two written-apart words may make one: "storings berichten"),
      with a few other words between them (more after "van"/"from", where the
      organisation's name goes). Filler words ("ja", "ik", "de", "van", "me", ...) in a
      phrase are optional. ``a|b`` in a phrase means either word.
    * ``subscribe_words``: count when they are the whole message, give or take
      greetings, politeness ("graag", "aub") and topic words ("voor storingsberichten").
    * ``unsubscribe_words``: count when they are the whole message or its first word(s)
      (after a greeting): "STOP", "stop met bellen", "Afmelden aub". When the rest of
      the message is about the outage ("stop de storing!") the bridge asks instead.
    * ``unsubscribe_phrases``: all their words must occur in order, at most two other
      words in between; anywhere in the message. Phrases with a negation ("geen
      berichten meer") do not count in a complaint about not receiving ("ik krijg geen
      berichten meer") unless a want stands right before them ("ik wil geen ...").
    * ``help_words``: count when the message consists of them plus filler ("meer
      info", "hulp nodig"). A word without letters or digits ("?") counts when the
      message is only that punctuation.
    * ``yes_words``: a bare answer ("ja", "ja graag"): the whole message, give or take
      politeness. It answers the last question the bridge asked that sender.
    * ``stop_verbs``, ``send_verbs``, ``message_words``, ``outage_words``,
      ``leave_words``, ``likely_optout_phrases``: the vocabulary of an opt-out in the
      person's own words (:mod:`bridge.core.optout`): "stoppen met appen", "geen appjes
      meer", "ik wil van de lijst af"; outage words tell "stop de storing" apart;
      likely phrases ("verkeerd nummer", "dit is spam") get the question.
    """

    subscribe_phrases: tuple[str, ...] = (
        # the seed sentence, with the organisation's name left out: any name (or none)
        # may stand after "van"
        "ja ik wil storingsberichten|storingsmeldingen|storingsinformatie|storingsupdates"
        "|storingsberichtjes|berichten|meldingen|updates|notificaties ontvangen|krijgen",
        "ik wil graag storingsberichten|storingsmeldingen",
        "graag storingsberichten|storingsmeldingen ontvangen|krijgen",
        "meld mij|me aan",
        "ik wil me|mij aanmelden|inschrijven|abonneren",
        "kan ik me|mij aanmelden|inschrijven|abonneren",
        "graag aanmelden|inschrijven",
        "aanmelden|inschrijven|abonneren voor|op storingsberichten|storingsmeldingen|berichten",
        "zet mij|me op de lijst",
        "i want|like to receive|get outage messages|notifications|alerts|updates",
        "i want|like outage messages|notifications|alerts|updates",
        "sign me up",
        "subscribe me",
    )
    subscribe_words: tuple[str, ...] = (
        "aanmelden",
        "aanmelding",
        "start",
        "inschrijven",
        "abonneren",
        "subscribe",
        "ja aanmelden",
        "ja ik wil storingsberichten ontvangen",
        "opt in",
        "sign up",
    )
    unsubscribe_words: tuple[str, ...] = (
        "stop",
        "stoppen",
        "afmelden",
        "afmelding",
        "uitschrijven",
        "unsubscribe",
        "opzeggen",
        "stop alle berichten",
        "opt out",
        "optout",
    )
    unsubscribe_phrases: tuple[str, ...] = (
        "ik wil me afmelden",
        "wil afmelden",
        "me afmelden",
        "mij afmelden",
        "me uitschrijven",
        "mij uitschrijven",
        "wil uitschrijven",
        "graag afmelden",
        "graag uitschrijven",
        "meld mij af",
        "meld me af",
        "schrijf mij uit",
        "schrijf me uit",
        "geen berichten meer",
        "geen storingsberichten meer",
        "geen meldingen meer",
        "geen storingsmeldingen meer",
        "geen whatsapp meer",
        "geen whatsapps meer",
        "niet meer ontvangen",
        "wil niet meer ontvangen",
        "hoef geen berichten",
        "hoef geen storingsberichten",
        "stoppen met sturen",
        "stop met sturen",
        "stop de berichten",
        "stop met berichten",
        "haal mij van de lijst",
        "haal me van de lijst",
        "van de lijst af",
        "lijst af",
        "van deze lijst",
        "nummer verwijderen",
        "gegevens verwijderen",
        "nummer van de lijst",
        "van de lijst halen",
        "van de lijst verwijderen",
        "van jullie lijst",
        "uit de lijst",
        "van de verzendlijst",
        "haal mijn nummer",
        "verwijder mij",
        "verwijder me",
        "verwijder mijn nummer",
        "verwijder mijn gegevens",
        "wis mijn nummer",
        "wis mijn gegevens",
        "unsubscribe me",
        "want to unsubscribe",
        "wil stoppen met",
        "dont send",
        "don t send",
        "no more messages",
        "stop sending",
        "remove me from",
        "remove my number",
        "delete my number",
        "take me off",
        "off your list",
        "off the list",
        "opt me out",
    )
    help_words: tuple[str, ...] = (
        "help",
        "hulp",
        "info",
        "informatie",
        "?",
        "uitleg",
        "menu",
    )
    yes_words: tuple[str, ...] = (
        "ja",
        "ja graag",
        "jawel",
        "jazeker",
        "ja zeker",
        "ja hoor",
        "ja doe maar",
        "doe maar",
        "graag",
        "yes",
        "yes please",
        "yep",
    )
    stop_verbs: tuple[str, ...] = (
        "stop",
        "stoppen",
        "stopt",
        "stopping",
        "ophouden",
        "uitzetten",
        "uitschakelen",
        "turn off",
        "hou op",
        "houd op",
        "houden op",
        "kappen",
        "kap",
        "quit",
        "cease",
    )
    send_verbs: tuple[str, ...] = (
        "sturen",
        "stuur",
        "stuurt",
        "versturen",
        "verstuur",
        "appen",
        "app",
        "appt",
        "geappt",
        "whatsappen",
        "smsen",
        "sms",
        "berichten",
        "send",
        "sending",
        "text",
        "texting",
        "message",
        "messaging",
        "spammen",
        "spam",
        "spamming",
    )
    message_words: tuple[str, ...] = (
        "berichten",
        "bericht",
        "berichtjes",
        "berichtje",
        "storingsberichten",
        "storingsberichtjes",
        "storingsmeldingen",
        "meldingen",
        "melding",
        "appjes",
        "appje",
        "apps",
        "whatsappjes",
        "whatsappje",
        "whatsapps",
        "whatsapp",
        "smsjes",
        "smsje",
        "notificaties",
        "notificatie",
        "updates",
        "alerts",
        "messages",
        "texts",
        "notifications",
        "spam",
        "service",
        "dienst",
        "lijst",
    )
    outage_words: tuple[str, ...] = (
        "storing",
        "storingen",
        "storinkje",
        "internet",
        "tv",
        "televisie",
        "wifi",
        "verbinding",
        "netwerk",
        "glasvezel",
        "modem",
        "router",
        "onderhoud",
        "werkzaamheden",
        "uitval",
        "onderbreking",
        "signaal",
        "zenders",
        "beeld",
        "outage",
        "connection",
        "maintenance",
    )
    leave_words: tuple[str, ...] = (
        "afmelden",
        "afmelding",
        "afgemeld",
        "uitschrijven",
        "uitgeschreven",
        "unsubscribe",
        "unsubscribed",
        "optout",
    )
    likely_optout_phrases: tuple[str, ...] = (
        "hoeft niet meer",
        "hoeft niet",
        "niet meer nodig",
        "no longer needed",
        "laat me met rust",
        "laat mij met rust",
        "leave me alone",
        "verkeerd nummer",
        "wrong number",
        "nergens voor aangemeld",
        "nergens aangemeld",
        "nooit aangemeld",
        "niet aangemeld",
        "niet om gevraagd",
        "nooit om gevraagd",
        "never signed up",
        "didn t sign up",
        "geen klant meer",
        "geen klant",
        "not a customer",
        "ben verhuisd",
        "wil eruit",
        "wil eraf",
        "wil er af",
        "geen interesse",
        "not interested",
        "niet meer van mij",
        "niet mijn nummer",
        "woont hier niet meer",
        "wil er vanaf",
        "hoe kom ik hier vanaf",
        "hoe kom ik hiervan af",
        "te veel berichten",
        "teveel berichten",
        "spam",
        "irritant",
        "vervelend",
        "genoeg",
        "enough",
    )


DEFAULT_KEYWORDS = Keywords()

_FIELDS = tuple(f.name for f in fields(Keywords))


def keywords_from_config(d: dict) -> Keywords:
    """Build :class:`Keywords` from the ``[inbound.keywords]`` TOML table.

    Each key names one field of :class:`Keywords`; its list replaces that field's
    default, keys left out keep theirs. Raises ``ValueError("inbound.keywords.<key>:
    <what is wrong>")`` for an unknown key, a value that is not a list of strings, an
    empty or blank entry, an entry without letters or digits (other than in
    ``help_words``), and an empty ``unsubscribe_words`` list (people must always be able
    to stop the messages).
    """
    if d is None:
        return DEFAULT_KEYWORDS
    if not isinstance(d, dict):
        raise ValueError(f"inbound.keywords: expected a table, got {type(d).__name__}")
    values: dict[str, tuple[str, ...]] = {}
    for key, value in d.items():
        where = f"inbound.keywords.{key}"
        if key not in _FIELDS:
            raise ValueError(f"{where}: unknown key (known keys: {', '.join(_FIELDS)})")
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
        items: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(
                    f"{where}: item {i + 1} is {type(item).__name__}, expected a string")
            if not item.strip():
                raise ValueError(f"{where}: item {i + 1} is empty")
            if key != "help_words" and not normalise_text(item.replace("|", " ")):
                raise ValueError(f"{where}: item {i + 1} ({item!r}) has no letters or digits")
            items.append(item.strip())
        if key == "unsubscribe_words" and not items:
            raise ValueError(f"{where}: must not be empty (people must be able to stop)")
        values[key] = tuple(items)
    return Keywords(**values)
