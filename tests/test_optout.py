"""An opt-out in the person's own words (bridge.core.inbound / bridge.core.optout).

Real-world phrasings, typos included: each must unsubscribe, or (where the intent is
likely but not certain) get the question "Wil je geen storingsberichten meer? Stuur
STOP." — never the "mail support" reply. And messages that only sound like it (questions
about the outage stopping, complaints about not receiving) must never unsubscribe.
"""

from __future__ import annotations

import pytest

from bridge.core.inbound import classify, interpret, keywords_from_config

U, C, O, S, H, Y = "unsubscribe", "confirm_stop", "other", "subscribe", "help", "yes"

# (message, expected): U = unsubscribes at once, C = gets the confirm question.
OPT_OUTS: list[tuple[str, str]] = [
    # the field cases (docs: shared/samples/field/README.md)
    ("Niet meer sturen aub", U),
    ("Ik wil van de lijst af", U),
    ("Geen appjes meer aub", U),
    ("Kunnen jullie stoppen met appen?", U),
    # stop + the messages
    ("stop met die berichten", U),
    ("Stoppp", U),
    ("stpo", U),
    ("Sotp aub", U),
    ("stop ajb!!", U),
    ("STOP STOP STOP", U),
    ("Stop 🛑", U),
    ("Stop met storingsberichten sturen", U),
    ("stop de berichten aub", U),
    ("Hou op met appen", U),
    ("Kappen met die berichten", U),
    ("Hoe stop ik deze berichten?", U),
    ("Kunnen jullie ophouden met dat ge-app?", U),
    ("Sorry maar ik wil stoppen met deze service", U),
    ("ik wil stoppen", U),
    ("Please stop texting me", U),
    ("stop sending me messages", U),
    # leaving
    ("Afmelden graag", U),
    ("afmleden", U),
    ("uitschijven", U),
    ("Uitschrijven aub", U),
    ("Ik wil me graag afmleden voor de berichten", U),
    ("Kunnen jullie mij afmelden?", U),
    ("Kan ik me afmelden voor deze berichten?", U),
    ("Hoe meld ik me af?", U),
    ("Meld mij maar af", U),
    ("Wil afgemeld worden", U),
    ("graag uitgeschreven worden", U),
    ("Afmelden voor storingsberichten", U),
    ("Haal me van de lijst aub", U),
    ("haal mijn nummer van jullie lijst", U),
    ("Kan dit nummer van de lijst?", U),
    ("Verwijder mijn nummer", U),
    ("verwijder me uit het bestand", U),
    ("Unsubscribe pls", U),
    ("unsubscibe", U),
    ("Remove me from this list", U),
    ("Take me off your list", U),
    ("opt out", U),
    # no more messages
    ("Ik hoef geen berichten meer te ontvangen", U),
    ("hoef geen meldingen meer", U),
    ("Ik wil geen whatsappjes meer", U),
    ("Wil geen berigten meer", U),
    ("Geen berichtjes meer alsjeblieft", U),
    ("geen meldingen meer van jullie aub", U),
    ("Stuur me niks meer", U),
    ("stuur mij geen berichten meer", U),
    ("App me niet meer", U),
    ("Niet meer appen aub", U),
    ("jullie hoeven me niet meer te appen", U),
    ("Ik wil deze berichten niet meer ontvangen", U),
    ("Ik wil niet meer ge-appt worden", U),
    ("Ik wil niet langer storingsberichten ontvangen", U),
    ("Ik wil geen storingsmeldingen meer op mijn telefoon", U),
    ("Ik wil geen sms meer", U),
    ("Ik heb deze berichten niet meer nodig", U),
    ("Ik ben verhuisd, dus berichten zijn niet meer nodig", U),
    ("Ik zit niet meer bij CBG, graag geen berichten meer", U),
    ("I don't want these messages anymore", U),
    ("Don't text me", U),
    ("No more messages pls", U),
    ("Ik ben verhuisd naar Spanje en heb geen aansluiting meer bij jullie, dus stuur me "
     "alsjeblieft geen berichten meer.", U),
    # likely, not certain: the question
    ("Hoe kan ik dit stoppen?", C),
    ("Hou op!", C),
    ("Hoeft niet meer, bedankt", C),
    ("Niet meer nodig", C),
    ("Ik ben geen klant meer bij jullie", C),
    ("Verkeerd nummer", C),
    ("Wie is dit? Ik heb me nergens voor aangemeld", C),
    ("Ik heb me nooit aangemeld", C),
    ("Dit is spam", C),
    ("Te veel berichten", C),
    ("Al die berichten zijn irritant", C),
    ("Laat me met rust", C),
    ("Leave me alone", C),
    ("Ik wil eruit", C),
    ("Stuur me niks", C),
    ("Jullie sturen te veel berichten", C),
    ("Waarom stoppen de berichten niet?", C),
    ("Jullie sturen geen berichten meer", C),  # maybe a complaint: ask
    ("Geen interesse", C),
    ("Dit nummer is niet meer van mij", C),
    ("kan ik dit uitzetten", C),
    ("wil niks meer ontvangen", U),
    ("ik hoef niets meer te krijgen", U),
    ("Graag mijn nummer verwijderen", U),
    ("Hoe kom ik van deze lijst af?", U),
    ("hoe kan ik de berichten uitzetten", U),
    ("Het werkt weer, de berichten mogen stoppen", U),
]

