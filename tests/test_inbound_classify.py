"""bridge.core.inbound: what a person's WhatsApp message asks for."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.core.inbound import (
    DEFAULT_KEYWORDS,
    MAX_WORDS,
    Keywords,
    classify,
    keywords_from_config,
    normalise_text,
)

S, U, H, O = "subscribe", "unsubscribe", "help", "other"
C, Y = "confirm_stop", "yes"

# (message, expected class). Each row is its own test; ids are the row numbers plus a
# short form of the message so a failure names the message.
CASES: list[tuple[str, str]] = [
    # --- the seed sentence and its variants -------------------------------------------
    ("Ja ik wil storingsberichten van CBG Connect ontvangen.", S),
    ("ja ik wil storingsberichten van cbg connect ontvangen", S),
    ("JA IK WIL STORINGSBERICHTEN VAN CBG CONNECT ONTVANGEN", S),
    ("Ja ik wil storingsberichten van CBG Conect ontvangen.", S),
    ("ja ik wil storingberichten ontvangen", S),
    ("Ja, ik wil graag de storingsberichten van CBG ontvangen!", S),
    ("ja ik wil storings berichten van cbg connect ontvangen", S),
    ("ja ik wil storing berichten van cbg connect ontvangen", S),
    ("ja ik wil storingsberichten ontvangen", S),
    ("Ja ik wil storingsberichten van Glasvezel Buitenaf ontvangen", S),
    ("Ja ik wil storingsberichten van Coöperatie Breedband Gemeente Noord B.V. ontvangen", S),
    ("Ja ik wil storingsberichten van CBG Connect ontvangen 👍", S),
    ("ja ik wil storingsberichten van cbg connect ontvagen", S),
    ("ja ik wil storingsbrichten ontvangn", S),
    ("Ik wil graag storingsmeldingen ontvangen", S),
    ("Ik wil de storingsberichten krijgen", S),
    ("ja ik wil storingsberichten van cbg connect ontvangen punt", S),
    ("Hoi! Ja ik wil storingsberichten van CBG Connect ontvangen 🙏", S),
    ("Geen internet gehad gisteren. Ja ik wil storingsberichten ontvangen", S),
    # --- subscribe words --------------------------------------------------------------
    ("Aanmelden", S),
    ("aanmelden graag", S),
    ("Aanmelden voor storingsberichten aub", S),
    ("START", S),
    ("inschrijven", S),
    ("Abonneren!", S),
    ("subscribe", S),
    # a bare "ja graag" answers the bridge's last question; it never subscribes on its own
    # (bridge/inbound.py decides what it answers)
    ("ja graag", Y),
    ("Ja graag 😊", Y),
    ("hallo, aanmelden", S),
    ("ik wil me aanmelden", S),
    ("Kan ik me aanmelden voor de storingsberichten?", S),
    ("I want to receive outage notifications", S),
    ("sign me up", S),
    ("Graag storingsberichten ontvangen", S),
    ("Ja hoor, aanmelden", S),
    ("meld me aan", S),
    ("ik wil mij aanmelden voor de storingsmeldingen", S),
    # --- unsubscribe words and phrases ------------------------------------------------
    ("STOP", U),
    ("stop", U),
    ("Stop!!!", U),
    ("stop alle berichten", U),
    ("Stoppen", U),
    ("afmelden", U),
    ("Afmelden aub", U),
    ("uitschrijven", U),
    ("unsubscribe", U),
    ("Opzeggen", U),
    ("Hoi, stop", U),
    ("Ok stop maar", U),
    ("stop met bellen", U),  # blunt by design: STOP as first word always opts out
    ("Ik wil me afmelden", U),
    ("ik wil mij graag afmelden", U),
    ("graag uitschrijven", U),
    ("geen berichten meer", U),
    ("Geen storingsberichten meer aub!", U),
    ("meld mij af", U),
    ("Meld me af alsjeblieft", U),
    ("wil niet meer ontvangen", U),
    ("niet meer ontvangen", U),
    ("ik wil geen storingsberichten meer ontvangen", U),
    ("Ik wil niet langer berichten ontvangen van jullie", U),
    ("ik hoef geen berichten meer", U),
    ("Kunnen jullie stoppen met sturen?", U),
    ("hoe kan ik me afmelden?", U),  # a stop request, even as a question
    ("haal mij van de lijst", U),
    ("ik wil me uitschrijven", U),
    ("please unsubscribe me", U),
    ("i want to unsubscribe", U),
    ("ik heb geen storingsberichten meer nodig", U),
    ("ik wil geen berichten meer krijgen", U),
    ("ik wil stoppen met de berichten", U),
    ("no more messages please", U),
    # --- help -------------------------------------------------------------------------
    ("help", H),
    ("Help!", H),
    ("HULP", H),
    ("info", H),
    ("Info?", H),
    ("meer info", H),
    ("informatie graag", H),
    ("hulp nodig", H),
    ("?", H),
    ("??", H),
    ("hoe kan ik me aanmelden?", H),  # a question about subscribing: explain, don't act
    ("Ik wil weten hoe ik storingsberichten kan ontvangen", H),
    # --- outage reports and questions: never (un)subscribe ----------------------------
    ("mijn internet doet het niet", O),
    ("internet stopt steeds", O),
    ("de storing is nog niet opgelost", O),
    ("ik ontvang geen storingsberichten", O),
    ("Ik krijg geen storingsberichten meer", O),
    ("waarom krijg ik geen berichten meer?", O),
    ("ik kan de zenders niet meer ontvangen", O),
    ("waarom stopt mijn tv", O),
    ("Wanneer is de storing voorbij?", O),
    ("Help mijn internet doet het al 2 dagen niet", O),
    ("Storing in Amersfoort? Wifi ligt eruit", O),
    ("Is er een storing in 3811?", O),
    ("tv beeld blijft hangen sinds vanochtend", O),
    ("mijn router knippert rood, wat moet ik doen", O),
    ("ik heb wel storingsberichten ontvangen maar internet is nog steeds traag", O),
    ("ik wil weten waarom ik geen storingsberichten ontvang", O),
    ("starten lukt niet, modem blijft opnieuw opstarten", O),
    ("afgelopen nacht was er weer een storing", O),
    ("Bellen gaat niet meer via de vaste lijn", O),
    ("ik ben al aangemeld toch?", O),
    ("Wat kost een abonnement?", O),
    ("ik ontvang geen storingsberichten meer, wil ze wel graag", O),
    ("ik heb geen whatsapp meer", O),
    ("ik wil een storing melden", O),
    ("ik wil dat de storing stopt", O),
    ("ik wil graag weten wanneer de storing voorbij is", O),
    ("start de router opnieuw op?", O),
    ("jullie internet stopt elke avond om 8 uur", O),
    # --- chit-chat ----------------------------------------------------------------------
    ("hoi", O),
    ("Hallo", O),
    ("bedankt!", O),
    ("Dank je wel 🙏", O),
    ("👍", O),
    ("🙂🙂", O),
    ("ok", O),
    ("ja", Y),
    ("nee", O),
    ("", O),
    ("   ", O),
    ("\n\t", O),
    ("...", O),
    ("goedemorgen, fijne dag nog", O),
]

# A long message that mentions subscribe words in passing is not a subscription.
LONG_OTHER = (
    "Goedemiddag, ik wilde even laten weten dat ik sinds gisteren avond om een uur of acht "
    "geen internet meer heb en de tv ook niet werkt, mijn buurman zei dat ik me ergens "
    "moest aanmelden voor storingsberichten maar ik weet niet waar, kunnen jullie kijken?"
)
LONG_SUBSCRIBE = (
    "Goedemiddag, mijn buurman heeft mij verteld dat jullie berichten sturen als er iets "
    "mis is met het glasvezelnetwerk in de wijk, dat lijkt me heel handig want vorige "
    "week zaten we een hele avond zonder tv. Ja ik wil storingsberichten ontvangen."
)
CASES += [(LONG_OTHER, O), (LONG_SUBSCRIBE, S)]


def _id(i: int, text: str) -> str:
    short = text.strip().replace("\n", " ")[:40] or "<blank>"
    return f"{i:03d}-{short}"


@pytest.mark.parametrize(("text", "expected"), CASES,
                         ids=[_id(i, t) for i, (t, _) in enumerate(CASES)])
def test_classify(text, expected):
    assert classify(text) == expected


def test_table_is_big_and_covers_every_class():
    assert len(CASES) >= 80
    assert {e for _, e in CASES} == {S, U, H, O, Y}
    assert len(LONG_OTHER.split()) > MAX_WORDS and len(LONG_SUBSCRIBE.split()) > MAX_WORDS


@pytest.mark.parametrize("org", ["CBG Connect", "Glasvezel Zuid", "Fiber", "De Kabelmaatschappij"])
def test_seed_sentence_with_any_organisation(org):
    assert classify(f"Ja ik wil storingsberichten van {org} ontvangen.") == S
    assert classify(f"Ja ik wil geen storingsberichten van {org} meer ontvangen.") == U


def test_negation_beats_subscribe():
    assert classify("ja ik wil storingsberichten ontvangen") == S
    assert classify("nee ik wil geen storingsberichten ontvangen") == U
    assert classify("ik wil niet meer storingsberichten ontvangen") == U


def test_stop_words_only_count_as_the_first_word():
    assert classify("stop") == U
    assert classify("stop met bellen") == U
    assert classify("mijn tv stop steeds") == O
    assert classify("internet stopt steeds") == O


def test_opposites_are_not_typos_of_each_other():
    assert classify("aanmelden") == S and classify("afmelden") == U
    assert classify("inschrijven") == S and classify("uitschrijven") == U
    assert classify("ik wil me inschrijven") == S and classify("ik wil me uitschrijven") == U


def test_normalise_text():
    assert normalise_text("  Ja, ik wil STORINGSBERICHTEN ontvangen!! 👍 ") == (
        "ja ik wil storingsberichten ontvangen")
    assert normalise_text("ＳＴＯＰ") == "stop"  # full-width letters (NFKC)
    assert normalise_text("Straße") == "strasse"  # casefold
    assert normalise_text("a\u00a0b\tc\n\nd") == "a b c d"
    assert normalise_text("🙂🙂") == ""
    assert normalise_text("") == ""
    assert normalise_text("coöperatie 3811AB") == "coöperatie 3811ab"


# --- keywords from config -------------------------------------------------------------


def test_keywords_defaults():
    assert keywords_from_config({}) == DEFAULT_KEYWORDS
    kw = DEFAULT_KEYWORDS
    assert "stop" in kw.unsubscribe_words and "afmelden" in kw.unsubscribe_words
    assert "aanmelden" in kw.subscribe_words and "help" in kw.help_words and "?" in kw.help_words
    for f in dataclasses.fields(Keywords):
        value = getattr(kw, f.name)
        assert isinstance(value, tuple) and value and all(isinstance(v, str) for v in value)


def test_config_list_replaces_default():
    kw = keywords_from_config({"unsubscribe_words": ["klaar"], "help_words": ["menu"]})
    assert kw.unsubscribe_words == ("klaar",)
    assert kw.subscribe_words == DEFAULT_KEYWORDS.subscribe_words
    assert classify("klaar", kw) == U
    assert classify("Klaar!", kw) == U
    # the default list is gone, not extended: "stop" is no keyword any more, only a stop
    # verb in the person's own words, which gets the question (not an unsubscription)
    assert classify("stop", kw) == C
    assert classify("stop", keywords_from_config(
        {"unsubscribe_words": ["klaar"], "stop_verbs": ["ophouden"]})) == O
    assert classify("menu", kw) == H
    assert classify("help", kw) == O
    # the phrases still apply
    assert classify("ik wil me afmelden", kw) == U


def test_config_subscribe_phrase_with_alternatives():
    kw = keywords_from_config({"subscribe_phrases": ["ik doe mee|meedoen met storingsalarm"],
                               "subscribe_words": ["doemee"]})
    assert classify("ik doe mee met het storingsalarm", kw) == S
    assert classify("ik doe meedoen met storingsalarm", kw) == S
    assert classify("doemee", kw) == S
    assert classify("ja ik wil storingsberichten ontvangen", kw) == O


def test_config_keywords_are_hashable_and_cached():
    kw = keywords_from_config({"help_words": ["?", "hulp"]})
    hash(kw)
    assert classify("?", kw) == H and classify("hulp", kw) == H and classify("info", kw) == O


@pytest.mark.parametrize(("table", "message"), [
    ({"stop_words": ["stop"]}, "inbound.keywords.stop_words: unknown key"),
    ({"unsubscribe_words": "stop"}, "inbound.keywords.unsubscribe_words: expected a list of strings, got str"),
    ({"help_words": [1, 2]}, "inbound.keywords.help_words: item 1 is int, expected a string"),
    ({"subscribe_words": ["ja", None]}, "inbound.keywords.subscribe_words: item 2 is NoneType"),
    ({"subscribe_phrases": ["  "]}, "inbound.keywords.subscribe_phrases: item 1 is empty"),
    ({"subscribe_words": ["!!!"]}, "inbound.keywords.subscribe_words: item 1 ('!!!') has no letters"),
    ({"unsubscribe_words": []}, "inbound.keywords.unsubscribe_words: must not be empty"),
    ({"unsubscribe_phrases": {"a": 1}}, "inbound.keywords.unsubscribe_phrases: expected a list"),
])
def test_config_errors(table, message):
    with pytest.raises(ValueError) as e:
        keywords_from_config(table)
    assert str(e.value).startswith(message), str(e.value)


def test_empty_lists_allowed_except_unsubscribe_words():
    kw = keywords_from_config({"help_words": [], "subscribe_words": []})
    assert classify("help", kw) == O and classify("aanmelden", kw) == O


def test_very_long_message_is_fast_and_other():
    text = "mijn internet doet het niet en " * 400
    assert classify(text) == O
