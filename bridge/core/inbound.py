"""What a person's WhatsApp message asks for: subscribe, unsubscribe, confirm_stop, yes,
help or other.

Pure: text in, :class:`~bridge.core.models.Intent` out (:func:`interpret`), or only its
class (:func:`classify`). The words come from :class:`Keywords` (defaults below,
replaceable per list by ``[inbound.keywords]``).

Guiding principle: **opting out is honoured generously, opting in needs clear
consent.** A message that plausibly asks to stop gets "unsubscribe" (the reply confirms
it and says how to come back) or, where that is likely but not certain, "confirm_stop"
(the bridge asks "Wil je geen storingsberichten meer? Stuur STOP."); a message only
becomes "subscribe" when it clearly asks for the outage messages. A bare "ja" is "yes":
it answers the last question the bridge asked (bridge/inbound.py), it never subscribes
on its own. Outage reports ("mijn internet doet het niet", "internet stopt steeds", "ik
krijg geen storingsberichten meer", "wanneer stopt de storing?") are "other", so a person
can report a problem without changing their subscription.

Precedence: unsubscribe > subscribe > confirm_stop > yes > help > other. See
:func:`interpret` for the exact rules and :mod:`bridge.core.optout` for an opt-out in the
person's own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from bridge.core import optout
from bridge.core.keywords import DEFAULT_KEYWORDS, Keywords, keywords_from_config
from bridge.core.models import InboundClass, Intent
from bridge.core.fuzzy import (FILLER, find, fold, normalise_text, short_eq, skip,
                               starts_with, strict_eq, word_eq)

__all__ = [
    "Keywords",
    "DEFAULT_KEYWORDS",
    "MAX_WORDS",
    "keywords_from_config",
    "normalise_text",
    "classify",
    "interpret",
]

# Messages longer than this (in words) only count as subscribe when a subscribe phrase
# matches tightly; subscribe/help *words* never count in them.
MAX_WORDS = 25


# --- the grammar around the keywords (not configurable) -----------------------------

# Leading words skipped before the first-word rule and the whole-message rules.
_GREETINGS = frozenset(
    "hoi hallo hai hey hee hi hello hoihoi goedemorgen goedemiddag goedenavond goeiemorgen "
    "goeiemiddag goedendag morgen middag avond dag beste yo".split())
# Words that may surround a command word without changing what it means.
_POLITE = frozenset(
    "graag aub ajb svp alsjeblieft alstublieft please pls plz a u b dank bedankt danku "
    "dankjewel dankuwel thanks thx groet groeten groetjes mvg gr ok oke okay ja yes hoor "
    "prima".split())
_TOPIC = frozenset(
    "voor op van de het mij me mijn ik wil ook nu even maar meer nodig over deze dit "
    "storingsberichten storingsmeldingen berichten bericht meldingen "
    "melding updates notificaties whatsapp service dienst".split())
_NEGATIONS = frozenset("geen niet nooit niets niks nee no not dont don never nimmer".split())
# Words that make a sentence a question about receiving rather than a request.
_QUESTIONS = frozenset(
    "waarom wanneer hoe hoezo wat welke welk weten vraag why when how what which".split())
# Words of a complaint about not receiving something ("ik krijg geen berichten meer",
# "ik kan de zenders niet meer ontvangen").
_COMPLAINT = frozenset(
    "ontvang ontvangt ontving ontvingen krijg krijgt kreeg kregen gekregen binnen kan kun "
    "waarom hoezo why "
    "kunnen lukt heb hebben had sinds zie gezien receive received get getting "
    "internet tv televisie zenders zender wifi mail email signaal telefoon netflix "
    "decoder modem router".split())
# Words that say the person wants what follows.
_WANT = frozenset("wil wilt willen hoef hoeft hoeven liever want wish".split())
# A statement about the sender ("jullie sturen geen berichten meer"): maybe a complaint.
_THEY = frozenset("jullie ze zij they".split())

# Only the first this many words are looked at (bounds the work for huge messages).
_MAX_TOKENS = 300

# In a long message, one of these must stand in or just before a subscribe phrase.
_CONSENT = _WANT | frozenset("ja yes graag please aub".split())

_LEADING = _GREETINGS | _POLITE | frozenset(("nee", "no"))
_CLAUSE_END = re.compile(r"[.,!?;\n]+")  # clauses for the opt-out rules


# A compiled phrase: per position, the alternatives, and whether the position is filler.
_Phrase = tuple[tuple[tuple[str, ...], bool], ...]


def _compile_phrase(phrase: str) -> _Phrase:
    out = []
    for part in phrase.split():
        alts = tuple(a for a in (fold(x).replace(" ", "") for x in part.split("|")) if a)
        if alts:
            out.append((alts, all(a in FILLER for a in alts)))
    return tuple(out)


def _compile_seq(entry: str) -> tuple[str, ...]:
    return tuple(fold(entry).split())


def _seqs(entries: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(s for s in map(_compile_seq, entries) if s)


def _singles(entries: tuple[str, ...]) -> tuple[str, ...]:
    """One token per entry ("opt out" -> "optout"), without repeats."""
    return tuple(dict.fromkeys("".join(s) for s in _seqs(entries)))


@dataclass(frozen=True)
class _Compiled:
    subscribe_phrases: tuple[_Phrase, ...]
    subscribe_words: tuple[tuple[str, ...], ...]
    unsubscribe_words: tuple[tuple[str, ...], ...]
    unsubscribe_phrases: tuple[tuple[tuple[str, ...], ...], ...]
    unsubscribe_negated: tuple[bool, ...]
    help_words: frozenset[str]
    help_marks: tuple[str, ...]  # help entries without letters/digits, e.g. "?"
    yes_words: tuple[tuple[str, ...], ...]
    lexicon: optout.Lexicon


@lru_cache(maxsize=16)
def _compile(kw: Keywords) -> _Compiled:
    unsub = tuple(tuple(((w,), False) for w in _compile_seq(p)) for p in kw.unsubscribe_phrases)
    lexicon = optout.Lexicon(
        stop_verbs=_seqs(kw.stop_verbs),
        send_verbs=_singles(kw.send_verbs),
        message_words=_singles(kw.message_words),
        outage_words=_singles(kw.outage_words),
        leave_words=_singles(kw.leave_words),
        likely_phrases=tuple(tuple((w,) for w in s) for s in _seqs(kw.likely_optout_phrases)),
    )
    return _Compiled(
        subscribe_phrases=tuple(p for p in map(_compile_phrase, kw.subscribe_phrases) if p),
        subscribe_words=_seqs(kw.subscribe_words),
        unsubscribe_words=_seqs(kw.unsubscribe_words),
        unsubscribe_phrases=tuple(tuple(alts for alts, _ in p) for p in unsub if p),
        unsubscribe_negated=tuple(
            any(w in _NEGATIONS for (w,), _ in p) for p in unsub if p),
        help_words=frozenset(w for h in kw.help_words for w in _compile_seq(h)),
        help_marks=tuple(h.strip() for h in kw.help_words if not fold(h)),
        yes_words=_seqs(kw.yes_words),
        lexicon=lexicon,
    )


def _command_eq(token: str, word: str) -> bool:
    """A command word with a typo: swapped or doubled letters in short words ("stpo"),
    one edit in words of 7+ letters ("afmleden")."""
    return short_eq(token, word) if len(word) < 7 else strict_eq(token, word)


def _keyword_stop(tokens: list[str], core: list[str], c: _Compiled) -> Intent | None:
    """Rule 1a: an unsubscribe word is the message or its first word(s)."""
    if len(tokens) > MAX_WORDS:
        return None
    for w in c.unsubscribe_words:
        if not starts_with(core, w, _command_eq):
            continue
        wording = " ".join(core[:len(w)])
        rest = core[len(w):]
        if optout.has_outage(rest, c.lexicon) and not optout.has_message(rest, c.lexicon):
            # "stop de storing!": about the outage, probably not the messages: ask
            return Intent("confirm_stop", " ".join(core))
        keyword = all(t in _POLITE or t in _TOPIC or t in FILLER or _command_eq(t, w[0])
                      for t in rest)
        return Intent("unsubscribe", wording, keyword=keyword)
    return None


def _listed_phrase(tokens: list[str], c: _Compiled) -> str | None:
    """Rule 1b: an unsubscribe phrase anywhere (negated ones not in a complaint)."""
    complaint = bool(set(tokens) & _COMPLAINT)
    for phrase, negated in zip(c.unsubscribe_phrases, c.unsubscribe_negated):
        span = find(tokens, phrase, (False,) * len(phrase), 2, word_eq)
        if span is None:
            continue
        start, end = span
        before = set(tokens[max(0, start - 3):start])
        if negated and (complaint or before & _THEY):
            # "ik krijg geen berichten meer" is a complaint, "jullie sturen geen berichten
            # meer" may be one; a request only with a want right before it ("ik wil/hoef
            # geen ...") or "nodig" right after it (else the own-words rules decide)
            if not (before & _WANT or "nodig" in tokens[end:end + 2]):
                continue
        return " ".join(tokens[start:end])
    return None


def _subscribe_match(tokens: list[str], c: _Compiled) -> tuple[str, int, int] | None:
    """The best subscribe-phrase match: ("plain" | "negated" | "question", start, end)."""
    long = len(tokens) > MAX_WORDS
    max_gap = 1 if long else 3
    found: tuple[str, int, int] | None = None
    for phrase in c.subscribe_phrases:
        pattern = tuple(alts for alts, _ in phrase)
        optional = tuple(opt for _, opt in phrase)
        span = find(tokens, pattern, optional, max_gap, word_eq)
        if span is None:
            continue
        start, end = span
        if long and not set(tokens[max(0, start - 3):end]) & _CONSENT:
            continue  # in a long message only an explicit "ja/ik wil ..." counts
        near = tokens[max(0, start - 2):end]
        if set(near) & _NEGATIONS:
            kind = "negated"
        elif set(tokens[max(0, start - 3):end]) & _QUESTIONS:
            kind = "question"
        else:
            return ("plain", start, end)
        found = found or (kind, start, end)
    return found


def _bare(rest: list[str], words: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
    """The entry of ``words`` that ``rest`` starts with, when only politeness follows."""
    for word in words:
        if starts_with(rest, word, strict_eq) and all(
                t in _POLITE or t in FILLER for t in rest[len(word):]):
            return word
    return None


def interpret(text: str, kw: Keywords = DEFAULT_KEYWORDS) -> Intent:
    """Read one inbound message: :class:`~bridge.core.models.Intent` (kind, the wording
    that decided, whether it was a keyword).

    Precedence: **unsubscribe > subscribe > confirm_stop > yes > help > other**.

    1. *unsubscribe* when
       a. the message (after a greeting) is, or starts with, an unsubscribe word. This
          is deliberately blunt, so "stop met bellen" is an unsubscribe too; "stopt"
          (another word) is not: "internet stopt steeds" stays other. When the rest is
          about the outage and not the messages ("stop de storing!") it is
          *confirm_stop* instead: the bridge asks;
       b. an unsubscribe phrase occurs ("ik wil me afmelden", "geen berichten meer"),
          except that negated phrases do not count in a complaint about not receiving
          ("ik krijg geen berichten meer") unless a want stands right before them ("ik
          wil/hoef geen berichten meer") or "nodig" right after;
       c. a subscribe phrase matches but is negated ("ik wil geen storingsberichten
          meer ontvangen", "ik wil niet langer berichten krijgen"): negation beats
          subscribe;
       d. the person says it in their own words, clearly (:mod:`bridge.core.optout`):
          "niet meer sturen aub", "kunnen jullie stoppen met appen?".
    2. *subscribe* when a subscribe phrase matches (not negated, not a question such as
       "ik wil weten hoe ik storingsberichten kan ontvangen") or the message is a
       subscribe word plus filler ("Aanmelden graag", "start"). In messages longer than
       :data:`MAX_WORDS` words only a tight phrase match with an explicit yes or want
       ("ja", "ik wil", "graag") counts, so a long outage report that mentions
       "aanmelden voor storingsberichten" in passing stays other.
    3. *confirm_stop* when an opt-out in own words is likely but not certain ("hou op!",
       "dit is spam", "verkeerd nummer").
    4. *yes* when the message is a bare yes word ("ja", "Ja graag 😊").
    5. *help* when the message is made of help words and filler ("info?", "meer info",
       "hulp nodig"), is only "?" (or another punctuation-only help entry), or is a
       question about subscribing ("hoe kan ik me aanmelden?").
    6. *other*: everything else, including outage reports, thanks, greetings, emoji and
       empty messages.
    """
    if not text or not text.strip():
        return Intent("other")
    c = _compile(kw)
    clauses: list[list[str]] = []
    budget = _MAX_TOKENS
    for part in _CLAUSE_END.split(text):
        words = fold(part).split()[:budget]
        if words:
            clauses.append(words)
            budget -= len(words)
        if budget <= 0:
            break
    tokens = [t for clause in clauses for t in clause]
    if not tokens:
        raw = "".join(text.split())
        if any(raw and set(raw) <= set(mark) for mark in c.help_marks):
            return Intent("help", raw, keyword=True)
        return Intent("other")
    core = skip(tokens, _LEADING)  # "Hoi, ok, stop" -> ["stop"]
    greeted = skip(tokens, _GREETINGS)  # "Hoi, ja graag" -> ["ja", "graag"]

    hit = _keyword_stop(tokens, core, c)
    if hit:
        return hit
    wording = _listed_phrase(tokens, c)
    if wording:
        return Intent("unsubscribe", wording)
    sub = _subscribe_match(tokens, c)
    if sub and sub[0] == "negated":
        return Intent("unsubscribe", " ".join(tokens[sub[1]:sub[2]]))
    own = optout.read_optout(clauses, c.lexicon, MAX_WORDS)
    if own and own[0] == "unsubscribe":
        return Intent("unsubscribe", own[1])
    if sub and sub[0] == "plain":
        start = sub[1]
        while start > 0 and tokens[start - 1] in FILLER:  # "ja ik" before "wil ..."
            start -= 1
        return Intent("subscribe", " ".join(tokens[start:sub[2]]))
    if len(tokens) <= MAX_WORDS:
        for rest in (core, greeted):
            for word in c.subscribe_words:
                if starts_with(rest, word, strict_eq) and all(
                        t in _TOPIC or t in _POLITE for t in rest[len(word):]):
                    return Intent("subscribe", " ".join(rest[:len(word)]), keyword=True)
    if own:
        return Intent("confirm_stop", own[1])
    if len(greeted) <= 6 and _bare(greeted, c.yes_words):
        return Intent("yes", " ".join(greeted))
    if sub and sub[0] == "question":
        return Intent("help", " ".join(tokens[sub[1]:sub[2]]))
    if core and len(core) <= 6 and any(t in c.help_words for t in core) and all(
            t in c.help_words or t in _TOPIC or t in _POLITE or t in _QUESTIONS
            for t in core):
        return Intent("help", " ".join(core), keyword=True)
    return Intent("other")


def classify(text: str, kw: Keywords = DEFAULT_KEYWORDS) -> InboundClass:
    """The class of :func:`interpret`: "subscribe", "unsubscribe", "confirm_stop", "yes",
    "help" or "other"."""
    return interpret(text, kw).kind