# Messages that must never unsubscribe. Most are plain "other" (the support reply, which
# says how to stop); "stop de storing!"-like complaints that start with the keyword get
# the question (a judgement, see docs/architecture.md "Inbound: what counts as STOP").
NOT_OPT_OUTS: list[tuple[str, str]] = [
    ("Wanneer stopt de storing?", O),
    ("Stopt de storing vandaag nog?", O),
    ("stop de storing!", C),
    ("Stop die storing nou eens!", C),
    ("Stop!! Mijn internet ligt eruit", C),
    ("Hou op met die storingen!", O),
    ("Jullie moeten stoppen met die storingen", O),
    ("Wanneer is de storing voorbij?", O),
    ("Hoe lang duurt de storing nog?", O),
    ("Mijn internet stopt steeds", O),
    ("De tv stopt er elke avond mee", O),
    ("Ik krijg geen berichten meer", O),
    ("Waarom krijg ik geen storingsberichten meer?", O),
    ("Ik ontvang sinds vorige week geen meldingen meer", O),
    ("Kunnen jullie me een bericht sturen als het opgelost is?", O),
    ("Stuur me een berichtje als het weer werkt", O),
    ("Geen internet meer sinds vanochtend", O),
    ("Geen internet meer. Stuur me een bericht als het werkt", O),
    ("Niet meer storingen aub!", O),
    ("Wil geen storing meer!", O),
    ("Geen tv meer, wat nu?", O),
    ("Het internet is niet meer stabiel", O),
    ("Ik heb geen wifi meer", O),
    ("Is de storing gestopt?", O),
    ("Is het onderhoud gestopt?", O),
    ("Wanneer stoppen de werkzaamheden?", O),
    ("Stopt het onderhoud om 6 uur?", O),
    ("Storing in Ermelo gestopt?", O),
    ("Bedankt voor het bericht!", O),
    ("Fijn dat jullie berichten sturen", O),
    ("Top, bedankt", O),
    ("Stap voor stap lukt het weer", O),
    ("ok", O),
    ("Nee hoor, alles werkt weer", O),
    ("Mijn modem geeft geen signaal meer", O),
    ("Kan ik de storing ergens melden?", O),
    ("Krijg ik nog bericht als het is opgelost?", O),
    ("De berichten komen niet meer binnen", O),
    ("Ik heb de berichten niet ontvangen", O),
    ("Waarom stopt mijn internet steeds?", O),
    ("Geen berichten ontvangen vandaag, is alles ok?", O),
    ("Ik mis jullie berichten", O),
    ("Stuur de berichten ook naar mijn vrouw", O),
    ("Houden jullie me op de hoogte?", O),
    ("Zijn jullie gestopt met sturen? Ik krijg niks meer", O),
    ("When will the outage stop?", O),
    ("Internet keeps stopping", O),
    ("I didn't receive any messages", O),
    ("Ik wil mijn abonnement opzeggen, hoe doe ik dat?", O),
    ("ik wil me aanmelden", S),
    ("Niet storen aub, ik slaap", O),
    ("Hoezo geen berichten meer?", O),
    ("Wanneer stopt het?", O),
    ("Stopt het ooit?", O),
    ("Ik krijg geen berichten meer, zijn jullie gestopt?", O),
    ("Bij mij geen storing", O),
    ("geen last meer, werkt weer", O),
]


def _id(i: int, text: str) -> str:
    return f"{i:03d}-{text[:40]}"


@pytest.mark.parametrize(("text", "expected"), OPT_OUTS,
                         ids=[_id(i, t) for i, (t, _) in enumerate(OPT_OUTS)])
def test_opt_out_in_own_words(text, expected):
    assert classify(text) == expected


@pytest.mark.parametrize(("text", "expected"), NOT_OPT_OUTS,
                         ids=[_id(i, t) for i, (t, _) in enumerate(NOT_OPT_OUTS)])
def test_not_an_opt_out(text, expected):
    got = classify(text)
    assert got != U
    assert got == expected


def test_lists_are_big_enough():
    assert len(OPT_OUTS) >= 50
    assert len(NOT_OPT_OUTS) >= 30
    assert sum(1 for t, e in OPT_OUTS if any(x in t.lower() for x in (
        "stpo", "sotp", "afmleden", "uitschijven", "unsubscibe", "berigten", "stoppp"))) >= 5


def test_a_question_to_stop_the_messages_is_an_opt_out_one_about_the_outage_is_not():
    assert classify("Kunnen jullie stoppen met appen?") == U
    assert classify("Wanneer stopt de storing?") == O


def test_wording_is_the_part_that_decided():
    assert interpret("Hoi! Kunnen jullie stoppen met appen?").wording == "stoppen met appen"
    assert interpret("Geen appjes meer aub").wording.startswith("geen appjes")
    sub = interpret("Hallo, ja ik wil storingsberichten van CBG Connect ontvangen 👍")
    assert (sub.kind, sub.wording) == (S, "ja ik wil storingsberichten van cbg connect ontvangen")
    kw = interpret("Aanmelden!")
    assert (kw.kind, kw.wording, kw.keyword) == (S, "aanmelden", True)
    assert interpret("STOP").keyword and not interpret("Niet meer sturen aub").keyword


def test_bare_yes_is_an_answer_not_a_subscription():
    for text in ("ja", "Ja graag", "ja graag 😊", "Jawel", "ja hoor", "Yes please"):
        assert classify(text) == Y, text
    for text in ("ja mijn internet doet het niet", "ja ik wil stoppen", "ok", "nee"):
        assert classify(text) != Y, text


def test_word_lists_come_from_config():
    kw = keywords_from_config({"message_words": ["nieuwsflitsen"], "send_verbs": ["mailen"]})
    assert classify("geen nieuwsflitsen meer aub", kw) == U
    assert classify("niet meer mailen", kw) == U
    assert classify("geen appjes meer aub", kw) != U
    kw = keywords_from_config({"outage_words": ["stroom"]})
    assert classify("stop de stroom!", kw) == C
    assert classify("stop de storing!", kw) == U  # "storing" is no outage word any more
    kw = keywords_from_config({"likely_optout_phrases": ["foutje"]})
    assert classify("foutje", kw) == C and classify("verkeerd nummer", kw) == O
    kw = keywords_from_config({"yes_words": ["jep"]})
    assert classify("jep", kw) == Y and classify("ja", kw) == O


def test_long_message_is_fast():
    import time

    text = "stuur me geen berichten over de storing maar bel me als het internet werkt " * 30
    t = time.perf_counter()
    classify(text)
    assert time.perf_counter() - t < 2.0
